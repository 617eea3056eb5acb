"""The Colab TPU notebook runs end to end, here on 8 simulated CPU devices.

The notebook reads its settings from ``JLSTM_NOTEBOOK_*`` environment
variables; this test points it at this checkout, skips the pip install
(jlstm is installed already), expects the CPU backend and shrinks the
config to a few steps, then checks what each cell showed.
"""

import json
import os
import pathlib
import sys

import pytest

nbclient = pytest.importorskip('nbclient')
nbformat = pytest.importorskip('nbformat')

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / 'experiments' / 'colab_tpu.ipynb'

TINY = {
  'num_train_steps': 4,
  'batch_size': 8,
  'seq_len': 16,
  'log_every': 2,
  'eval_every': 4,
  'checkpoint_every': 4,
  'model.hidden_size': 16,
  'model.embed_size': 8,
  'data.val_fraction': 0.01,
  'sample.length': 20,
}


def _text(cell) -> str:
  """Everything a code cell printed or displayed as text."""
  parts = []
  for output in cell.get('outputs', []):
    if output.get('output_type') == 'stream':
      parts.append(output['text'])
    elif 'data' in output:
      parts.append(output['data'].get('text/plain', ''))
  return ''.join(parts)


def test_notebook_is_valid_and_parameterised():
  """The notebook is valid nbformat 4 with a tagged settings cell."""
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(notebook)
  settings = notebook.cells[1]
  assert 'parameters' in settings.metadata.get('tags', [])
  assert notebook.metadata['accelerator'] == 'TPU'
  # Saved without outputs, so the file holds no run's numbers.
  assert all(not c.get('outputs') for c in notebook.cells)


@pytest.mark.slow
def test_notebook_executes_on_cpu_with_tiny_config(tmp_path, monkeypatch):
  """Every cell runs: devices, bfloat16 training, curve and sample."""
  workdir = tmp_path / 'run'
  bin_dir = os.path.dirname(sys.executable)
  monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
  monkeypatch.setenv('JLSTM_NOTEBOOK_REPO', str(ROOT))
  monkeypatch.setenv('JLSTM_NOTEBOOK_INSTALL', 'skip')
  monkeypatch.setenv('JLSTM_NOTEBOOK_BACKEND', 'cpu')
  monkeypatch.setenv('JLSTM_NOTEBOOK_WORKDIR', str(workdir))
  monkeypatch.setenv('JLSTM_NOTEBOOK_OVERRIDES', json.dumps(TINY))
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')

  notebook = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(
    notebook,
    timeout=600,
    kernel_name='python3',
    resources={'metadata': {'path': str(tmp_path)}},
  )
  client.execute()

  code = [c for c in notebook.cells if c.cell_type == 'code']
  install, devices, training, curve, sample = (_text(c) for c in code[1:])
  assert 'keeping jax==' in install
  assert 'not installing; would run:' in install
  assert 'backend cpu' in devices and '8 devices:' in devices
  assert 'precision: params float32, compute bfloat16' in training
  assert "'step': 4" in training
  assert 'bits per character at step 4' in curve
  assert any(
    'image/png' in o.get('data', {}) for o in code[4].get('outputs', [])
  )
  assert sample.startswith('The ') and len(sample.strip()) >= 20
  config = json.loads((workdir / 'config.json').read_text())
  assert config['compute_dtype'] == 'bfloat16'
