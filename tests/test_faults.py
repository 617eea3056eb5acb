"""Faults and bad input: no run loses its work, and bad input is one line.

* Interruptions: SIGINT and SIGTERM stop a run after a checkpoint; at least
  ten SIGKILLs at random moments never leave a broken latest checkpoint,
  and the resumed run ends with the uninterrupted run's exact state.
* Divergence: a non-finite step stops the run (naming the step) or is
  skipped and counted; no checkpoint ever holds NaN.
* Storage: an unwritable workdir or a failing checkpoint write is one clear
  line, and the earlier checkpoint stays intact.
* Bad data and config: one line, exit code 2, the workdir untouched.

The runs are a 1 x 8 character LSTM on a few kilobytes of text. Runs that
must be killed are subprocesses of ``python -m jlstm``, sharing a JAX
compilation cache so each restart compiles nothing.
"""

import errno
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath

from jlstm import cli
from jlstm import train
from jlstm.train import faults
from jlstm.train import optim
from jlstm.train.checkpoint import CheckpointError
from jlstm.train.metrics import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHARLM = os.path.join(ROOT, 'configs', 'charlm.py')

# A tiny run: steps take milliseconds, so kills land anywhere in them.
TINY = {
  'model.hidden_size': 8,
  'model.num_layers': 1,
  'model.embed_size': 4,
  'batch_size': 4,
  'seq_len': 8,
  'learning_rate': 3e-2,
  'schedule.warmup_steps': 2,
  'eval_every': 1000,
  'log_every': 1,
  'sample.length': 4,
}
# Steps of the interrupted runs: ten kills, each after at most a few steps
# of progress (0.15 s of steps of >= 20 ms), leave work for the final run.
STEPS = 120
KILLS = 10
TIMEOUT = 240


def write_corpus(path, words=('the cat', 'a dog', 'my bird'), lines=150):
  """Short sentences: 150 lines give 95 steps per epoch, 300 give 191."""
  rng = np.random.default_rng(0)
  lines = [
    f'{words[i]} sat on {words[j]}.'
    for i, j in rng.integers(0, len(words), size=(lines, 2))
  ]
  path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
  return path


def train_argv(workdir, data, **overrides):
  """``jlstm train`` arguments for the tiny run."""
  argv = ['train', '--config', CHARLM, '--workdir', str(workdir), '--quiet']
  for key, value in {**TINY, 'data.path': str(data), **overrides}.items():
    argv.append(f'--config.{key}={value}')
  return argv


def tiny_config(data, **overrides):
  """The tiny run's config, as ``train_argv`` builds it."""
  config = train.load_config_file(CHARLM)
  for key, value in {**TINY, 'data.path': str(data), **overrides}.items():
    train.apply_override(config, key, str(value))
  return config


def run_cli(capsys, argv):
  """Runs ``jlstm`` in this process; returns (exit code, stderr lines)."""
  code = cli.main([str(a) for a in argv])
  _, err = capsys.readouterr()
  return code, err.strip().splitlines()


def assert_one_line(lines, code, want_code, pattern, what=''):
  """One stderr line, no traceback, the exit code, and ``pattern``."""
  assert code == want_code, (what, lines)
  assert len(lines) == 1, (what, lines)
  assert 'Traceback' not in lines[0], what
  assert re.search(pattern, lines[0]), (what, lines[0])


def snapshot(folder):
  """Every file under ``folder`` with its content hash, and every folder."""
  tree = {}
  for parent, _, files in os.walk(folder):
    rel = os.path.relpath(parent, folder)
    tree[rel] = 'dir'
    for name in files:
      with open(os.path.join(parent, name), 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
      tree[os.path.join(rel, name)] = digest
  return tree


def checkpoint_steps(workdir, kind='latest'):
  """The committed step folders of a checkpoint kind, as ints."""
  root = os.path.join(workdir, 'checkpoints', kind)
  if not os.path.isdir(root):
    return []
  return sorted(int(name) for name in os.listdir(root) if name.isdigit())


def read_latest(workdir):
  """Loads the latest checkpoint with orbax alone, as a resume would find it.

  Returns:
    ``(step, state, meta)`` with ``state`` a nested dict of arrays, or None
    when there is no checkpoint.
  """
  root = os.path.join(workdir, 'checkpoints', 'latest')
  if not os.path.isdir(root):
    return None
  options = ocp.CheckpointManagerOptions(read_only=True)
  manager = ocp.CheckpointManager(root, options=options)
  try:
    step = manager.latest_step()
    if step is None:
      return None
    restored = manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()
      ),
    )
  finally:
    manager.close()
  return step, jax.device_get(restored.state), dict(restored.meta)


