"""Tests for jlstm.train: steps, schedules, runs, resume, eval and sampling."""

import collections
import json
import math
import os
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.experimental.compilation_cache import compilation_cache

from jlstm import data
from jlstm import train
from jlstm.train import optim
from jlstm.train import sharding
from jlstm.train import tasks as tasks_lib
from jlstm.train.metrics import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module', autouse=True)
def shared_compile_cache(tmp_path_factory):
  """Lets this module's runs reuse each other's compiled steps.

  Every run builds fresh jitted functions, so without a persistent cache
  each one compiles again; compiling, not training, is most of a tiny
  run's time. The previous settings come back after the module.
  """
  old_dir = jax.config.jax_compilation_cache_dir
  old_min = jax.config.jax_persistent_cache_min_compile_time_secs
  jax.config.update(
    'jax_compilation_cache_dir', str(tmp_path_factory.mktemp('xla_cache'))
  )
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  compilation_cache.reset_cache()
  yield
  jax.config.update('jax_compilation_cache_dir', old_dir)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', old_min)
  compilation_cache.reset_cache()


def _config(name):
  return train.load_config_file(os.path.join(ROOT, 'configs', name))


def _corpus(path):
  """A small text with structure an LSTM learns within a few dozen steps."""
  rng = np.random.default_rng(0)
  words = ['the cat', 'a dog', 'my bird', 'one fish']
  lines = [
    f'{words[i]} sat on {words[j]}.'
    for i, j in rng.integers(0, 4, size=(120, 2))
  ]
  path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
  return str(path)


def tiny_lm_config(tmp_path, **overrides):
  """The charlm config shrunk to a tiny model on a tiny corpus."""
  config = _config('charlm.py')
  config.data.path = _corpus(tmp_path / 'corpus.txt')
  config.data.val_fraction = 0.15
  config.batch_size = 4
  config.seq_len = 8
  config.num_train_steps = 12
  config.log_every = 2
  config.eval_every = 6
  config.checkpoint_every = 4
  config.learning_rate = 3e-2
  config.schedule.warmup_steps = 2
  config.model.hidden_size = 16
  config.model.num_layers = 1
  config.model.embed_size = 8
  config.sample.length = 0
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split('.')
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config


def _built(config):
  task = tasks_lib.build_task(config)
  mesh = sharding.make_mesh()
  schedule = optim.make_schedule(config, task.train_stream.steps_per_epoch)
  optimizer = optim.make_optimizer(config, schedule)
  state = train.create_train_state(
    task, optimizer, config.seed, config.batch_size, mesh
  )
  step = train.make_train_step(task, optimizer, schedule, mesh=mesh)
  return task, mesh, state, step


@pytest.fixture(scope='module')
def stepped(tmp_path_factory):
  """A tiny LM's state before and after one step, and the step after 3."""
  tmp_path = tmp_path_factory.mktemp('step')
  config = tiny_lm_config(tmp_path, **{'schedule.name': 'constant'})
  task, mesh, state, step = _built(config)
  before = jax.device_get(state)
  state, metrics = step(state, train.place_batch(next(task.train_stream), mesh))
  after = jax.device_get(state)
  for _ in range(2):
    batch = train.place_batch(next(task.train_stream), mesh)
    state, _ = step(state, batch)
  return before, after, jax.device_get(metrics), step


def test_train_step_changes_every_parameter(stepped):
  """One step moves every parameter array and the carried state."""
  before, after, metrics, _ = stepped
  paths = jax.tree_util.tree_leaves_with_path(before.params)
  new_leaves = jax.tree.leaves(after.params)
  assert len(paths) == len(new_leaves) >= 6
  for (path, old), new in zip(paths, new_leaves, strict=True):
    assert not np.array_equal(old, new), jax.tree_util.keystr(path)
  for old, new in zip(
    jax.tree.leaves(before.carry), jax.tree.leaves(after.carry), strict=True
  ):
    assert not np.array_equal(old, new)
  assert int(after.step) == 1
  assert math.isfinite(float(metrics['loss']))


