"""Data parallel training gives the same model on any mesh and any hosts.

Each run is a fresh process (``sharding_worker.py``) with simulated CPU
devices, training the default language model shrunk to six steps. All runs
start together and share the machine's cores; the tests then read each
run's last checkpoint back into this process and compare parameters.

Tolerance: float32 with atol 1e-6 + rtol 1e-5. The runs differ only in the
order in which XLA adds up the batch (per device, then across devices):
rounding errors that six Adam steps leave at about 1e-7 in the parameters
(measured: 8.6e-8 for 8 devices vs 1, 1.2e-7 for 2 processes vs 1). Six
steps of size 3e-3 move every parameter array by about 1.8e-2, so a wrong
split (rows dropped, doubled or misordered) breaks the tolerance by orders
of magnitude.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from jlstm.train import distributed
from jlstm.train import load_run
from jlstm.train import sharding

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORKER = ROOT / 'tests' / 'sharding_worker.py'
RUN_TIMEOUT_S = 420
ATOL, RTOL = 1e-6, 1e-5


def _text(path: pathlib.Path) -> str:
  """A small deterministic corpus: 300 lines of shuffled words."""
  rng = np.random.default_rng(0)
  words = (
    'the quick brown fox jumps over a lazy dog while seven wizards box '
    'and quietly judge sixty vexing puzzles'
  ).split()
  lines = [' '.join(rng.choice(words, 10)) for _ in range(300)]
  path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
  return str(path)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _env(devices: int, **extra: str) -> dict[str, str]:
  env = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(('JLSTM_', 'JAX_', 'XLA_'))
  }
  env.update(
    XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
    JAX_PLATFORMS='cpu',
    PYTHONPATH=str(ROOT),
    **extra,
  )
  return env


def _launch(workdir, text_file, env, log_path, *overrides):
  log = open(log_path, 'w')
  process = subprocess.Popen(
    [sys.executable, str(WORKER), str(workdir), text_file, *overrides],
    env=env,
    stdout=log,
    stderr=subprocess.STDOUT,
    cwd=ROOT,
  )
  return process, log, log_path


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """Starts every run at once; returns {name: workdir} when all are done."""
  base = tmp_path_factory.mktemp('sharding')
  text_file = _text(base / 'corpus.txt')
  port = _free_port()
  workdirs = {
    name: base / name for name in ('one', 'eight', 'four', 'two_by_two')
  }
  jobs = [
    _launch(workdirs['one'], text_file, _env(1), base / 'one.log'),
    _launch(workdirs['eight'], text_file, _env(8), base / 'eight.log'),
    _launch(workdirs['four'], text_file, _env(4), base / 'four.log'),
  ]
  for process_id in range(2):
    env = _env(
      2,
      JLSTM_DISTRIBUTED='1',
      JLSTM_COORDINATOR_ADDRESS=f'localhost:{port}',
      JLSTM_NUM_PROCESSES='2',
      JLSTM_PROCESS_ID=str(process_id),
    )
    jobs.append(
      _launch(
        workdirs['two_by_two'], text_file, env, base / f'proc{process_id}.log'
      )
    )

  failures = []
  try:
    for process, log, log_path in jobs:
      try:
        code = process.wait(timeout=RUN_TIMEOUT_S)
      except subprocess.TimeoutExpired:
        code = 'timeout'
      log.close()
      output = pathlib.Path(log_path).read_text()
      if code != 0:
        failures.append(f'{log_path.name} exited {code}:\n{output[-3000:]}')
  finally:
    for process, log, _ in jobs:
      if process.poll() is None:
        process.kill()
        process.wait()
      log.close()
  if failures:
    pytest.fail('\n\n'.join(failures))
  return {name: (path, base) for name, path in workdirs.items()}


def _params(workdir) -> tuple[list[np.ndarray], list[np.ndarray]]:
  """The parameters of a run's latest checkpoint, and its initial ones."""
  config, task, state, step = load_run(workdir, 'latest', with_data=False)
  assert step == 6
  # As create_train_state draws them: from fold_in(key(seed), 0).
  initial = task.model.init(jax.random.fold_in(jax.random.key(config.seed), 0))
  return (
    [np.asarray(x) for x in jax.tree.leaves(state.params)],
    [np.asarray(x) for x in jax.tree.leaves(initial)],
  )


def _max_excess(a: list[np.ndarray], b: list[np.ndarray]) -> float:
  """Largest |a - b| - (ATOL + RTOL |b|) over all leaves; <= 0 passes."""
  return max(
    float(np.max(np.abs(x - y) - (ATOL + RTOL * np.abs(y))))
    for x, y in zip(a, b, strict=True)
  )


def _max_abs_diff(a, b) -> float:
  return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


@pytest.mark.slow
def test_sharding_eight_devices_match_one_device(runs):
  """Six steps on 8 simulated devices give the 1-device parameters."""
  one, start = _params(runs['one'][0])
  eight, _ = _params(runs['eight'][0])
  # Every leaf moved far beyond the tolerance, so the comparison has teeth.
  moved = min(
    float(np.max(np.abs(x - y))) for x, y in zip(one, start, strict=True)
  )
  assert moved > 100 * ATOL
  assert _max_excess(eight, one) <= 0, _max_abs_diff(eight, one)


