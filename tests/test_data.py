"""Tests for jlstm.data: corpora, tokenizers, token streams, synthetic tasks."""

import collections
import math

import numpy as np
import pytest

from jlstm import data


def test_builtin_text_is_the_pydoc_topics():
  """The built-in corpus is every pydoc_data topic, in name order."""
  from pydoc_data import topics

  text = data.builtin_text()
  assert len(text) == sum(len(t) for t in topics.topics.values())
  first = min(topics.topics)
  assert text.startswith(topics.topics[first])


def test_read_text_refuses_missing_and_empty_files(tmp_path):
  """Missing, empty and whitespace-only files raise DataError naming them."""
  with pytest.raises(data.DataError, match='not found: .*nope.txt'):
    data.read_text(tmp_path / 'nope.txt')
  empty = tmp_path / 'empty.txt'
  empty.write_text('')
  with pytest.raises(data.DataError, match='empty: .*empty.txt'):
    data.read_text(empty)
  blank = tmp_path / 'blank.txt'
  blank.write_text(' \n\n ')
  with pytest.raises(data.DataError, match='empty'):
    data.read_text(blank)


def test_read_text_refuses_non_utf8(tmp_path):
  """Bytes that are not UTF-8 raise DataError, not UnicodeDecodeError."""
  path = tmp_path / 'latin1.txt'
  path.write_bytes('café'.encode('latin-1'))
  with pytest.raises(data.DataError, match='not UTF-8'):
    data.read_text(path)


def test_split_text_is_contiguous():
  """Train, val and test are consecutive slices with the asked sizes."""
  text = ''.join(chr(65 + i % 26) for i in range(1000))
  train, val, test = data.split_text(text, 0.1, 0.05)
  assert train + val + test == text
  assert (len(train), len(val), len(test)) == (850, 100, 50)
  with pytest.raises(data.DataError, match='val_fraction'):
    data.split_text(text, 1.0)
  with pytest.raises(data.DataError, match='below 1'):
    data.split_text(text, 0.6, 0.5)


def test_tokenizer_char_round_trip_and_unknown():
  """Characters round-trip; unseen ones map to id 0, the unknown token."""
  tok = data.Tokenizer.fit('char', 'hello world')
  assert tok.tokens[0] == data.UNK
  # l (3), o (2), then the rest once each, ordered by text.
  assert tok.tokens[1:] == ['l', 'o', ' ', 'd', 'e', 'h', 'r', 'w']
  ids = tok.encode('hello')
  assert ids.dtype == np.int32
  assert tok.decode(ids) == 'hello'
  assert tok.encode('hz').tolist() == [tok.tokens.index('h'), 0]


def test_tokenizer_word_vocabulary_is_most_frequent():
  """Word vocab: the V - 1 most frequent words, line ends as <eos>."""
  text = 'the cat sat\nthe dog sat\nthe end\n'
  tok = data.Tokenizer.fit('word', text, vocab_size=4)
  words = ['the', 'cat', 'sat', '<eos>', 'the', 'dog', 'sat', '<eos>']
  words += ['the', 'end', '<eos>']
  counts = collections.Counter(words)
  expected = sorted(counts, key=lambda w: (-counts[w], w))[:3]
  assert tok.tokens == [data.UNK, *expected]
  assert expected == ['<eos>', 'the', 'sat']
  ids = tok.encode('the cat sat\n')
  assert ids.tolist() == [2, 0, 3, 1]
  assert tok.decode(ids) == 'the <unk> sat\n'


def test_tokenizer_json_round_trip():
  """A tokenizer saved as JSON loads back equal."""
  tok = data.Tokenizer.fit('word', 'a b c a\nb a', vocab_size=3)
  assert data.Tokenizer.from_json(tok.to_json()) == tok
  with pytest.raises(data.DataError, match='tokenizer must be one of'):
    data.Tokenizer.fit('bpe', 'abc')


def _reference_stream_batches(ids, batch_size, seq_len, seed, num_batches):
  """A plain loop over the layout documented in jlstm.data.lm."""
  stream_len = (len(ids) - seq_len) // batch_size
  steps = stream_len // seq_len
  batches = []
  for k in range(num_batches):
    epoch, index = divmod(k, steps)
    offset = (
      0
      if epoch == 0
      else int(np.random.default_rng([seed, epoch]).integers(seq_len))
    )
    inputs = np.zeros((seq_len, batch_size), np.int64)
    targets = np.zeros((seq_len, batch_size), np.int64)
    for b in range(batch_size):
      for t in range(seq_len):
        pos = offset + b * stream_len + index * seq_len + t
        inputs[t, b] = ids[pos]
        targets[t, b] = ids[pos + 1]
    batches.append((inputs, targets, index == 0))
  return batches


def test_token_stream_matches_reference_layout():
  """Batches continue each stream; epochs restart at a seeded offset."""
  ids = np.arange(103) * 7 % 101
  stream = data.TokenStream(ids, batch_size=3, seq_len=4, seed=5)
  assert stream.steps_per_epoch == (103 - 4) // 3 // 4
  expected = _reference_stream_batches(ids, 3, 4, 5, 20)
  for want_inputs, want_targets, want_reset in expected:
    batch = next(stream)
    np.testing.assert_array_equal(batch['inputs'], want_inputs)
    np.testing.assert_array_equal(batch['targets'], want_targets)
    assert batch['reset'].tolist() == [want_reset] * 3
    assert batch['inputs'].dtype == np.int32


