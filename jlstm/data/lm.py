"""Language-model batches: parallel token streams for truncated BPTT.

A corpus of N token ids is cut into B contiguous streams, one per batch row,
and each stream is read T tokens at a time. Consecutive batches continue
every stream where the last one stopped, so an LSTM state carried from one
batch to the next has seen the whole text before the current chunk
(truncated backpropagation through time, Williams and Peng 1990)::

  ids:      a b c d e f g h i j k l m n o p q ...
  stream 0: a b c d e f g h        (inputs; targets are shifted by one)
  stream 1:                 i j k l m n o p
  batch 0 = the first T columns of every stream, batch 1 the next T, ...

Batches are dicts of NumPy arrays, time-major: ``inputs`` and ``targets``
[T, B] int32, ``reset`` [B] bool (True where the carried state must start
from zero, at the start of an epoch), and for evaluation ``weights`` [T, B]
float32 (0 on padding).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from jlstm.data.text import DataError

Batch = dict[str, np.ndarray]


def _epoch_offset(seed: int, epoch: int, seq_len: int) -> int:
  """Where epoch ``epoch`` starts reading: 0 first, then a seeded shift."""
  if epoch == 0:
    return 0
  return int(np.random.default_rng([seed, epoch]).integers(seq_len))


class TokenStream:
  """Endless training batches of ``batch_size`` streams, ``seq_len`` steps.

  Each epoch starts the streams at a new offset in [0, ``seq_len``), drawn
  from ``(seed, epoch)``, so chunk boundaries move from epoch to epoch;
  every epoch has the same number of batches. The position in the data is
  :meth:`get_state`, a small dict of ints that a checkpoint stores; a stream
  given the same state with :meth:`set_state` yields the same batches.

  Args:
    ids: [N] int token ids.
    batch_size: B, the number of parallel streams.
    seq_len: T, the number of steps per batch.
    seed: seeds the epoch offsets.

  Raises:
    DataError: the corpus is too short for even one batch.

  Example:
    >>> import numpy as np
    >>> from jlstm import data
    >>> stream = data.TokenStream(np.arange(100), batch_size=2, seq_len=5)
    >>> batch = next(stream)
    >>> batch['inputs'][:, 0], batch['targets'][:, 0]
    (array([0, 1, 2, 3, 4], dtype=int32), array([1, 2, 3, 4, 5], dtype=int32))
    >>> stream.get_state()
    {'epoch': 0, 'index': 1}
  """

  def __init__(
    self, ids: np.ndarray, batch_size: int, seq_len: int, *, seed: int = 0
  ):
    self.ids = np.asarray(ids, np.int32)
    self.batch_size = batch_size
    self.seq_len = seq_len
    self.seed = seed
    # Reserve seq_len tokens for the largest offset, so every epoch has the
    # same number of batches.
    self.stream_len = (len(self.ids) - seq_len) // batch_size
    self.steps_per_epoch = self.stream_len // seq_len
    if self.steps_per_epoch < 1:
      raise DataError(
        f'the training text has {len(self.ids)} tokens, too few for one '
        f'batch of batch_size={batch_size} streams of seq_len={seq_len} '
        f'(needs at least {batch_size * seq_len + seq_len} tokens)'
      )
    self.epoch = 0
    self.index = 0
    self._streams = None

  def get_state(self) -> dict[str, int]:
    """The position of the next batch: ``{'epoch': e, 'index': i}``."""
    return {'epoch': self.epoch, 'index': self.index}

  def set_state(self, state: dict[str, Any]) -> None:
    """Moves to a position that :meth:`get_state` returned."""
    epoch, index = int(state['epoch']), int(state['index'])
    if epoch < 0 or not 0 <= index < self.steps_per_epoch:
      raise DataError(
        f'stream position {state} is outside this corpus (epoch >= 0, '
        f'0 <= index < {self.steps_per_epoch})'
      )
    self.epoch, self.index = epoch, index
    self._streams = None

  def _epoch_streams(self) -> np.ndarray:
    """[B, L + 1] ids of this epoch's streams."""
    offset = _epoch_offset(self.seed, self.epoch, self.seq_len)
    span = self.batch_size * self.stream_len
    rows = self.ids[offset : offset + span + 1]
    starts = np.arange(self.batch_size) * self.stream_len
    # One extra id per stream for the target of its last step.
    return rows[starts[:, None] + np.arange(self.stream_len + 1)]

  def __iter__(self) -> Iterator[Batch]:
    return self

  def __next__(self) -> Batch:
    if self._streams is None:
      self._streams = self._epoch_streams()
    t0 = self.index * self.seq_len
    chunk = self._streams[:, t0 : t0 + self.seq_len + 1]
    batch = {
      'inputs': np.ascontiguousarray(chunk[:, :-1].T),
      'targets': np.ascontiguousarray(chunk[:, 1:].T),
      'reset': np.full((self.batch_size,), self.index == 0),
    }
    self.index += 1
    if self.index == self.steps_per_epoch:
      self.epoch, self.index, self._streams = self.epoch + 1, 0, None
    return batch


def eval_batches(ids: np.ndarray, batch_size: int, seq_len: int) -> list[Batch]:
  """Batches that score every token of ``ids`` once, in order.

  The N - 1 predictions are cut into ``batch_size`` contiguous streams of
  equal length (the last one padded); a carried state runs through each
  stream from its start. ``weights`` is 1 on real targets, 0 on padding, so
  the weighted mean loss is the loss of the whole text.

  Args:
    ids: [N] int token ids, N >= 2.
    batch_size: B.
    seq_len: T.

  Returns:
    A list of batches with ``inputs``, ``targets`` [T, B] int32, ``weights``
    [T, B] float32 and ``reset`` [B] bool.

  Raises:
    DataError: fewer than 2 tokens.

  Example:
    >>> import numpy as np
    >>> from jlstm import data
    >>> batches = data.eval_batches(np.arange(10), batch_size=2, seq_len=3)
    >>> len(batches), sum(b['weights'].sum() for b in batches)
    (2, np.float32(9.0))
  """
  ids = np.asarray(ids, np.int32)
  if len(ids) < 2:
    raise DataError(
      f'an evaluation split needs at least 2 tokens; got {len(ids)}'
    )
  targets = len(ids) - 1
  stream_len = -(-targets // batch_size)
  steps = -(-stream_len // seq_len)
  padded = steps * seq_len
  inputs = np.zeros((batch_size, padded), np.int32)
  outputs = np.zeros((batch_size, padded), np.int32)
  weights = np.zeros((batch_size, padded), np.float32)
  for row in range(batch_size):
    start = row * stream_len
    stop = min(start + stream_len, targets)
    if stop <= start:
      continue
    n = stop - start
    inputs[row, :n] = ids[start:stop]
    outputs[row, :n] = ids[start + 1 : stop + 1]
    weights[row, :n] = 1.0

  batches = []
  for step in range(steps):
    cols = slice(step * seq_len, (step + 1) * seq_len)
    batches.append(
      {
        'inputs': np.ascontiguousarray(inputs[:, cols].T),
        'targets': np.ascontiguousarray(outputs[:, cols].T),
        'weights': np.ascontiguousarray(weights[:, cols].T),
        'reset': np.full((batch_size,), step == 0),
      }
    )
  return batches
