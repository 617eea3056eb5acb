"""Exact weight import and export between jlstm and other LSTM layouts.

Each format has a ``from_X`` that returns jlstm parameters and a ``to_X``
that returns the other layout, such that ``from_X(to_X(p))`` is ``p``.
"""

from jlstm.interop.seed import SEED_GATES
from jlstm.interop.seed import from_seed
from jlstm.interop.seed import to_seed

__all__ = [
  'SEED_GATES',
  'from_seed',
  'to_seed',
]