@pytest.mark.parametrize(
  'name,overrides',
  [
    (
      'charlm.py',
      {
        'model.num_layers': 2,
        'model.proj_size': 8,
        'model.peepholes': True,
        'model.layer_norm': True,
        'model.cell_clip': 3.0,
        'model.input_dropout': 0.1,
        'model.recurrent_dropout': 0.1,
        'model.zoneout_cell': 0.1,
        'model.zoneout_hidden': 0.05,
        'model.remat': True,
      },
    ),
    ('copy.py', {'model.bidirectional': True, 'model.coupled': True}),
  ],
)
def test_train_step_with_model_variants_changes_every_parameter(
  tmp_path, name, overrides
):
  """The variant keys of the model group reach the model, and one train
  step moves every parameter array of it."""
  if name == 'charlm.py':
    config = tiny_lm_config(tmp_path, **overrides)
  else:
    config = _config(name)
    config.batch_size, config.seq_len = 4, 3
    config.data.copy_length = 2
    config.model.hidden_size = 8
    for key, value in overrides.items():
      config.model[key.split('.')[1]] = value
  task, mesh, state, step = _built(config)
  model = task.model
  for key, value in overrides.items():
    assert getattr(model, key.split('.')[1]) == value, key
  before = jax.device_get(state.params)
  state, metrics = step(state, train.place_batch(next(task.train_stream), mesh))
  after = jax.device_get(state.params)
  paths = jax.tree_util.tree_leaves_with_path(before)
  assert len(paths) == len(jax.tree.leaves(after))
  for (path, old), new in zip(paths, jax.tree.leaves(after), strict=True):
    assert np.all(np.isfinite(new)), jax.tree_util.keystr(path)
    assert not np.array_equal(old, new), jax.tree_util.keystr(path)
  assert math.isfinite(float(metrics['loss']))


def test_train_step_compiles_once(stepped):
  """The donated, jitted step is traced once, then reused by later calls."""
  *_, step = stepped
  assert step._cache_size() == 1


@pytest.fixture(scope='module')
def short_run(tmp_path_factory):
  """A 60-step run on the tiny corpus: (config, workdir, result)."""
  tmp_path = tmp_path_factory.mktemp('short')
  workdir = tmp_path / 'run'
  config = tiny_lm_config(
    tmp_path,
    num_train_steps=60,
    eval_every=20,
    checkpoint_every=30,
    log_every=5,
    **{'sample.length': 20, 'data.test_fraction': 0.1},
  )
  result = train.train_and_evaluate(config, workdir, verbose=False)
  return config, workdir, result


