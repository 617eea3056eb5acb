"""``train_and_evaluate``: the training loop, and the eval and sample entries.

What a run writes into its workdir::

  config.json        the resolved config
  tokenizer.json     the vocabulary (language models)
  checkpoints/       orbax: latest/ (to resume) and best/ (by val loss)
  metrics.jsonl      train, val (and test) records, one JSON per line
  curves.png         train and validation curves
  samples.txt        generated text at every evaluation (language models)
  eval.json          the scores of ``jlstm eval``
"""

from __future__ import annotations

import json
import os
import platform
import time
import types
from typing import Any

import jax
import ml_collections
import numpy as np
import tqdm

import jlstm
from jlstm.data import DataError
from jlstm.data import Tokenizer
from jlstm.train import config as config_lib
from jlstm.train import distributed
from jlstm.train import faults
from jlstm.train import optim
from jlstm.train import precision
from jlstm.train import sharding
from jlstm.train import signals
from jlstm.train import tasks as tasks_lib
from jlstm.train.checkpoint import Checkpointer
from jlstm.train.metrics import MetricsWriter
from jlstm.train.metrics import read_metrics
from jlstm.train.plotting import plot_curves
from jlstm.train.sampling import sample_text
from jlstm.train.state import create_train_state
from jlstm.train.step import make_eval_step
from jlstm.train.step import make_train_step

CONFIG_FILE = 'config.json'
TOKENIZER_FILE = 'tokenizer.json'
METRICS_FILE = 'metrics.jsonl'
CURVES_FILE = 'curves.png'
SAMPLES_FILE = 'samples.txt'
EVAL_FILE = 'eval.json'


class _Log:
  """Trainer output: lines above the progress bar, silenced on request."""

  def __init__(self, verbose: bool):
    self.verbose = verbose and jax.process_index() == 0

  def __call__(self, message: str) -> None:
    if self.verbose:
      tqdm.tqdm.write(message)


def _startup_summary(config, task, mesh, state, workdir) -> list[str]:
  """The facts a run prints before its first step."""
  devices = jax.devices()
  params = sum(x.size for x in jax.tree.leaves(state.params))
  lines = [
    f'jlstm {jlstm.__version__}, jax {jax.__version__}, jaxlib '
    f'{jax.lib.__version__}, Python {platform.python_version()}',
    f'backend {jax.default_backend()}: {len(devices)} device(s) '
    f'{[str(d) for d in devices]}, process {jax.process_index()} of '
    f'{jax.process_count()}, mesh {dict(mesh.shape)}',
    f'task {config.task}: '
    + ', '.join(f'{k}={v}' for k, v in task.info.items()),
    f'model: {params:,} parameters, {task.model}',
    f'precision: {precision.policy_from_config(config).describe()}',
    f'workdir: {os.path.abspath(workdir)}',
    'config: ' + json.dumps(json.loads(config_lib.to_json(config))),
  ]
  return lines


def _evaluate(task, eval_step, params, split: str, mesh) -> dict | None:
  """Scores ``split`` with ``params``; None when the split is empty."""
  batches = task.eval_batches(split)
  if batches is None:
    return None
  batch_size = batches[0]['inputs'].shape[1]
  carry = task.init_carry(params, batch_size)
  if carry is not None:
    carry = sharding.shard_rows(carry, mesh)
  stats = []
  for batch in batches:
    batch_stats, carry = eval_step(
      params, carry, sharding.place_batch(batch, mesh)
    )
    stats.append(batch_stats)
  return task.summarize(tasks_lib.sum_stats(jax.device_get(stats)))


def _write_json(path: str, payload: Any) -> None:
  # Written aside and renamed into place: a run killed meanwhile leaves
  # the old file or the new one, never half of one.
  partial = path + '.partial'
  with open(partial, 'w', encoding='utf-8') as f:
    f.write(payload if isinstance(payload, str) else json.dumps(payload))
    f.write('\n')
  os.replace(partial, path)