def assert_finite(state):
  for leaf in jax.tree.leaves(state):
    if np.issubdtype(np.asarray(leaf).dtype, np.floating):
      assert np.isfinite(leaf).all(), 'a checkpoint holds NaN or inf'


def assert_same_state(got, want):
  """Bitwise equality of two restored train states."""
  got_leaves, got_tree = jax.tree.flatten(got)
  want_leaves, want_tree = jax.tree.flatten(want)
  assert got_tree == want_tree
  for a, b in zip(got_leaves, want_leaves, strict=True):
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------
# Interruptions, in subprocesses.


@pytest.fixture(scope='module')
def cli_env(tmp_path_factory):
  """Environment of the subprocesses: one persistent compilation cache."""
  cache = tmp_path_factory.mktemp('jax-cache')
  env = dict(os.environ)
  env.update(
    JAX_COMPILATION_CACHE_DIR=str(cache),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
    JAX_PLATFORMS='cpu',
  )
  return env


def launch(argv, env, log):
  """Starts ``python -m jlstm``, its stderr to the file ``log``."""
  with open(log, 'w') as err:
    return subprocess.Popen(
      [sys.executable, '-m', 'jlstm', *map(str, argv)],
      cwd=ROOT,
      env=env,
      stdout=subprocess.DEVNULL,
      stderr=err,
    )


def wait_for(condition, process, timeout=TIMEOUT):
  """Polls ``condition`` until it holds or ``process`` has exited."""
  deadline = time.monotonic() + timeout
  while not condition() and process.poll() is None:
    assert time.monotonic() < deadline, 'the run made no progress'
    time.sleep(0.01)


def last_train_step(workdir):
  records = read_metrics(os.path.join(workdir, 'metrics.jsonl'))
  steps = [r['step'] for r in records if r['split'] == 'train']
  return max(steps, default=0)


@pytest.fixture(scope='module')
def reference(tmp_path_factory, cli_env):
  """An uninterrupted run of STEPS steps, started at once in the background.

  Returns a function that waits for it and returns its final state.
  """
  folder = tmp_path_factory.mktemp('reference')
  data = write_corpus(folder / 'corpus.txt', lines=300)
  workdir = folder / 'run'
  argv = train_argv(
    workdir, data, num_train_steps=STEPS, checkpoint_every=STEPS
  )
  process = launch(argv, cli_env, folder / 'stderr.txt')

  def result():
    assert process.wait(timeout=TIMEOUT) == 0, (
      folder / 'stderr.txt'
    ).read_text()
    step, state, _ = read_latest(workdir)
    assert step == STEPS
    return state

  yield result
  if process.poll() is None:
    process.kill()
    process.wait()