def test_train_short_run_lowers_loss_and_fills_workdir(short_run):
  """A short run learns the tiny corpus and leaves every artifact."""
  config, workdir, result = short_run
  records = read_metrics(workdir / 'metrics.jsonl')
  train_records = [r for r in records if r['split'] == 'train']
  val_records = [r for r in records if r['split'] == 'val']
  assert [r['step'] for r in val_records] == [20, 40, 60]
  # Uniform guessing over the vocabulary scores log2(V) bits per char; the
  # characters' own frequencies, their unigram entropy.
  vocab = json.loads((workdir / 'tokenizer.json').read_text())['tokens']
  assert train_records[0]['bpc'] > 0.8 * math.log2(len(vocab))
  text = pathlib.Path(config.data.path).read_text(encoding='utf-8')
  counts = np.array(list(collections.Counter(text).values()), np.float64)
  unigram = -np.sum(counts / counts.sum() * np.log2(counts / counts.sum()))
  assert val_records[-1]['bpc'] < 0.5 * unigram
  assert result['bpc'] == val_records[-1]['bpc']
  for key in (
    'loss',
    'bpc',
    'perplexity',
    'learning_rate',
    'grad_norm',
    'steps_per_sec',
    'tokens_per_sec',
    'wall_time',
  ):
    assert key in train_records[-1], key
  assert math.isclose(
    val_records[-1]['perplexity'], math.exp(val_records[-1]['loss'])
  )

  saved = json.loads((workdir / 'config.json').read_text())
  assert saved['model']['hidden_size'] == 16
  assert (workdir / 'curves.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  samples = (workdir / 'samples.txt').read_text()
  assert samples.count('=== step') == 3
  assert os.listdir(workdir / 'checkpoints' / 'latest') == ['60']
  best_step = min(val_records, key=lambda r: r['loss'])['step']
  assert os.listdir(workdir / 'checkpoints' / 'best') == [str(best_step)]


def _final_latest(workdir):
  _, _, state, step = train.load_run(workdir, 'latest')
  return jax.device_get(state), step


@pytest.mark.slow
def test_train_resume_equals_uninterrupted_run(tmp_path):
  """Stopped at step 5 and resumed, a run ends bit-identical to one that
  never stopped: parameters, optimizer state, carry, key, val losses."""
  config = tiny_lm_config(tmp_path, **{'model.dropout': 0.2})
  whole, parts = tmp_path / 'whole', tmp_path / 'parts'
  train.train_and_evaluate(config, whole, verbose=False)
  train.train_and_evaluate(config, parts, stop_at_step=5, verbose=False)
  assert os.listdir(parts / 'checkpoints' / 'latest') == ['5']
  train.train_and_evaluate(config, parts, verbose=False)

  want, want_step = _final_latest(whole)
  got, got_step = _final_latest(parts)
  assert want_step == got_step == 12
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
    np.testing.assert_array_equal(a, b)

  def val_losses(workdir):
    return [
      (r['step'], r['loss'])
      for r in read_metrics(workdir / 'metrics.jsonl')
      if r['split'] == 'val'
    ]

  assert val_losses(parts) == val_losses(whole)


def test_schedules_match_formulas():
  """Constant, warmup-cosine and per-epoch step decay, against formulas."""
  config = _config('charlm.py')
  config.learning_rate = 0.1
  config.num_train_steps = 100
  config.schedule.warmup_steps = 10
  config.schedule.end_factor = 0.1

  config.schedule.name = 'warmup_cosine'
  lr = optim.make_schedule(config, steps_per_epoch=7)
  # Step s (0-based) takes the rate of update number s + 1.
  assert float(lr(0)) == pytest.approx(0.01)
  assert float(lr(4)) == pytest.approx(0.05)
  for step in (9, 39, 99):
    progress = (step + 1 - 10) / 90
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    want = 0.01 + (0.1 - 0.01) * cosine
    assert float(lr(step)) == pytest.approx(want, rel=1e-5)

  config.schedule.name = 'constant'
  lr = optim.make_schedule(config, steps_per_epoch=7)
  assert float(lr(4)) == pytest.approx(0.05)
  assert float(lr(50)) == pytest.approx(0.1)
  config.schedule.warmup_steps = 0
  lr = optim.make_schedule(config, steps_per_epoch=7)
  assert float(lr(0)) == pytest.approx(0.1)

  config.schedule.name = 'step'
  config.schedule.decay_after = 2
  config.schedule.decay_factor = 0.5
  lr = optim.make_schedule(config, steps_per_epoch=7)
  # Epochs 0 and 1 (the first decay_after epochs) keep the rate.
  for step, want in ((0, 0.1), (13, 0.1), (14, 0.05), (21, 0.025)):
    assert float(lr(step)) == pytest.approx(want), step


def _one_update(name, grads, params, **opt):
  config = ml_collections.ConfigDict(
    {
      'learning_rate': 0.1,
      'num_train_steps': 10,
      'optimizer': {'name': name, 'grad_clip': 0.0, **opt},
      'schedule': {'name': 'constant', 'warmup_steps': 0},
    }
  )
  schedule = optim.make_schedule(config, 1)
  tx = optim.make_optimizer(config, schedule)
  state = tx.init(params)
  updates, state = tx.update(grads, state, params)
  return updates, state, tx


def test_optimizers_first_updates_match_hand_derivation():
  """sgd: -lr g; momentum: -lr (g, g + m g); adam: -lr g / (|g| + eps);
  adamw adds -lr wd p; clipping rescales to the global norm."""
  params = {'w': jnp.array([1.0, -2.0, 3.0])}
  grads = {'w': jnp.array([0.5, -4.0, 1e-3])}

  updates, _, _ = _one_update('sgd', grads, params)
  np.testing.assert_allclose(updates['w'], -0.1 * grads['w'], rtol=1e-6)

  updates, state, tx = _one_update('momentum', grads, params, momentum=0.9)
  np.testing.assert_allclose(updates['w'], -0.1 * grads['w'], rtol=1e-6)
  updates, _ = tx.update(grads, state, params)
  np.testing.assert_allclose(updates['w'], -0.1 * 1.9 * grads['w'], rtol=1e-6)

  g = np.asarray(grads['w'])
  updates, _, _ = _one_update('adam', grads, params)
  np.testing.assert_allclose(
    updates['w'], -0.1 * g / (np.abs(g) + 1e-8), rtol=1e-5
  )
  updates, _, _ = _one_update('adamw', grads, params, weight_decay=0.01)
  want = -0.1 * (g / (np.abs(g) + 1e-8) + 0.01 * np.asarray(params['w']))
  np.testing.assert_allclose(updates['w'], want, rtol=1e-5)

  updates, _, _ = _one_update('sgd', grads, params, grad_clip=1.0)
  norm = np.linalg.norm(g)
  np.testing.assert_allclose(updates['w'], -0.1 * g / norm, rtol=1e-5)
  assert optax.tree.norm(updates) == pytest.approx(0.1, rel=1e-5)


def test_eval_and_sample_from_workdir(short_run):
  """eval scores val and test with the best checkpoint; greedy sampling is
  deterministic and has the asked length."""
  _, workdir, _ = short_run
  result = train.evaluate_workdir(workdir)
  val_records = [
    r for r in read_metrics(workdir / 'metrics.jsonl') if r['split'] == 'val'
  ]
  best = min(val_records, key=lambda r: r['loss'])
  assert result['step'] == best['step']
  assert result['val']['loss'] == pytest.approx(best['loss'], rel=1e-6)
  assert result['test']['bpc'] > 0
  assert json.loads((workdir / 'eval.json').read_text())['step'] == best['step']

  a = train.sample_workdir(workdir, 'the ', 30, temperature=0.0)
  b = train.sample_workdir(workdir, 'the ', 30, temperature=0.0)
  assert a == b and a.startswith('the ') and len(a) == 34
  c = train.sample_workdir(workdir, 'the ', 30, temperature=1.0, seed=1)
  assert len(c) == 34


def test_word_task_has_seed_shapes():
  """configs/seed.py: 299 most frequent words + unknown = 300 one-hot
  inputs and classes, 256 units, batch 32, 10 steps, seed init."""
  config = _config('seed.py')
  task = tasks_lib.build_task(config)
  model = task.model
  assert task.tokenizer.kind == 'word'
  assert task.tokenizer.vocab_size == 300
  assert task.tokenizer.tokens[0] == data.UNK
  assert model.lstm_input_size == model.output_size == 300
  assert model.hidden_size == 256 and model.embed_size == 0
  assert model.init_scheme == 'seed'
  batch = next(task.train_stream)
  assert batch['inputs'].shape == (10, 32)


@pytest.mark.slow
@pytest.mark.parametrize(
  'name,metric,baseline',
  [
    ('adding.py', 'mse', 1.0 / 6.0),
    ('copy.py', 'accuracy', 1.0 / 8.0),
  ],
)
def test_synthetic_tasks_report_metric_next_to_baseline(
  tmp_path, name, metric, baseline
):
  """Adding and copy runs write their metric and the trivial baseline."""
  config = _config(name)
  config.seq_len = 6
  config.batch_size = 8
  config.num_train_steps = 4
  config.eval_every = 4
  config.log_every = 2
  config.checkpoint_every = 4
  config.model.hidden_size = 8
  config.data.eval_batches = 2
  if 'copy_length' in config.data:
    config.data.copy_length = 3
  workdir = tmp_path / 'run'
  result = train.train_and_evaluate(config, workdir, verbose=False)
  assert metric in result
  assert result[f'baseline_{metric}'] == pytest.approx(baseline)
  records = read_metrics(workdir / 'metrics.jsonl')
  assert any(r['split'] == 'val' and metric in r for r in records)
  assert (workdir / 'curves.png').exists()
  assert not (workdir / 'samples.txt').exists()


def test_config_errors_name_the_key(tmp_path):
  """Unknown keys, wrong types, bad values and bad files raise clearly."""
  config = _config('charlm.py')
  with pytest.raises(train.ConfigError, match='unknown config key: model.hs'):
    train.apply_override(config, 'model.hs', '3')
  with pytest.raises(train.ConfigError, match='expects an int'):
    train.apply_override(config, 'batch_size', 'big')
  with pytest.raises(train.ConfigError, match='expects a float'):
    train.apply_override(config, 'learning_rate', 'fast')
  train.apply_override(config, 'learning_rate', '1')
  assert config.learning_rate == 1.0
  train.apply_override(config, 'model.init_scale', '0.05')
  assert config.model.init_scale == 0.05
  config.optimizer.name = 'adagrad'
  with pytest.raises(train.ConfigError, match='optimizer.name must be one'):
    train.validate(config)

  config = tiny_lm_config(tmp_path, **{'data.path': str(tmp_path / 'no')})
  with pytest.raises(data.DataError, match='not found'):
    train.train_and_evaluate(config, tmp_path / 'run', verbose=False)
  assert not (tmp_path / 'run').exists()
