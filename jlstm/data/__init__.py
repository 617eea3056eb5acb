"""Corpora and synthetic tasks as NumPy batch iterators.

Every iterator yields dicts of time-major NumPy arrays and reports its
position with ``get_state()`` so a checkpoint can resume it exactly.
"""

from jlstm.data.lm import TokenStream
from jlstm.data.lm import eval_batches
from jlstm.data.synthetic import SPLITS
from jlstm.data.synthetic import SyntheticStream
from jlstm.data.synthetic import adding_baseline
from jlstm.data.synthetic import adding_batch
from jlstm.data.synthetic import copy_baseline
from jlstm.data.synthetic import copy_batch
from jlstm.data.text import EOS
from jlstm.data.text import TOKENIZERS
from jlstm.data.text import UNK
from jlstm.data.text import DataError
from jlstm.data.text import Tokenizer
from jlstm.data.text import builtin_text
from jlstm.data.text import read_text
from jlstm.data.text import split_text

__all__ = [
  'EOS',
  'SPLITS',
  'TOKENIZERS',
  'UNK',
  'DataError',
  'SyntheticStream',
  'TokenStream',
  'Tokenizer',
  'adding_baseline',
  'adding_batch',
  'builtin_text',
  'copy_baseline',
  'copy_batch',
  'eval_batches',
  'read_text',
  'split_text',
]
