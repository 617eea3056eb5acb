"""Synthetic long-memory tasks of the LSTM literature, as NumPy batches.

* The adding problem (Hochreiter and Schmidhuber 1997; in the form of Le et
  al. 2015): a sequence of T pairs (value, marker) with values drawn from
  U(0, 1) and exactly two markers, one in each half; the target is the sum
  of the two marked values. Always predicting 1 scores a mean squared error
  of Var(u1 + u2) = 1/6.
* The copy-memory task (Arjovsky et al. 2016): ``copy_length`` symbols from
  an alphabet of ``num_symbols``, then T - 1 blanks, a delimiter and
  ``copy_length`` more blanks; the model must output blanks until the
  delimiter and then the symbols it saw first. Outputting blanks and then
  random symbols scores a cross-entropy of ``copy_length * log(num_symbols)
  / (T + 2 * copy_length)`` per step, and recalls 1 / ``num_symbols`` of
  the symbols.

Every batch is drawn from its own generator seeded by ``(seed, split,
index)``, so a stream's position is one int and any batch can be rebuilt.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import numpy as np

from jlstm.data.text import DataError

Batch = dict[str, np.ndarray]

#: Generator seeds per split, so train, validation and test never overlap.
SPLITS = {'train': 0, 'val': 1, 'test': 2}

#: The copy task's blank and delimiter symbols; data symbols are 1..K.
BLANK = 0


def adding_batch(
  rng: np.random.Generator, batch_size: int, seq_len: int
) -> Batch:
  """Draws one batch of the adding problem.

  Args:
    rng: the NumPy generator to draw from.
    batch_size: B.
    seq_len: T >= 2.

  Returns:
    ``inputs`` [T, B, 2] float32 (value, marker) and ``targets`` [B]
    float32, the sum of the two marked values.

  Example:
    >>> import numpy as np
    >>> from jlstm import data
    >>> b = data.adding_batch(np.random.default_rng(0), 4, 10)
    >>> b['inputs'].shape, b['inputs'][:, :, 1].sum(axis=0)
    ((10, 4, 2), array([2., 2., 2., 2.], dtype=float32))
  """
  if seq_len < 2:
    raise DataError(f'seq_len must be at least 2 for adding; got {seq_len}')
  values = rng.uniform(size=(seq_len, batch_size)).astype(np.float32)
  half = seq_len // 2
  first = rng.integers(0, half, size=batch_size)
  second = rng.integers(half, seq_len, size=batch_size)
  markers = np.zeros((seq_len, batch_size), np.float32)
  rows = np.arange(batch_size)
  markers[first, rows] = 1.0
  markers[second, rows] = 1.0
  return {
    'inputs': np.stack([values, markers], axis=-1),
    'targets': values[first, rows] + values[second, rows],
  }


def copy_batch(
  rng: np.random.Generator,
  batch_size: int,
  seq_len: int,
  *,
  num_symbols: int = 8,
  copy_length: int = 10,
) -> Batch:
  """Draws one batch of the copy-memory task.

  Symbols: 0 blank, 1..K data, K + 1 delimiter (K = ``num_symbols``), so
  inputs and targets take K + 2 values.

  Args:
    rng: the NumPy generator to draw from.
    batch_size: B.
    seq_len: the delay T between the end of the symbols and the delimiter
      plus one, T >= 1; sequences have ``T + 2 * copy_length`` steps.
    num_symbols: K.
    copy_length: how many symbols to remember.

  Returns:
    ``inputs`` and ``targets`` [T + 2 * copy_length, B] int32.

  Example:
    >>> import numpy as np
    >>> from jlstm import data
    >>> b = data.copy_batch(np.random.default_rng(0), 1, 3, copy_length=2)
    >>> b['inputs'][:, 0]
    array([7, 6, 0, 0, 9, 0, 0], dtype=int32)
    >>> b['targets'][:, 0]
    array([0, 0, 0, 0, 0, 7, 6], dtype=int32)
  """
  if seq_len < 1:
    raise DataError(f'seq_len must be at least 1 for copy; got {seq_len}')
  total = seq_len + 2 * copy_length
  symbols = rng.integers(1, num_symbols + 1, size=(copy_length, batch_size))
  inputs = np.full((total, batch_size), BLANK, np.int32)
  targets = np.full((total, batch_size), BLANK, np.int32)
  inputs[:copy_length] = symbols
  inputs[seq_len + copy_length - 1] = num_symbols + 1
  targets[-copy_length:] = symbols
  return {'inputs': inputs, 'targets': targets}


def adding_baseline() -> dict[str, float]:
  """The adding problem's trivial baseline: always predict 1.

  Example:
    >>> import numpy as np
    >>> from jlstm import data
    >>> round(data.adding_baseline()['mse'], 4)
    0.1667
    >>> b = data.adding_batch(np.random.default_rng(0), 10_000, 10)
    >>> round(float(np.mean((b['targets'] - 1) ** 2)), 2)
    0.17
  """
  return {'mse': 1.0 / 6.0}


def copy_baseline(
  seq_len: int, *, num_symbols: int = 8, copy_length: int = 10
) -> dict[str, float]:
  """The copy task's trivial baseline: blanks, then uniform guesses.

  Example:
    >>> from jlstm import data
    >>> b = data.copy_baseline(10, num_symbols=8, copy_length=10)
    >>> round(b['loss'], 4), b['accuracy']
    (0.6931, 0.125)
  """
  total = seq_len + 2 * copy_length
  return {
    'loss': copy_length * math.log(num_symbols) / total,
    'accuracy': 1.0 / num_symbols,
  }


class SyntheticStream:
  """Endless batches from a batch function, deterministic per index.

  Batch ``k`` of split ``s`` comes from ``np.random.default_rng([seed,
  SPLITS[s], k])``, so :meth:`get_state` is just the next index.

  Args:
    make_batch: ``(rng, batch_size) -> batch``.
    batch_size: B.
    seed: the run's seed.
    split: ``'train'``, ``'val'`` or ``'test'``.
    steps_per_epoch: how many batches count as one epoch (for schedules
      that decay per epoch).

  Example:
    >>> import functools
    >>> from jlstm import data
    >>> make = functools.partial(data.adding_batch, seq_len=10)
    >>> stream = data.SyntheticStream(make, 4, seed=0)
    >>> next(stream)['inputs'].shape, stream.get_state()
    ((10, 4, 2), {'index': 1})
  """

  def __init__(
    self,
    make_batch: Callable[[np.random.Generator, int], Batch],
    batch_size: int,
    *,
    seed: int = 0,
    split: str = 'train',
    steps_per_epoch: int = 1000,
  ):
    if split not in SPLITS:
      raise DataError(f'split must be one of {tuple(SPLITS)}; got {split!r}')
    self.make_batch = make_batch
    self.batch_size = batch_size
    self.seed = seed
    self.split = split
    self.steps_per_epoch = steps_per_epoch
    self.index = 0

  def batch(self, index: int) -> Batch:
    """Returns batch ``index`` without moving the stream."""
    rng = np.random.default_rng([self.seed, SPLITS[self.split], index])
    return self.make_batch(rng, self.batch_size)

  def get_state(self) -> dict[str, int]:
    """The position of the next batch: ``{'index': k}``."""
    return {'index': self.index}

  def set_state(self, state: dict[str, Any]) -> None:
    """Moves to a position that :meth:`get_state` returned."""
    self.index = int(state['index'])

  def __iter__(self) -> Iterator[Batch]:
    return self

  def __next__(self) -> Batch:
    batch = self.batch(self.index)
    self.index += 1
    return batch
