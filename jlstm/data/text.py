"""Text corpora and tokenizers: characters or whitespace words to int ids.

The built-in corpus is the Python reference documentation that every
CPython installation carries in ``pydoc_data.topics`` (about 465,000
characters of English prose and code), so a language model trains with no
download.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

#: The token every out-of-vocabulary character or word maps to.
UNK = '<unk>'
#: The word tokenizer's end-of-line token.
EOS = '<eos>'

TOKENIZERS = ('char', 'word')


class DataError(ValueError):
  """A data file or data option that cannot be used, with the reason."""


def builtin_text() -> str:
  """Returns the text of ``pydoc_data.topics``, topics in name order.

  Returns:
    One string, the concatenation of every topic's text.

  Example:
    >>> from jlstm import data
    >>> len(data.builtin_text()) > 100_000
    True
  """
  from pydoc_data import topics

  return ''.join(topics.topics[name] for name in sorted(topics.topics))


def read_text(path: str | os.PathLike) -> str:
  """Reads a UTF-8 text file, refusing missing and empty files.

  Args:
    path: the file.

  Returns:
    The file's text.

  Raises:
    DataError: the file is missing, unreadable, not UTF-8 or empty.

  Example:
    >>> import pathlib, tempfile
    >>> from jlstm import data
    >>> p = pathlib.Path(tempfile.mkdtemp()) / 'a.txt'
    >>> _ = p.write_text('hello')
    >>> data.read_text(p)
    'hello'
  """
  try:
    with open(path, encoding='utf-8') as f:
      text = f.read()
  except FileNotFoundError:
    raise DataError(f'data file not found: {os.fspath(path)}') from None
  except IsADirectoryError:
    raise DataError(
      f'data file is a directory, not a file: {os.fspath(path)}'
    ) from None
  except UnicodeDecodeError as e:
    raise DataError(
      f'data file is not UTF-8 text: {os.fspath(path)} ({e.reason} at byte '
      f'{e.start})'
    ) from None
  except OSError as e:
    raise DataError(
      f'cannot read data file {os.fspath(path)}: {e.strerror}'
    ) from None
  if not text.strip():
    raise DataError(f'data file is empty: {os.fspath(path)}')
  return text


def split_text(
  text: str, val_fraction: float, test_fraction: float = 0.0
) -> tuple[str, str, str]:
  """Cuts a text into contiguous train, validation and test parts.

  The validation part follows the training part and the test part comes
  last, so no sentence straddles two splits except at the cut points.

  Args:
    text: the corpus.
    val_fraction: fraction of characters for validation, in [0, 1).
    test_fraction: fraction of characters for test, in [0, 1).

  Returns:
    ``(train, val, test)``; ``val`` or ``test`` is empty when its fraction
    is 0.

  Raises:
    DataError: fractions outside [0, 1) or leaving no training text.

  Example:
    >>> from jlstm import data
    >>> data.split_text('abcdefghij', 0.2, 0.1)
    ('abcdefg', 'hi', 'j')
  """
  for name, value in (
    ('val_fraction', val_fraction),
    ('test_fraction', test_fraction),
  ):
    if not 0.0 <= value < 1.0:
      raise DataError(f'data.{name} must lie in [0, 1); got {value}')
  if val_fraction + test_fraction >= 1.0:
    raise DataError(
      'data.val_fraction + data.test_fraction must be below 1; got '
      f'{val_fraction} + {test_fraction}'
    )
  n = len(text)
  n_test = round(n * test_fraction)
  n_val = round(n * val_fraction)
  n_train = n - n_val - n_test
  return (
    text[:n_train],
    text[n_train : n_train + n_val],
    text[n_train + n_val :],
  )


def _word_tokens(text: str) -> list[str]:
  """Whitespace words, with :data:`EOS` at every line end."""
  tokens = []
  for line in text.splitlines():
    tokens.extend(line.split())
    tokens.append(EOS)
  return tokens


class Tokenizer:
  """Maps text to int ids and back, over a fixed vocabulary.

  Id 0 is always :data:`UNK`. Build one from a training text with
  :meth:`fit`; save and load it as JSON with :meth:`to_json` and
  :meth:`from_json`.

  Attributes:
    kind: ``'char'`` (every character a token) or ``'word'`` (whitespace
      words, line ends as :data:`EOS`).
    tokens: the vocabulary, ``tokens[id]`` is the token's text.

  Example:
    >>> from jlstm import data
    >>> tok = data.Tokenizer.fit('char', 'hello')
    >>> tok, tok.encode('hole')
    (Tokenizer(kind='char', vocab_size=5), array([3, 4, 1, 2], dtype=int32))
    >>> tok.decode(tok.encode('hole'))
    'hole'
    >>> data.Tokenizer.from_json(tok.to_json()) == tok
    True
  """

  def __init__(self, kind: str, tokens: Iterable[str]):
    if kind not in TOKENIZERS:
      raise DataError(
        f'data.tokenizer must be one of {TOKENIZERS}; got {kind!r}'
      )
    self.kind = kind
    self.tokens = list(tokens)
    if not self.tokens or self.tokens[0] != UNK:
      raise DataError(f'the vocabulary must start with {UNK!r}')
    self._ids = {token: i for i, token in enumerate(self.tokens)}

  @classmethod
  def fit(
    cls, kind: str, text: str, vocab_size: int | None = None
  ) -> Tokenizer:
    """Builds the vocabulary of ``text``: its most frequent tokens.

    Ties in frequency are broken by the token's text, so the vocabulary
    depends only on ``text`` and ``vocab_size``.

    Args:
      kind: ``'char'`` or ``'word'``.
      text: the training text.
      vocab_size: the vocabulary's size including :data:`UNK`; the
        ``vocab_size - 1`` most frequent tokens are kept. None keeps all.

    Returns:
      A :class:`Tokenizer`.

    Raises:
      DataError: an unknown kind or a vocabulary size below 2.

    Example:
      >>> from jlstm import data
      >>> tok = data.Tokenizer.fit('word', 'a b a\\nc a', vocab_size=3)
      >>> tok.tokens
      ['<unk>', 'a', '<eos>']
    """
    if kind not in TOKENIZERS:
      raise DataError(
        f'data.tokenizer must be one of {TOKENIZERS}; got {kind!r}'
      )
    if vocab_size is not None and vocab_size < 2:
      raise DataError(
        f'data.vocab_size must be at least 2 (one token and {UNK}); got '
        f'{vocab_size}'
      )
    units = list(text) if kind == 'char' else _word_tokens(text)
    counts = collections.Counter(units)
    counts.pop(UNK, None)
    ranked = sorted(counts, key=lambda token: (-counts[token], token))
    if vocab_size is not None:
      ranked = ranked[: vocab_size - 1]
    return cls(kind, [UNK, *ranked])

  @property
  def vocab_size(self) -> int:
    """The number of ids, :data:`UNK` included."""
    return len(self.tokens)

  def encode(self, text: str) -> np.ndarray:
    """Returns the int32 ids of ``text``; unknown tokens map to 0.

    Example:
      >>> from jlstm import data
      >>> data.Tokenizer('char', ['<unk>', 'a', 'b']).encode('abz')
      array([1, 2, 0], dtype=int32)
    """
    units = self._units(text)
    get = self._ids.get
    return np.fromiter((get(u, 0) for u in units), np.int32, len(units))

  def unknown(self, text: str) -> list[str]:
    """The distinct tokens of ``text`` outside the vocabulary, in order.

    :meth:`encode` reads each of them as :data:`UNK`.

    Example:
      >>> from jlstm import data
      >>> data.Tokenizer('char', ['<unk>', 'a', 'b']).unknown('abzaz!')
      ['z', '!']
    """
    return list(
      dict.fromkeys(u for u in self._units(text) if u not in self._ids)
    )

  def _units(self, text: str) -> str | list[str]:
    """``text`` as the tokenizer's units: characters or words."""
    return text if self.kind == 'char' else _word_tokens(text)

  def decode(self, ids: Iterable[int]) -> str:
    """Returns the text of ``ids``; words are joined by spaces.

    Example:
      >>> from jlstm import data
      >>> tok = data.Tokenizer('word', ['<unk>', 'hi', '<eos>'])
      >>> tok.decode([1, 1, 2, 1])
      'hi hi\\nhi'
    """
    tokens = [self.tokens[int(i)] for i in ids]
    if self.kind == 'char':
      return ''.join(tokens)
    text = ''
    for token in tokens:
      if token == EOS:
        text += '\n'
      else:
        text += token if not text or text.endswith('\n') else ' ' + token
    return text

  def to_json(self) -> str:
    """Serialises the tokenizer (kind and vocabulary) as JSON."""
    return json.dumps(
      {'kind': self.kind, 'tokens': self.tokens}, ensure_ascii=False
    )

  @classmethod
  def from_json(cls, text: str) -> Tokenizer:
    """Rebuilds a tokenizer from :meth:`to_json`'s output."""
    fields: dict[str, Any] = json.loads(text)
    return cls(fields['kind'], fields['tokens'])

  def __eq__(self, other: object) -> bool:
    return (
      isinstance(other, Tokenizer)
      and self.kind == other.kind
      and self.tokens == other.tokens
    )

  def __repr__(self) -> str:
    return f'Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})'