def test_token_stream_state_resumes_exactly():
  """A stream moved to a saved position yields the same batches."""
  ids = np.arange(500)
  a = data.TokenStream(ids, batch_size=4, seq_len=6, seed=1)
  for _ in range(37):
    next(a)
  saved = a.get_state()
  expected = [next(a) for _ in range(30)]
  b = data.TokenStream(ids, batch_size=4, seq_len=6, seed=1)
  b.set_state(saved)
  for want in expected:
    got = next(b)
    for name in want:
      np.testing.assert_array_equal(got[name], want[name])


def test_token_stream_refuses_short_corpus():
  """A corpus too short for one batch raises DataError with the sizes."""
  with pytest.raises(data.DataError, match='too few for one batch'):
    data.TokenStream(np.arange(20), batch_size=4, seq_len=5)


def test_eval_batches_score_every_token_once():
  """Weighted (input, target) pairs are exactly the N - 1 text bigrams."""
  ids = (np.arange(1, 58) ** 2) % 97
  batches = data.eval_batches(ids, batch_size=4, seq_len=5)
  pairs = []
  for batch in batches:
    mask = batch['weights'] > 0
    pairs += list(
      zip(batch['inputs'][mask], batch['targets'][mask], strict=True)
    )
  want = list(zip(ids[:-1], ids[1:], strict=True))
  assert sorted(pairs) == sorted(want)
  assert batches[0]['reset'].all()
  assert not any(b['reset'].any() for b in batches[1:])
  # Each stream is contiguous: row b continues across batches.
  row = np.concatenate([b['inputs'][:, 1] for b in batches])
  weights = np.concatenate([b['weights'][:, 1] for b in batches])
  start = int(np.where(ids == row[0])[0][0])
  n = int(weights.sum())
  np.testing.assert_array_equal(row[:n], ids[start : start + n])


def test_adding_batch_targets_are_marked_sums():
  """Two markers, one per half; the target sums the marked values."""
  rng = np.random.default_rng(3)
  batch = data.adding_batch(rng, 16, 20)
  values, markers = batch['inputs'][..., 0], batch['inputs'][..., 1]
  for b in range(16):
    marked = np.flatnonzero(markers[:, b])
    assert len(marked) == 2
    assert marked[0] < 10 <= marked[1]
    assert math.isclose(
      batch['targets'][b], values[marked, b].sum(), rel_tol=1e-6
    )
  assert ((values >= 0) & (values < 1)).all()


def test_adding_baseline_is_variance_of_sum():
  """Always predicting 1 scores Var(u1 + u2) = 1/6, checked by sampling."""
  rng = np.random.default_rng(0)
  targets = np.concatenate(
    [data.adding_batch(rng, 1000, 10)['targets'] for _ in range(20)]
  )
  mse = np.mean((targets - 1.0) ** 2)
  assert data.adding_baseline()['mse'] == pytest.approx(1 / 6)
  assert mse == pytest.approx(1 / 6, rel=0.03)


def test_copy_batch_layout():
  """Symbols, T - 1 blanks, delimiter, blanks; targets recall at the end."""
  rng = np.random.default_rng(1)
  seq_len, k, n = 7, 4, 3
  batch = data.copy_batch(rng, 5, seq_len, num_symbols=k, copy_length=n)
  inputs, targets = batch['inputs'], batch['targets']
  assert inputs.shape == targets.shape == (seq_len + 2 * n, 5)
  symbols = inputs[:n]
  assert ((symbols >= 1) & (symbols <= k)).all()
  assert (inputs[n : n + seq_len - 1] == 0).all()
  assert (inputs[n + seq_len - 1] == k + 1).all()
  assert (inputs[n + seq_len :] == 0).all()
  assert (targets[:-n] == 0).all()
  np.testing.assert_array_equal(targets[-n:], symbols)


def test_copy_baseline_formula():
  """Blanks then uniform guesses: n log K / (T + 2n) nats, 1/K recalled."""
  base = data.copy_baseline(100, num_symbols=8, copy_length=10)
  assert base['loss'] == pytest.approx(10 * math.log(8) / 120)
  assert base['accuracy'] == pytest.approx(1 / 8)


def test_synthetic_stream_is_deterministic_per_split():
  """Same seed and index give the same batch; splits differ."""

  def make(rng, b):
    return data.adding_batch(rng, b, 8)

  train = data.SyntheticStream(make, 4, seed=2)
  first = [next(train)['inputs'] for _ in range(3)]
  again = data.SyntheticStream(make, 4, seed=2)
  again.set_state({'index': 1})
  np.testing.assert_array_equal(next(again)['inputs'], first[1])
  val = data.SyntheticStream(make, 4, seed=2, split='val')
  assert not np.array_equal(next(val)['inputs'], first[0])
