"""Tasks: what a config trains, bound together from data, model and loss.

A task owns the training stream, the evaluation batches of each split, the
model, and the loss. Its loss returns, besides the scalar to minimise,
*sums* (``loss_sum``, ``count``, ...) that add up exactly over batches and
devices; :meth:`summarize` turns summed statistics into the metrics a run
reports.

* ``'lm'``: a language model over characters or words, trained with
  truncated backprop through time: the LSTM state is carried from batch to
  batch of the token streams.
* ``'adding'``: the adding problem, scored by mean squared error.
* ``'copy'``: the copy-memory task, scored by cross-entropy and by the
  accuracy of the recalled symbols.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

import jlstm
from jlstm import data
from jlstm import models
from jlstm.train.config import ConfigError
from jlstm.train.precision import param_dtype

Array = jax.Array
Stats = dict[str, Array]

LN2 = math.log(2.0)


#: Keys of the model group that go to the SequenceModel field of that name.
_MODEL_OPTIONS = (
  'bidirectional',
  'proj_size',
  'peepholes',
  'layer_norm',
  'cell_clip',
  'proj_clip',
  'coupled',
  'input_dropout',
  'recurrent_dropout',
  'zoneout_cell',
  'zoneout_hidden',
  'remat',
)


def build_model(
  config: ml_collections.ConfigDict, vocab_size: int | None = None
) -> models.SequenceModel:
  """The model a config describes.

  Args:
    config: the run's config.
    vocab_size: V, for language models.

  Returns:
    A :class:`jlstm.models.SequenceModel`.

  Raises:
    ConfigError: model keys that make no model (a bidirectional language
      model, a rate outside [0, 1), an unknown init scheme, ...).

  Example:
    >>> from jlstm import train
    >>> from jlstm.train import tasks
    >>> config = train.load_config_file('configs/charlm.py')
    >>> model = tasks.build_model(config, vocab_size=104)
    >>> model.hidden_size, model.num_layers, model.embed_size
    (256, 2, 64)
  """
  m = config.model
  if m.get('init', 'uniform') not in jlstm.INIT_SCHEMES:
    raise ConfigError(
      f'config key model.init must be one of {jlstm.INIT_SCHEMES}; got '
      f'{m.init!r}'
    )
  common = dict(
    num_layers=m.num_layers,
    embed_size=int(m.get('embed_size', 0)),
    dropout=float(m.get('dropout', 0.0)),
    init_scheme=m.get('init', 'uniform'),
    init_scale=m.get('init_scale', None),
    forget_bias=m.get('forget_bias', None),
    unroll=int(m.get('unroll', 1)),
    dtype=param_dtype(config.dtype),
    **{key: m[key] for key in _MODEL_OPTIONS if key in m},
  )
  try:
    if config.task == 'lm':
      return models.language_model(vocab_size, m.hidden_size, **common)
    if config.task == 'adding':
      return models.regression_model(2, m.hidden_size, **common)
    if config.task == 'copy':
      return models.tagging_model(
        config.data.num_symbols + 2, m.hidden_size, **common
      )
  except ValueError as e:
    raise ConfigError(f'config group model: {e}') from None
  raise ConfigError(f'unknown task {config.task!r}')


def _reset(carry: Any, reset: Array) -> Any:
  """Zeroes the carried state of the rows where ``reset`` [B] is True."""
  return jax.tree.map(
    lambda s: jnp.where(reset[:, None], jnp.zeros((), s.dtype), s), carry
  )


def load_lm_text(config: ml_collections.ConfigDict) -> dict[str, str]:
  """The train, val and test text of a language-model config.

  ``data.train_path`` (with ``data.val_path`` and an optional
  ``data.test_path``) names pre-split files; otherwise ``data.path`` (or,
  when empty, the built-in ``pydoc_data`` text) is cut by
  ``data.val_fraction`` and ``data.test_fraction``.

  Returns:
    ``{'train': ..., 'val': ..., 'test': ...}``; ``test`` may be empty.

  Raises:
    DataError: a missing, empty or unreadable file, or an empty split.
  """
  d = config.data
  if d.get('train_path', ''):
    if not d.get('val_path', ''):
      raise data.DataError(
        'data.train_path needs data.val_path (or use data.path with '
        'data.val_fraction)'
      )
    texts = {
      'train': data.read_text(d.train_path),
      'val': data.read_text(d.val_path),
      'test': data.read_text(d.test_path) if d.get('test_path', '') else '',
    }
  else:
    text = data.read_text(d.path) if d.get('path', '') else data.builtin_text()
    train, val, test = data.split_text(
      text, d.val_fraction, d.get('test_fraction', 0.0)
    )
    texts = {'train': train, 'val': val, 'test': test}
  if not texts['val'].strip():
    raise data.DataError(
      'the validation split is empty; raise data.val_fraction or set '
      'data.val_path'
    )
  return texts


class LanguageModelTask:
  """Next-token prediction over a text, with the LSTM state carried."""

  carries_state = True

  def __init__(self, config: ml_collections.ConfigDict):
    texts = load_lm_text(config)
    vocab_size = config.data.get('vocab_size', 0) or None
    self.tokenizer = data.Tokenizer.fit(
      config.data.tokenizer, texts['train'], vocab_size
    )
    self.ids = {
      split: self.tokenizer.encode(text) for split, text in texts.items()
    }
    self.unit = 'bpc' if self.tokenizer.kind == 'char' else 'bits_per_token'
    self.model = build_model(config, self.tokenizer.vocab_size)
    self.batch_size = config.batch_size
    self.seq_len = config.seq_len
    try:
      self.train_stream = data.TokenStream(
        self.ids['train'], config.batch_size, config.seq_len, seed=config.seed
      )
    except data.DataError as e:
      d = config.data
      source = d.get('train_path', '') or d.get('path', '') or 'built-in text'
      raise data.DataError(f'{e}; data: {source}') from None
    self.tokens_per_batch = config.batch_size * config.seq_len
    self.baseline = None
    self._eval = {}

  @property
  def info(self) -> dict[str, Any]:
    """Facts for the start-up summary."""
    return {
      'tokenizer': self.tokenizer.kind,
      'vocab_size': self.tokenizer.vocab_size,
      **{f'{split}_tokens': len(ids) for split, ids in self.ids.items()},
      'steps_per_epoch': self.train_stream.steps_per_epoch,
    }

  def eval_batches(self, split: str) -> list[data.lm.Batch] | None:
    """All batches of ``split``, or None when the split is empty."""
    if len(self.ids.get(split, ())) < 2:
      return None
    if split not in self._eval:
      self._eval[split] = data.eval_batches(
        self.ids[split], self.batch_size, self.seq_len
      )
    return self._eval[split]

  def init_carry(self, params, batch_size: int):
    """The zero LSTM state, [B, H] per layer."""
    return self.model.zero_state(params, batch_size)

  def loss(self, params, batch, carry, key, training: bool):
    """Mean next-token cross-entropy (nats), summed statistics, new carry."""
    carry = _reset(carry, batch['reset'])
    logits, carry = self.model.apply(
      params, batch['inputs'], carry, key=key, training=training
    )
    targets = batch['targets']
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    weights = batch.get('weights')
    if weights is None:
      weights = jnp.ones(losses.shape, jnp.float32)
    loss_sum = jnp.sum(losses * weights)
    count = jnp.sum(weights)
    correct = jnp.sum((jnp.argmax(logits, -1) == targets) * weights)
    stats = {'loss_sum': loss_sum, 'count': count, 'correct': correct}
    return loss_sum / jnp.maximum(count, 1.0), (stats, carry)

  def summarize(self, stats: dict[str, float]) -> dict[str, float]:
    """Loss (nats), bits per char or token, perplexity, accuracy."""
    loss = stats['loss_sum'] / max(stats['count'], 1.0)
    return {
      'loss': loss,
      self.unit: loss / LN2,
      'perplexity': math.exp(min(loss, 700.0)),
      'accuracy': stats['correct'] / max(stats['count'], 1.0),
    }


class _SyntheticTask:
  """Shared parts of the adding and copy tasks."""

  carries_state = False
  tokenizer = None

  def __init__(self, config: ml_collections.ConfigDict, make_batch):
    self.model = build_model(config)
    d = config.data
    stream = functools.partial(
      data.SyntheticStream, make_batch, config.batch_size, seed=config.seed
    )
    self.train_stream = stream(
      split='train', steps_per_epoch=d.get('steps_per_epoch', 1000)
    )
    self._streams = {'val': stream(split='val'), 'test': stream(split='test')}
    self.num_eval_batches = d.get('eval_batches', 10)
    self._eval = {}

  @property
  def info(self) -> dict[str, Any]:
    return {
      'sequence_steps': self.tokens_per_batch // self.train_stream.batch_size,
      'eval_sequences': self.num_eval_batches * self.train_stream.batch_size,
      'baseline': self.baseline,
    }

  def eval_batches(self, split: str):
    """A fixed set of ``data.eval_batches`` batches of ``split``."""
    if split not in self._streams:
      return None
    if split not in self._eval:
      stream = self._streams[split]
      self._eval[split] = [
        stream.batch(i) for i in range(self.num_eval_batches)
      ]
    return self._eval[split]

  def init_carry(self, params, batch_size: int):
    return None


class AddingTask(_SyntheticTask):
  """The adding problem: regress the sum of the two marked values."""

  def __init__(self, config: ml_collections.ConfigDict):
    make = functools.partial(data.adding_batch, seq_len=config.seq_len)
    super().__init__(config, lambda rng, b: make(rng, b))
    self.tokens_per_batch = config.batch_size * config.seq_len
    self.baseline = data.adding_baseline()

  def loss(self, params, batch, carry, key, training: bool):
    """Mean squared error of the last step's output."""
    outputs, _ = self.model.apply(
      params, batch['inputs'], key=key, training=training
    )
    errors = (outputs[-1, :, 0] - batch['targets']) ** 2
    stats = {
      'loss_sum': jnp.sum(errors),
      'count': jnp.asarray(errors.size, jnp.float32),
    }
    return jnp.mean(errors), (stats, carry)

  def summarize(self, stats):
    mse = stats['loss_sum'] / max(stats['count'], 1.0)
    return {'loss': mse, 'mse': mse, 'baseline_mse': self.baseline['mse']}