@pytest.mark.slow
def test_train_sigint_and_sigterm_save_a_checkpoint_and_resume(
  tmp_path, cli_env, reference
):
  """SIGINT, then SIGTERM: each finishes the step, checkpoints it, exits
  with 128 + signal and one line; the resumed run ends as if never
  stopped."""
  data = write_corpus(tmp_path / 'corpus.txt', lines=300)
  workdir = tmp_path / 'run'
  # No periodic checkpoint: the only ones are those the signals write.
  argv = train_argv(workdir, data, num_train_steps=STEPS, checkpoint_every=999)
  stopped_at = 0
  for signum in (signal.SIGINT, signal.SIGTERM):
    log = tmp_path / f'stderr-{signum}.txt'
    process = launch(argv, cli_env, log)
    wait_for(lambda s=stopped_at: last_train_step(workdir) > s, process)
    assert process.poll() is None, log.read_text()
    process.send_signal(signum)
    assert process.wait(timeout=TIMEOUT) == 128 + signum, log.read_text()
    lines = log.read_text().strip().splitlines()
    name = signal.Signals(signum).name
    assert_one_line(
      lines,
      128 + signum,
      128 + signum,
      rf'^jlstm: {name} received: stopped after step \d+ and saved a '
      r'checkpoint in .*; run the same command again to resume$',
    )
    step = int(re.search(r'after step (\d+)', lines[0]).group(1))
    assert step > stopped_at and step % 999
    saved_step, state, _ = read_latest(workdir)
    assert saved_step == step and int(state['step']) == step
    assert_finite(state)
    stopped_at = step

  final = subprocess.run(
    [sys.executable, '-m', 'jlstm', *argv],
    cwd=ROOT,
    env=cli_env,
    capture_output=True,
    text=True,
    timeout=TIMEOUT,
  )
  assert final.returncode == 0, final.stderr
  step, state, _ = read_latest(workdir)
  assert step == STEPS
  assert_same_state(state, reference())


@pytest.mark.slow
def test_train_survives_random_sigkills(tmp_path, cli_env, reference):
  """At least ten SIGKILLs at random moments (start-up, steps, checkpoint
  writes) always leave a loadable, finite latest checkpoint that never
  goes back, and the resumed run ends with the uninterrupted state."""
  data = write_corpus(tmp_path / 'corpus.txt', lines=300)
  workdir = tmp_path / 'run'
  # A checkpoint every step: most of a step's time is the write, so most
  # kills land inside one.
  argv = train_argv(workdir, data, num_train_steps=STEPS, checkpoint_every=1)
  rng = random.Random(20260)
  kills, runs, latest, mid_write = 0, 0, 0, 0
  while kills < KILLS:
    runs += 1
    assert runs <= 4 * KILLS, 'the killed runs make no progress'
    process = launch(argv, cli_env, tmp_path / 'stderr.txt')
    if rng.random() < 0.3:
      # Mostly start-up: imports, compiling, restoring, cleaning up.
      time.sleep(rng.uniform(0.0, 1.5))
    else:
      before = latest
      wait_for(
        lambda before=before: (
          max(checkpoint_steps(workdir), default=0) > before
        ),
        process,
      )
      time.sleep(rng.uniform(0.0, 0.15))
    assert process.poll() is None, 'the run ended before it was killed'
    process.kill()
    process.wait()
    kills += 1
    root = workdir / 'checkpoints' / 'latest'
    # A temporary folder left behind: the kill landed inside a write.
    mid_write += root.is_dir() and any(
      not name.isdigit() for name in os.listdir(root)
    )

    found = read_latest(workdir)
    if found is None:
      assert latest == 0, 'a checkpoint was lost'
      continue
    step, state, meta = found
    assert step >= latest, f'the latest checkpoint went back: {latest}->{step}'
    assert int(state['step']) == step
    # The data position is saved with the step (one epoch holds them all).
    assert meta['data'] == {'epoch': 0, 'index': step}
    assert_finite(state)
    latest = step
  assert 0 < latest < STEPS

  final = subprocess.run(
    [sys.executable, '-m', 'jlstm', *argv],
    cwd=ROOT,
    env=cli_env,
    capture_output=True,
    text=True,
    timeout=TIMEOUT,
  )
  assert final.returncode == 0, final.stderr
  step, state, _ = read_latest(workdir)
  assert step == STEPS
  assert_same_state(state, reference())
  # Every step was logged once: killed runs' records past their checkpoint
  # were dropped and written again.
  records = read_metrics(workdir / 'metrics.jsonl')
  train_steps = [r['step'] for r in records if r['split'] == 'train']
  assert train_steps == list(range(1, STEPS + 1))
  # Leftovers of killed writes are cleaned up by the next run.
  leftovers = [
    name
    for name in os.listdir(workdir / 'checkpoints' / 'latest')
    if not name.isdigit()
  ]
  assert not leftovers
  print(
    f'{kills} SIGKILLs over {runs} runs ({mid_write} inside a checkpoint '
    'write), 0 checkpoints lost'
  )