def _check_workdir(workdir: str) -> None:
  """Raises ConfigError unless ``workdir`` is, or can become, a writable
  folder; an existing one is left as it is."""
  if os.path.isdir(workdir):
    if not os.access(workdir, os.W_OK | os.X_OK):
      raise config_lib.ConfigError(
        f'cannot write to workdir {workdir}: permission denied or a '
        'read-only file system'
      )
    return
  try:
    faults.check_workdir(workdir)
  except OSError as e:
    raise config_lib.ConfigError(str(e)) from None


def _flat(tree: dict[str, Any], prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flat(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


#: Config keys that shape the train state: changing them breaks a resume.
_STATE_KEYS = ('task', 'dtype', 'batch_size', 'model.', 'optimizer.name')


def _mismatch(workdir: str, config, step: int, error: Exception) -> str:
  """Explains a checkpoint that does not fit ``config``, by the config keys
  that changed since the run wrote ``config.json``."""
  where = os.path.join(workdir, 'checkpoints', 'latest')
  path = os.path.join(workdir, CONFIG_FILE)
  changed = []
  if os.path.isfile(path):
    with open(path, encoding='utf-8') as f:
      old = _flat(json.loads(f.read()))
    new = _flat(json.loads(config_lib.to_json(config)))
    changed = [
      f'{key} was {old.get(key)!r}, now {new.get(key)!r}'
      for key in sorted(set(old) | set(new))
      if old.get(key) != new.get(key) and key.startswith(_STATE_KEYS)
    ]
  detail = str(error).strip().splitlines()[0]
  reason = '; '.join(changed) or detail.split('match this config: ')[-1]
  advice = (
    f'resume with the config in {path}, or use a new --workdir'
    if os.path.isfile(path)
    else 'use a new --workdir'
  )
  return (
    f'the checkpoint of step {step} in {where} does not fit this config '
    f'({reason}); {advice}'
  )


def _check_vocabulary(workdir: str, task) -> None:
  """Raises DataError when a language model's data gives a vocabulary other
  than the one its checkpoint was trained on."""
  path = os.path.join(workdir, TOKENIZER_FILE)
  if task.tokenizer is None or not os.path.isfile(path):
    return
  with open(path, encoding='utf-8') as f:
    saved = Tokenizer.from_json(f.read())
  new = task.tokenizer
  if saved == new:
    return
  if saved.kind != new.kind:
    detail = f'{new.kind} tokens, the run used {saved.kind} tokens'
  else:
    first = next(
      (
        i
        for i, (a, b) in enumerate(zip(saved.tokens, new.tokens, strict=False))
        if a != b
      ),
      min(saved.vocab_size, new.vocab_size),
    )
    detail = (
      f'{new.vocab_size} tokens where the run had {saved.vocab_size}, the '
      f'first difference at id {first}'
    )
  raise DataError(
    f'the data gives a different vocabulary than the run in {workdir} was '
    f'trained on ({detail}, see {path}); train on data with the same '
    'vocabulary, or use a new --workdir'
  )


def _prepare(config: ml_collections.ConfigDict, task=None):
  """Validates the config and builds task, mesh, optimizer and state."""
  config_lib.validate(config)
  if task is None:
    task = tasks_lib.build_task(config)
  mesh = sharding.make_mesh()
  try:
    sharding.check_batch_size(config.batch_size, mesh)
  except ValueError as e:
    raise config_lib.ConfigError(str(e)) from None
  schedule = optim.make_schedule(config, task.train_stream.steps_per_epoch)
  optimizer = optim.make_optimizer(config, schedule)
  state = create_train_state(
    task, optimizer, config.seed, config.batch_size, mesh
  )
  return task, mesh, schedule, optimizer, state


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str | os.PathLike,
  *,
  stop_at_step: int | None = None,
  verbose: bool = True,
) -> dict[str, Any]:
  """Trains the model a config describes, evaluating and checkpointing.

  Resumes from the workdir's latest checkpoint when there is one: the
  parameters, optimizer state, PRNG key, carried LSTM state and the data
  stream's position all come back, so a run interrupted and resumed ends
  with the same parameters as one that never stopped.

  Every ``log_every`` steps a train record goes to ``metrics.jsonl`` (the
  device is read only then); every ``eval_every`` steps and at the end the
  validation split is scored, a sample is written for language models and
  the best checkpoint is updated; every ``checkpoint_every`` steps and at
  the end the latest checkpoint is written.

  Args:
    config: an ``ml_collections.ConfigDict`` as in ``configs/``.
    workdir: the run's folder, created if missing.
    stop_at_step: stop (with a checkpoint) after this step even if
      ``num_train_steps`` is further; the next call resumes from there.
    verbose: print the start-up summary, progress bar and events.

  Returns:
    The last validation metrics, with ``step``.

  Raises:
    ConfigError: a config that cannot run. DataError: unusable data.

  Example:
    >>> import tempfile
    >>> from jlstm import train
    >>> config = train.load_config_file('configs/charlm.py')
    >>> config.num_train_steps = 2
    >>> config.model.hidden_size = 8
    >>> config.data.val_fraction = 0.01
    >>> result = train.train_and_evaluate(
    ...   config, tempfile.mkdtemp(), verbose=False
    ... )
    >>> result['step'], result['bpc'] > 1
    (2, True)
  """
  workdir = os.fspath(workdir)
  config = ml_collections.ConfigDict(config.to_dict())
  try:
    distributed.initialize(config)
  except ValueError as e:
    raise config_lib.ConfigError(str(e)) from None
  # Only process 0 writes files; every process joins the checkpoints.
  main = distributed.is_main_process()
  policy = precision.policy_from_config(config)
  task, mesh, schedule, optimizer, state = _prepare(config)
  on_nonfinite = config.get('on_nonfinite', 'stop')
  log = _Log(verbose)
  # Everything that can refuse the run is checked before the first write,
  # so a refused run leaves its workdir as it was.
  if main:
    _check_workdir(workdir)

  ckpt = Checkpointer(os.path.join(workdir, 'checkpoints'))
  writer = MetricsWriter(os.path.join(workdir, METRICS_FILE))
  meta: dict[str, Any] = {'best_val_loss': None, 'wall_time': 0.0}
  resume_step = ckpt.step('latest')
  if resume_step is not None:
    try:
      _check_vocabulary(workdir, task)
      try:
        state, meta = ckpt.restore('latest', state)
      except ValueError as e:
        raise config_lib.ConfigError(
          _mismatch(workdir, config, resume_step, e)
        ) from None
      task.train_stream.set_state(meta['data'])
    except BaseException:
      ckpt.close()
      raise
  if main:
    # Records past the checkpoint (all of them when there is none) come
    # from a run that stopped before saving; this run writes them again.
    writer.truncate_after(int(state.step))
    _write_json(os.path.join(workdir, CONFIG_FILE), config_lib.to_json(config))
  if main and task.tokenizer is not None:
    _write_json(os.path.join(workdir, TOKENIZER_FILE), task.tokenizer.to_json())

  for line in _startup_summary(config, task, mesh, state, workdir):
    log(line)
  start_step = int(state.step)
  end_step = config.num_train_steps
  if stop_at_step is not None:
    end_step = min(end_step, stop_at_step)
  if start_step:
    log(f'resumed from step {start_step} ({ckpt.directory}/latest)')

  train_step = make_train_step(task, optimizer, schedule, policy, mesh)
  eval_step = make_eval_step(task, policy, mesh)
  wall_offset = float(meta.get('wall_time', 0.0))
  t_start = time.perf_counter()
  pending: list[dict] = []
  interval_start, interval_steps = time.perf_counter(), 0
  result: dict[str, Any] = {}

  def wall_time() -> float:
    return wall_offset + time.perf_counter() - t_start

  def checkpoint_meta() -> dict[str, Any]:
    return {
      'data': task.train_stream.get_state(),
      'best_val_loss': meta.get('best_val_loss'),
      'wall_time': wall_time(),
      'skipped_steps': skipped,
    }

  # Non-finite steps are found from flags the step returns, read only when
  # the device is waited on anyway: at log, eval and checkpoint steps.
  skipped = int(meta.get('skipped_steps', 0))
  unchecked: list[tuple[int, Any]] = []
  state_is_finite = jax.jit(faults.all_finite)

  def check_nonfinite() -> None:
    nonlocal skipped
    flags = jax.device_get([flag for _, flag in unchecked])
    for (at_step, _), flag in zip(unchecked, flags, strict=True):
      if flag and on_nonfinite == 'stop':
        raise faults.Diverged(
          at_step, ckpt.step('latest'), os.path.join(ckpt.directory, 'latest')
        )
      skipped += int(flag)
    unchecked.clear()

  def save(kind: str, step: int) -> None:
    check_nonfinite()
    # The step keeps a non-finite update out of the state; this makes sure
    # no checkpoint ever holds NaN or inf, whatever produced it.
    if not bool(state_is_finite((state.params, state.opt_state))):
      raise faults.Diverged(
        step, ckpt.step('latest'), os.path.join(ckpt.directory, 'latest')
      )
    ckpt.save(kind, step, state, checkpoint_meta())
    log(f'step {step}: saved the {kind} checkpoint')

  bar = tqdm.tqdm(
    total=config.num_train_steps,
    initial=start_step,
    disable=not log.verbose,
    unit='step',
    dynamic_ncols=True,
  )
  stop = signals.StopRequests()
  try:
    stop.__enter__()
    for step in range(start_step + 1, end_step + 1):
      batch = sharding.place_batch(next(task.train_stream), mesh)
      state, metrics = train_step(state, batch)
      pending.append(metrics)
      unchecked.append((step, metrics['nonfinite']))
      interval_steps += 1
      bar.update(1)
      last = step == end_step

      if step % config.log_every == 0 or last:
        check_nonfinite()
        fetched = jax.device_get(pending)
        elapsed = time.perf_counter() - interval_start
        norms = [m['grad_norm'] for m in fetched if not m['nonfinite']]
        record = {
          'step': step,
          'split': 'train',
          **task.summarize(tasks_lib.sum_stats(fetched)),
          'learning_rate': float(fetched[-1]['learning_rate']),
          'grad_norm': float(np.mean(norms)) if norms else float('nan'),
          'skipped': int(sum(m['nonfinite'] for m in fetched)),
          'steps_per_sec': interval_steps / elapsed,
          'tokens_per_sec': interval_steps * task.tokens_per_batch / elapsed,
          'wall_time': wall_time(),
        }
        if main:
          writer.write(record)
        bar.set_postfix(
          loss=f'{record["loss"]:.3f}',
          tok_s=f'{record["tokens_per_sec"]:.0f}',
        )
        pending = []
        interval_start, interval_steps = time.perf_counter(), 0

      if step % config.eval_every == 0 or step == config.num_train_steps:
        check_nonfinite()
        scores = _evaluate(task, eval_step, state.params, 'val', mesh)
        record = {'step': step, 'split': 'val', **scores}
        record['wall_time'] = wall_time()
        if main:
          writer.write(record)
        result = {'step': step, **scores}
        log(
          f'step {step}: val '
          + ', '.join(
            f'{k} {v:.4f}' for k, v in scores.items() if isinstance(v, float)
          )
        )
        best = meta.get('best_val_loss')
        if best is None or scores['loss'] < best:
          meta['best_val_loss'] = scores['loss']
          save('best', step)
        if main and task.tokenizer is not None:
          _append_sample(config, task, state.params, step, workdir)
        interval_start = time.perf_counter()

      if step % config.checkpoint_every == 0 or last:
        save('latest', step)
        interval_start = time.perf_counter()

      if stop.signum is not None:
        save('latest', step)
        raise signals.Interrupted(
          stop.signum, step, os.path.join(ckpt.directory, 'latest')
        )
  finally:
    stop.__exit__(None, None, None)
    bar.close()
    ckpt.close()

  records = read_metrics(os.path.join(workdir, METRICS_FILE)) if main else []
  if records:
    plot_curves(
      records, os.path.join(workdir, CURVES_FILE), title=_title(config)
    )
  if skipped:
    log(f'{skipped} step(s) skipped for a non-finite loss or gradient')
  outputs = [
    name
    for name in (METRICS_FILE, CURVES_FILE, SAMPLES_FILE, 'checkpoints')
    if os.path.exists(os.path.join(workdir, name))
  ]
  if start_step >= end_step:
    done = f'already at step {start_step}, nothing left to train'
  else:
    done = f'done at step {end_step} after {wall_time():.1f}s'
    if start_step:
      this_run = time.perf_counter() - t_start
      done += f' of training ({this_run:.1f}s in this run)'
  log(f'{done}; results in {workdir}: {", ".join(outputs)}')
  if not result:
    result = {'step': end_step}
  return result


def _title(config) -> str:
  m = config.model
  return (
    f'{config.task}: {m.num_layers} x {m.hidden_size} LSTM, batch '
    f'{config.batch_size}, seq_len {config.seq_len}'
  )


def _append_sample(config, task, params, step, workdir) -> None:
  """Appends a generated sample to ``samples.txt``."""
  s = config.get('sample', ml_collections.ConfigDict())
  temperature = float(s.get('temperature', 0.8))
  text = sample_text(
    task.model,
    # A host copy: with several processes, only this one samples, so the
    # sampler must not run on the job-wide replicated arrays.
    jax.device_get(params),
    task.tokenizer,
    s.get('prompt', ''),
    int(s.get('length', 300)),
    temperature=temperature,
    seed=config.seed + step,
  )
  with open(os.path.join(workdir, SAMPLES_FILE), 'a', encoding='utf-8') as f:
    f.write(f'=== step {step}, temperature {temperature} ===\n{text}\n\n')


class _SavedLanguageModel:
  """A language-model task rebuilt from a workdir, without its data."""

  carries_state = True

  def __init__(self, config, tokenizer):
    self.tokenizer = tokenizer
    self.model = tasks_lib.build_model(config, tokenizer.vocab_size)
    # Only the schedule's shape matters for restoring the optimizer state.
    self.train_stream = types.SimpleNamespace(steps_per_epoch=1)

  def init_carry(self, params, batch_size):
    return self.model.zero_state(params, batch_size)


def load_run(
  workdir: str | os.PathLike, kind: str = 'best', *, with_data: bool = True
):
  """Rebuilds a run from its workdir and restores a checkpoint.

  Args:
    workdir: a folder that :func:`train_and_evaluate` wrote.
    kind: which checkpoint to read, ``'best'`` or ``'latest'``; ``'best'``
      falls back to ``'latest'`` when there is no best one.
    with_data: load the data (needed to evaluate). Without it, a language
      model is rebuilt from ``tokenizer.json`` alone, enough to sample.

  Returns:
    ``(config, task, state, step)``, the state restored from the checkpoint.

  Raises:
    ConfigError: no run or no checkpoint in ``workdir``.

  Example:
    >>> import tempfile
    >>> from jlstm import train
    >>> config = train.load_config_file('configs/adding.py')
    >>> config.num_train_steps = 2
    >>> config.model.hidden_size = 8
    >>> workdir = tempfile.mkdtemp()
    >>> _ = train.train_and_evaluate(config, workdir, verbose=False)
    >>> config, task, state, step = train.load_run(workdir)
    >>> config.task, step, int(state.step), task.model.hidden_size
    ('adding', 2, 2, 8)
  """
  workdir = os.fspath(workdir)
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise config_lib.ConfigError(
      f'no run in {workdir}: {CONFIG_FILE} not found'
    )
  with open(path, encoding='utf-8') as f:
    config = config_lib.from_json(f.read())
  task = None
  tokenizer_path = os.path.join(workdir, TOKENIZER_FILE)
  if not with_data and os.path.isfile(tokenizer_path):
    with open(tokenizer_path, encoding='utf-8') as f:
      task = _SavedLanguageModel(config, Tokenizer.from_json(f.read()))
  task, _, _, _, state = _prepare(config, task)
  ckpt = Checkpointer(os.path.join(workdir, 'checkpoints'))
  try:
    if kind == 'best' and ckpt.step('best') is None:
      kind = 'latest'
    if ckpt.step(kind) is None:
      raise config_lib.ConfigError(f'no checkpoint in {workdir}')
    try:
      state, _ = ckpt.restore(kind, state)
    except ValueError as e:
      raise config_lib.ConfigError(str(e)) from None
  finally:
    ckpt.close()
  return config, task, state, int(state.step)


def evaluate_workdir(
  workdir: str | os.PathLike, *, kind: str = 'best'
) -> dict[str, Any]:
  """Scores the validation and test splits with a run's checkpoint.

  Writes the scores to ``eval.json`` in the workdir.

  Args:
    workdir: a run's folder.
    kind: ``'best'`` or ``'latest'`` checkpoint.

  Returns:
    ``{'step': s, 'checkpoint': kind, 'val': {...}, 'test': {...} or
    None}``.

  Raises:
    ConfigError: no run or no checkpoint. DataError: the data is gone.

  Example:
    >>> import os, tempfile
    >>> from jlstm import train
    >>> config = train.load_config_file('configs/adding.py')
    >>> config.num_train_steps = 2
    >>> config.model.hidden_size = 8
    >>> workdir = tempfile.mkdtemp()
    >>> _ = train.train_and_evaluate(config, workdir, verbose=False)
    >>> result = train.evaluate_workdir(workdir)
    >>> result['step'], result['checkpoint'], sorted(result['test'])
    (2, 'best', ['baseline_mse', 'loss', 'mse'])
    >>> os.path.isfile(os.path.join(workdir, 'eval.json'))
    True
  """
  config, task, state, step = load_run(workdir, kind)
  mesh = sharding.make_mesh()
  eval_step = make_eval_step(task, precision.policy_from_config(config), mesh)
  result: dict[str, Any] = {'step': step, 'checkpoint': kind}
  for split in ('val', 'test'):
    result[split] = _evaluate(task, eval_step, state.params, split, mesh)
  _write_json(os.path.join(os.fspath(workdir), EVAL_FILE), result)
  return result


def sample_workdir(
  workdir: str | os.PathLike,
  prompt: str,
  length: int,
  *,
  temperature: float = 1.0,
  seed: int = 0,
  kind: str = 'best',
) -> str:
  """Generates text from a language-model run's checkpoint.

  Args:
    workdir: a language-model run's folder.
    prompt: the text to continue.
    length: tokens to generate.
    temperature: softmax temperature; 0 picks the most likely token.
    seed: seeds the draws.
    kind: ``'best'`` or ``'latest'`` checkpoint.

  Returns:
    The prompt and its continuation.

  Raises:
    ConfigError: not a language-model run, or no checkpoint.

  Example:
    >>> import pathlib, tempfile
    >>> from jlstm import train
    >>> path = pathlib.Path(tempfile.mkdtemp()) / 'text.txt'
    >>> _ = path.write_text('hello world\\n' * 50)
    >>> config = train.load_config_file('configs/charlm.py')
    >>> config.data.path = str(path)
    >>> config.batch_size = 4
    >>> config.seq_len = 10
    >>> config.num_train_steps = 2
    >>> config.model.hidden_size = 8
    >>> config.sample.length = 10
    >>> workdir = tempfile.mkdtemp()
    >>> _ = train.train_and_evaluate(config, workdir, verbose=False)
    >>> text = train.sample_workdir(workdir, 'hello', 10, temperature=0)
    >>> text[:5], len(text), set(text) <= set('helo wrd\\n')
    ('hello', 15, True)
  """
  config, task, state, _ = load_run(workdir, kind, with_data=False)
  if task.tokenizer is None:
    raise config_lib.ConfigError(
      f'the run in {os.fspath(workdir)} is a {config.task} task, not a '
      'language model; only language models sample text'
    )
  return sample_text(
    task.model,
    state.params,
    task.tokenizer,
    prompt,
    length,
    temperature=temperature,
    seed=seed,
  )
