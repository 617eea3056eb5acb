"""Tests for the jlstm command line: errors are one line with exit code 2."""

import os
import subprocess
import sys

import pytest

from jlstm import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHARLM = os.path.join(ROOT, 'configs', 'charlm.py')


def _main(capsys, *argv):
  code = cli.main(list(argv))
  out, err = capsys.readouterr()
  return code, out, err


def _train(capsys, tmp_path, *overrides):
  """``jlstm train`` of the default config into ``tmp_path / 'run'``."""
  workdir = str(tmp_path / 'run')
  return _main(
    capsys, 'train', '--config', CHARLM, '--workdir', workdir, *overrides
  )


def _assert_one_line_error(code, err, pattern):
  assert code == 2
  lines = err.strip().splitlines()
  assert len(lines) == 1, err
  assert 'Traceback' not in err
  assert pattern in lines[0], lines[0]


def test_cli_unknown_key_is_one_line_exit_2(capsys, tmp_path):
  """A misspelt config key fails before any work, naming the key."""
  code, _, err = _train(
    capsys,
    tmp_path,
    '--config.model.hiden_size=8',
  )
  _assert_one_line_error(code, err, 'unknown config key: model.hiden_size')
  assert not (tmp_path / 'run').exists()


def test_cli_wrong_type_is_one_line_exit_2(capsys, tmp_path):
  """A value that does not parse as the key's type names key and value."""
  code, _, err = _train(
    capsys,
    tmp_path,
    '--config.batch_size',
    'many',
  )
  _assert_one_line_error(code, err, '--config.batch_size expects an int')


def test_cli_bad_value_is_one_line_exit_2(capsys, tmp_path):
  """A value of the right type but out of range is refused too."""
  code, _, err = _train(
    capsys,
    tmp_path,
    '--config.optimizer.name=adagrad',
  )
  _assert_one_line_error(code, err, 'optimizer.name must be one of')


@pytest.mark.parametrize(
  'override,pattern',
  [
    ('model.bidirectional=true', 'bidirectional must be False'),
    ('model.input_dropout=1.5', 'input_dropout must be a number in [0, 1)'),
    ('model.proj_clip=2.0', 'proj_clip=2.0 bounds a projection'),
    ('model.init=he', 'model.init must be one of'),
  ],
)
def test_cli_model_that_cannot_be_built_is_one_line_exit_2(
  capsys, tmp_path, override, pattern
):
  """Model keys of the right type that make no model: one line, code 2."""
  code, _, err = _train(
    capsys,
    tmp_path,
    f'--config.{override}',
  )
  _assert_one_line_error(code, err, pattern)
  assert not (tmp_path / 'run').exists()


def test_cli_missing_data_file_is_one_line_exit_2(capsys, tmp_path):
  """A data.path that does not exist is reported with its path."""
  missing = tmp_path / 'missing.txt'
  code, _, err = _train(
    capsys,
    tmp_path,
    f'--config.data.path={missing}',
  )
  _assert_one_line_error(code, err, f'data file not found: {missing}')


def test_cli_empty_data_file_is_one_line_exit_2(capsys, tmp_path):
  """An empty data file is refused before training starts."""
  empty = tmp_path / 'empty.txt'
  empty.write_text('')
  code, _, err = _train(
    capsys,
    tmp_path,
    f'--config.data.path={empty}',
  )
  _assert_one_line_error(code, err, f'data file is empty: {empty}')


def test_cli_usage_errors_are_one_line(capsys, tmp_path):
  """Missing options, stray arguments and missing files: one line, code 2."""
  code, _, err = _main(capsys, 'train', '--workdir', str(tmp_path))
  _assert_one_line_error(code, err, '--config')
  code, _, err = _main(
    capsys, 'train', '--config', str(tmp_path / 'nope.py'), '--workdir', 'x'
  )
  _assert_one_line_error(code, err, 'config file not found')
  code, _, err = _main(
    capsys, 'train', '--config', CHARLM, '--workdir', 'x', '--lr=3'
  )
  _assert_one_line_error(code, err, 'unrecognized argument: --lr=3')
  code, _, err = _main(capsys, 'eval', '--workdir', str(tmp_path))
  _assert_one_line_error(code, err, 'no run in')
  code, _, err = _main(capsys, 'fly')
  _assert_one_line_error(code, err, 'invalid choice')
  # No command at all: the usage, on stderr, and code 2; --help: stdout, 0.
  code, out, err = _main(capsys)
  assert (code, out) == (2, '') and err.startswith('usage: jlstm')
  code, out, err = _main(capsys, '--help')
  assert (code, err) == (0, '') and out.startswith('usage: jlstm')