@pytest.mark.slow
def test_sharding_two_processes_match_one_process_of_four_devices(runs):
  """2 processes x 2 devices (gloo) give the 1 process x 4 device params."""
  four, _ = _params(runs['four'][0])
  two, _ = _params(runs['two_by_two'][0])
  assert _max_excess(two, four) <= 0, _max_abs_diff(two, four)
  base = runs['two_by_two'][1]
  for process_id in range(2):
    log = (base / f'proc{process_id}.log').read_text()
    assert f'process {process_id} of 2: 4 devices, 2 local' in log


@pytest.mark.slow
def test_sharding_only_process_zero_writes_files(runs):
  """A 2-process run writes each metric record and sample exactly once."""
  workdir = runs['two_by_two'][0]
  with open(workdir / 'metrics.jsonl', encoding='utf-8') as f:
    records = [json.loads(line) for line in f]
  assert [(r['step'], r['split']) for r in records] == [
    (3, 'train'),
    (6, 'train'),
    (6, 'val'),
  ]
  samples = (workdir / 'samples.txt').read_text(encoding='utf-8')
  assert samples.count('=== step 6') == 1
  assert (workdir / 'curves.png').stat().st_size > 0


@pytest.mark.slow
def test_sharding_validation_loss_matches_across_meshes(runs):
  """The 1-, 4- and 8-device and 2-process runs score the same val loss."""
  losses = []
  for path, _ in runs.values():
    with open(path / 'metrics.jsonl', encoding='utf-8') as f:
      val = [json.loads(line) for line in f if '"val"' in line]
    losses.append(val[-1]['loss'])
  np.testing.assert_allclose(losses, losses[0], rtol=1e-5)


def test_sharding_process_rows_cover_the_batch_on_one_process():
  """Alone, a process feeds every row of the global batch."""
  mesh = sharding.make_mesh()
  assert sharding.process_rows(mesh, 16) == slice(0, 16)
  batch = {'inputs': np.arange(32).reshape(2, 16), 'reset': np.ones(16, bool)}
  placed = sharding.place_batch(batch, mesh)
  np.testing.assert_array_equal(placed['inputs'], batch['inputs'])
  assert placed['inputs'].sharding.spec == jax.sharding.PartitionSpec(
    None, 'data'
  )


def test_sharding_batch_size_error_names_the_numbers():
  """A batch the devices do not divide is refused with multiples to use."""

  class EightDevices:
    devices = np.zeros(8)

  with pytest.raises(ValueError) as info:
    sharding.check_batch_size(30, EightDevices())
  message = str(info.value)
  assert '\n' not in message
  assert 'batch_size=30' in message and '8 devices' in message
  assert 'batch_size=24 or 32' in message
  with pytest.raises(ValueError, match='batch_size=8'):
    sharding.check_batch_size(3, EightDevices())
  sharding.check_batch_size(32, EightDevices())


def test_sharding_cli_reports_indivisible_batch_in_one_line(tmp_path):
  """jlstm train with 8 devices and batch 30: one stderr line, exit 2."""
  text_file = _text(tmp_path / 'corpus.txt')
  done = subprocess.run(
    [
      sys.executable,
      '-m',
      'jlstm',
      'train',
      '--config',
      str(ROOT / 'configs' / 'charlm.py'),
      '--workdir',
      str(tmp_path / 'run'),
      '--config.batch_size=30',
      f'--config.data.path={text_file}',
    ],
    env=_env(8),
    capture_output=True,
    text=True,
    timeout=RUN_TIMEOUT_S,
    cwd=ROOT,
  )
  assert done.returncode == 2, done.stderr
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1, done.stderr
  assert 'use a multiple of 8, e.g. batch_size=24 or 32' in lines[0]


def test_distributed_requested_by_config_or_environment(monkeypatch):
  """distributed=True or JLSTM_DISTRIBUTED=1 asks for a multi-host start."""
  import ml_collections

  monkeypatch.delenv(distributed.ENV_FLAG, raising=False)
  on = ml_collections.ConfigDict({'distributed': True})
  off = ml_collections.ConfigDict({'distributed': False})
  assert distributed.requested(on)
  assert not distributed.requested(off)
  assert not distributed.requested(None)
  monkeypatch.setenv(distributed.ENV_FLAG, '1')
  assert distributed.requested(off)
  monkeypatch.setenv(distributed.ENV_FLAG, '0')
  assert not distributed.requested(off)


def test_distributed_initialize_refuses_after_devices_are_used(monkeypatch):
  """Asking for multi-host after JAX has run raises a clear ValueError."""
  import ml_collections

  jax.numpy.zeros(1).block_until_ready()
  monkeypatch.setenv(distributed.ENV_FLAG, '1')
  monkeypatch.setenv('JLSTM_COORDINATOR_ADDRESS', 'localhost:1')
  monkeypatch.setenv('JLSTM_NUM_PROCESSES', '2')
  monkeypatch.setenv('JLSTM_PROCESS_ID', '0')
  with pytest.raises(ValueError, match='fresh process'):
    distributed.initialize(ml_collections.ConfigDict({'distributed': False}))
  assert not jax.distributed.is_initialized()
  monkeypatch.setenv('JLSTM_NUM_PROCESSES', 'two')
  with pytest.raises(ValueError, match='JLSTM_NUM_PROCESSES'):
    distributed.initialize(None)