class CopyTask(_SyntheticTask):
  """The copy-memory task: reproduce the first symbols after a delay."""

  def __init__(self, config: ml_collections.ConfigDict):
    d = config.data
    self.copy_length = d.copy_length
    make = functools.partial(
      data.copy_batch,
      seq_len=config.seq_len,
      num_symbols=d.num_symbols,
      copy_length=d.copy_length,
    )
    super().__init__(config, lambda rng, b: make(rng, b))
    self.tokens_per_batch = config.batch_size * (
      config.seq_len + 2 * d.copy_length
    )
    self.baseline = data.copy_baseline(
      config.seq_len, num_symbols=d.num_symbols, copy_length=d.copy_length
    )

  def loss(self, params, batch, carry, key, training: bool):
    """Mean cross-entropy over every step; recall accuracy in the stats."""
    logits, _ = self.model.apply(
      params, batch['inputs'], key=key, training=training
    )
    targets = batch['targets']
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    recall = slice(-self.copy_length, None)
    hits = jnp.argmax(logits[recall], -1) == targets[recall]
    stats = {
      'loss_sum': jnp.sum(losses),
      'count': jnp.asarray(losses.size, jnp.float32),
      'correct': jnp.sum(hits),
      'recalled': jnp.asarray(hits.size, jnp.float32),
    }
    return jnp.mean(losses), (stats, carry)

  def summarize(self, stats):
    return {
      'loss': stats['loss_sum'] / max(stats['count'], 1.0),
      'accuracy': stats['correct'] / max(stats['recalled'], 1.0),
      'baseline_loss': self.baseline['loss'],
      'baseline_accuracy': self.baseline['accuracy'],
    }


def build_task(config: ml_collections.ConfigDict):
  """The task of ``config.task``, with its data loaded.

  Args:
    config: the run's config.

  Returns:
    A :class:`LanguageModelTask`, :class:`AddingTask` or :class:`CopyTask`.

  Raises:
    ConfigError: an unknown task. DataError: unusable data.

  Example:
    >>> from jlstm import train
    >>> config = train.load_config_file('configs/adding.py')
    >>> task = train.build_task(config)
    >>> next(task.train_stream)['inputs'].shape
    (50, 64, 2)
  """
  tasks = {'lm': LanguageModelTask, 'adding': AddingTask, 'copy': CopyTask}
  if config.task not in tasks:
    raise ConfigError(
      f'config key task must be one of {tuple(tasks)}; got {config.task!r}'
    )
  return tasks[config.task](config)


def sum_stats(stats: list[dict[str, Any]]) -> dict[str, float]:
  """Adds up per-batch statistics fetched from the device."""
  total: dict[str, float] = {}
  for s in stats:
    for name, value in s.items():
      total[name] = total.get(name, 0.0) + float(np.asarray(value))
  return total