# ---------------------------------------------------------------------------
# In-process runs: divergence, storage, bad data and config.


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A tiny run stopped at step 4 with checkpoints every 2 steps."""
  folder = tmp_path_factory.mktemp('trained')
  data = write_corpus(folder / 'corpus.txt')
  workdir = folder / 'run'
  config = tiny_config(data, num_train_steps=4, checkpoint_every=2)
  train.train_and_evaluate(config, workdir, verbose=False)
  return data, workdir


@pytest.fixture
def copy_of(trained, tmp_path):
  """A fresh copy of the trained workdir, and its data file."""
  data, workdir = trained
  copy = tmp_path / 'run'
  shutil.copytree(workdir, copy)
  return data, copy


def diverge_after(monkeypatch, step):
  """Makes every update after ``step`` infinite: the learning rate the
  trainer's schedule gives becomes inf there (the config itself refuses a
  non-finite learning rate)."""
  make_schedule = optim.make_schedule

  def schedule_going_infinite(*args, **kwargs):
    base = make_schedule(*args, **kwargs)
    return lambda count: jnp.where(count >= step, jnp.inf, base(count))

  monkeypatch.setattr(optim, 'make_schedule', schedule_going_infinite)


def test_train_stop_policy_names_step_and_keeps_checkpoint(
  copy_of, monkeypatch
):
  """on_nonfinite='stop' ends at the first non-finite step, naming it,
  and leaves the last good checkpoint as it was."""
  data, workdir = copy_of
  before = snapshot(workdir / 'checkpoints' / 'latest')
  diverge_after(monkeypatch, 4)
  config = tiny_config(data, num_train_steps=8, checkpoint_every=2)
  with pytest.raises(faults.Diverged) as error:
    train.train_and_evaluate(config, workdir, verbose=False)
  assert error.value.step == 5 and error.value.checkpoint_step == 4
  assert re.search(
    r'non-finite loss or gradient at step 5; stopped and the checkpoint '
    r'of step 4 in .*latest is kept',
    str(error.value),
  )
  assert snapshot(workdir / 'checkpoints' / 'latest') == before
  step, state, _ = read_latest(workdir)
  assert step == 4
  assert_finite(state)


def test_train_skip_policy_skips_and_counts_nonfinite_steps(
  copy_of, monkeypatch
):
  """on_nonfinite='skip' finishes the run, leaves parameters untouched by
  the skipped steps, counts them, and writes only finite checkpoints."""
  data, workdir = copy_of
  diverge_after(monkeypatch, 4)
  _, at_4, _ = read_latest(workdir)
  config = tiny_config(
    data,
    num_train_steps=8,
    checkpoint_every=2,
    on_nonfinite='skip',
  )
  train.train_and_evaluate(config, workdir, verbose=False)
  step, state, meta = read_latest(workdir)
  assert step == 8 and meta['skipped_steps'] == 4
  assert_finite(state)
  assert_same_state(state['params'], at_4['params'])
  records = read_metrics(workdir / 'metrics.jsonl')
  skipped = {r['step']: r['skipped'] for r in records if r['split'] == 'train'}
  assert skipped == {1: 0, 2: 0, 3: 0, 4: 0, 5: 1, 6: 1, 7: 1, 8: 1}


@pytest.mark.parametrize('clip', [0.0, 1e-30, 1.0])
@pytest.mark.parametrize('scale', [0.0, 1.0])
def test_optimizer_clipping_zero_threshold_or_gradient_is_finite(clip, scale):
  """Global-norm clipping with a zero threshold (off) or a zero gradient
  gives finite updates (optax's own clip gives 0/0 there)."""
  config = train.load_config_file(CHARLM)
  config.optimizer.grad_clip = clip
  optimizer = optim.make_optimizer(config, lambda step: 1e-3)
  params = {'w': jnp.ones((3, 2)), 'b': jnp.ones(2)}
  grads = jax.tree.map(lambda p: scale * jnp.ones_like(p), params)
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  for leaf in jax.tree.leaves(updates):
    assert np.isfinite(leaf).all()


def test_config_rejects_negative_clip_and_unknown_policy(capsys, tmp_path):
  """A negative grad_clip or an unknown on_nonfinite is a one-line error."""
  data = write_corpus(tmp_path / 'corpus.txt')
  for key, value, pattern in (
    ('optimizer.grad_clip', -1.0, r'optimizer\.grad_clip must be >= 0'),
    ('on_nonfinite', 'retry', r"on_nonfinite must be one of \('stop'"),
  ):
    code, lines = run_cli(
      capsys, train_argv(tmp_path / 'run', data, **{key: value})
    )
    assert_one_line(lines, code, 2, pattern)
  assert not (tmp_path / 'run').exists()


def unwritable_workdirs(tmp_path):
  """Workdirs that cannot be written, whoever runs the test."""
  blocker = tmp_path / 'a-file'
  blocker.write_text('not a folder')
  cases = {
    'is_a_file': blocker,
    'under_a_file': blocker / 'run',
    'in_proc': '/proc/jlstm-test-run',
  }
  if hasattr(os, 'geteuid') and os.geteuid() != 0:
    locked = tmp_path / 'locked'
    locked.mkdir(mode=0o500)
    cases['read_only_folder'] = locked / 'run'
    cases['read_only_workdir'] = locked
  return cases


def test_cli_unwritable_workdir_is_one_line(capsys, tmp_path):
  """A workdir that cannot be written fails before training, in one line,
  and creates nothing."""
  data = write_corpus(tmp_path / 'corpus.txt')
  workdirs = unwritable_workdirs(tmp_path)
  before = snapshot(tmp_path)
  for name, workdir in workdirs.items():
    code, lines = run_cli(capsys, train_argv(workdir, data))
    assert_one_line(lines, code, 2, r'^jlstm train: error: .*workdir', name)
  assert snapshot(tmp_path) == before


def fail_checkpoint_writes(monkeypatch, how):
  """Makes every write into a checkpoint being saved fail, as a full disk
  (a file write) or a failing commit (the final rename) would."""
  tmp_marker = '.orbax-checkpoint-tmp'
  if how == 'disk_full':
    path_class = type(epath.Path(os.getcwd()))
    write_text = path_class.write_text

    def failing_write_text(self, *args, **kwargs):
      if tmp_marker in os.fspath(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(self))
      return write_text(self, *args, **kwargs)

    monkeypatch.setattr(path_class, 'write_text', failing_write_text)
  else:
    rename = os.rename

    def failing_rename(src, dst, *args, **kwargs):
      if tmp_marker in os.fspath(src):
        raise OSError(errno.EIO, os.strerror(errno.EIO), os.fspath(src))
      return rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, 'rename', failing_rename)