def test_cli_python_m_reports_error_without_traceback(tmp_path):
  """``python -m jlstm`` behaves as the command: stderr line, exit 2."""
  proc = subprocess.run(
    [
      sys.executable,
      '-m',
      'jlstm',
      'train',
      '--config',
      CHARLM,
      '--workdir',
      str(tmp_path / 'run'),
      '--config.seq_len=1.5',
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
    timeout=120,
  )
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
    "jlstm train: error: --config.seq_len expects an int; got '1.5'"
  ]
  assert proc.stdout == ''


@pytest.mark.slow
@pytest.mark.parametrize(
  'override', ['learning_rate=nan', 'schedule.end_factor=inf']
)
def test_cli_non_finite_number_is_one_line_exit_2(capsys, tmp_path, override):
  """NaN or infinity in any float key is refused before the workdir exists."""
  code, _, err = _train(
    capsys,
    tmp_path,
    f'--config.{override}',
  )
  key = override.split('=')[0]
  _assert_one_line_error(code, err, f'config key {key} must be a finite')
  assert not (tmp_path / 'run').exists()


def test_cli_train_eval_sample_round_trip(capsys, tmp_path):
  """train, rerun (resume, nothing left to do), eval and sample via main()."""
  corpus = tmp_path / 'corpus.txt'
  corpus.write_text('abcab cabca bcabc\n' * 60)
  workdir = str(tmp_path / 'run')
  args = [
    'train',
    '--config',
    CHARLM,
    '--workdir',
    workdir,
    f'--config.data.path={corpus}',
    '--config.num_train_steps=6',
    '--config.batch_size=4',
    '--config.seq_len=8',
    '--config.eval_every=3',
    '--config.checkpoint_every=3',
    '--config.model.hidden_size=8',
    '--config.model.num_layers=1',
    '--config.sample.length=0',
    '--quiet',
  ]
  code, out, err = _main(capsys, *args)
  assert code == 0, err
  code, out, err = _main(capsys, *args)
  assert code == 0, err

  code, out, err = _main(capsys, 'eval', '--workdir', workdir)
  assert code == 0, err
  lines = out.strip().splitlines()
  assert lines[0].startswith('best checkpoint, step ')
  assert lines[1].startswith('val: loss ') and 'bpc' in lines[1]
  assert lines[2] == 'test: no split'

  code, out, err = _main(
    capsys,
    'sample',
    '--workdir',
    workdir,
    '--prompt',
    'ab',
    '--length',
    '12',
    '--temperature',
    '0',
  )
  assert code == 0, err
  # The prompt, 12 sampled characters, and print's line end.
  assert out.startswith('ab') and len(out) == 2 + 12 + 1
  assert err == ''

  # Characters the corpus never had are named once, then read as <unk>.
  sample = ['sample', '--workdir', workdir, '--length', '3']
  code, out, err = _main(capsys, *sample, '--prompt', 'axzx')
  assert code == 0, err
  assert out.startswith('axzx') and len(out) == 4 + 3 + 1
  assert err.strip().splitlines() == [
    'jlstm sample: note: the prompt has tokens the model never saw, read as '
    "<unk>: 'x', 'z'"
  ]

  for flag, value, pattern in (
    ('--temperature', 'nan', '--temperature must be a finite number >= 0'),
    ('--temperature', 'inf', '--temperature must be a finite number >= 0'),
    ('--temperature', '-1', '--temperature must be a finite number >= 0'),
    ('--length', '-1', '--length must be >= 0'),
  ):
    code, out, err = _main(capsys, *sample, '--prompt', 'ab', flag, value)
    _assert_one_line_error(code, err, f'jlstm sample: error: {pattern}')
    assert out == ''


def test_cli_bench_passes_its_arguments_on(monkeypatch):
  """``jlstm bench ARGS`` calls ``jlstm.bench.main(ARGS)`` and returns its
  exit code."""
  from jlstm import bench

  seen = []
  monkeypatch.setattr(bench, 'main', lambda argv: seen.append(argv) or 7)
  assert cli.main(['bench', '--quick', '--out', 'x.json']) == 7
  assert seen == [['--quick', '--out', 'x.json']]