@pytest.mark.slow
@pytest.mark.parametrize('how', ['disk_full', 'commit'])
def test_cli_failing_checkpoint_write_keeps_earlier_checkpoint(
  capsys, monkeypatch, copy_of, how
):
  """A write failing mid-save is one line (exit 1) naming the step and the
  intact checkpoint; that checkpoint stays as it was, and a rerun resumes
  from it."""
  data, workdir = copy_of
  before = snapshot(workdir / 'checkpoints' / 'latest' / '4')
  _, at_4, _ = read_latest(workdir)
  argv = train_argv(workdir, data, num_train_steps=8, checkpoint_every=2)
  with monkeypatch.context() as patch:
    fail_checkpoint_writes(patch, how)
    code, lines = run_cli(capsys, argv)
  assert_one_line(
    lines,
    code,
    1,
    r'^jlstm train: error: could not write the latest checkpoint of step 6 '
    r'to .*: .*; the checkpoint of step 4 is intact$',
  )
  assert snapshot(workdir / 'checkpoints' / 'latest' / '4') == before
  step, state, _ = read_latest(workdir)
  assert step == 4
  assert_same_state(state, at_4)

  code, lines = run_cli(capsys, argv)
  assert code == 0, lines
  assert checkpoint_steps(workdir) == [8]
  assert not [
    n for n in os.listdir(workdir / 'checkpoints' / 'latest') if '.' in n
  ]


def test_checkpoint_error_is_an_oserror():
  """Callers that handle OSError (a full disk) handle checkpoint failures."""
  assert issubclass(CheckpointError, OSError)


def bad_data_files(tmp_path):
  """Data files no run can use, each with the words its error must say."""
  folder = tmp_path / 'bad'
  folder.mkdir()
  (folder / 'empty.txt').write_text('')
  (folder / 'blank.txt').write_text(' \n\t\n')
  # 36 characters to train on, fewer than one batch's 4 x 8 + 8.
  (folder / 'short.txt').write_text('the cat sat on the mat and the dog ran.\n')
  (folder / 'latin1.txt').write_bytes('caf\xe9 na\xefve\n'.encode('latin-1'))
  (folder / 'binary.txt').write_bytes(bytes(range(256)))
  (folder / 'a-folder').mkdir()
  return {
    'empty': (folder / 'empty.txt', 'data file is empty'),
    'whitespace': (folder / 'blank.txt', 'data file is empty'),
    'shorter_than_a_batch': (folder / 'short.txt', 'too few for one batch'),
    'invalid_utf8': (folder / 'latin1.txt', 'not UTF-8 text'),
    'binary': (folder / 'binary.txt', 'not UTF-8 text'),
    'directory': (folder / 'a-folder', 'is a directory'),
    'missing': (folder / 'missing.txt', 'data file not found'),
  }


def test_cli_bad_data_is_one_line_and_leaves_workdir(capsys, copy_of):
  """Each unusable data file is one line with exit code 2, for a new
  workdir (not created) and for a trained one (left untouched)."""
  _, workdir = copy_of
  new = workdir.parent / 'new-run'
  before = snapshot(workdir)
  for name, (path, pattern) in bad_data_files(workdir.parent).items():
    for target in (new, workdir):
      code, lines = run_cli(capsys, train_argv(target, path))
      assert_one_line(lines, code, 2, re.escape(pattern), name)
      assert str(path) in lines[0], name
  assert not new.exists()
  assert snapshot(workdir) == before


def test_cli_vocabulary_mismatch_is_one_line_and_leaves_workdir(
  capsys, copy_of
):
  """Resuming on text with another vocabulary is refused, workdir intact."""
  _, workdir = copy_of
  other = write_corpus(
    workdir.parent / 'other.txt', words=('the owl', 'a yak', 'my emu')
  )
  before = snapshot(workdir)
  code, lines = run_cli(capsys, train_argv(workdir, other, num_train_steps=8))
  assert_one_line(
    lines,
    code,
    2,
    r'different vocabulary than the run in .* was trained on \(\d+ tokens '
    r'where the run had \d+',
  )
  assert snapshot(workdir) == before


@pytest.mark.parametrize(
  'key, value, changed',
  [
    ('model.hidden_size', 16, 'model.hidden_size was 8, now 16'),
    ('model.num_layers', 2, 'model.num_layers was 1, now 2'),
    ('batch_size', 2, 'batch_size was 4, now 2'),
    ('optimizer.name', 'sgd', "optimizer.name was 'adam', now 'sgd'"),
  ],
)
def test_cli_checkpoint_not_fitting_config_is_one_line(
  capsys, copy_of, key, value, changed
):
  """A config whose state no longer fits the checkpoint names the changed
  key in one line; the workdir is left as it was."""
  data, workdir = copy_of
  before = snapshot(workdir)
  code, lines = run_cli(
    capsys, train_argv(workdir, data, num_train_steps=8, **{key: value})
  )
  assert_one_line(
    lines,
    code,
    2,
    r'the checkpoint of step 4 in .* does not fit this config \('
    + re.escape(changed),
  )
  assert snapshot(workdir) == before
