"""Tests for jlstm.models against a float64 NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jlstm import models


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _numpy_stack(lstm_params, xs, states=None):
  """Float64 loop over layers and steps, gate blocks i, f, g, o."""
  layer_inputs = np.asarray(xs, np.float64)
  finals = []
  for layer, (cell,) in enumerate(lstm_params):
    w_x, w_h, b = (np.asarray(a, np.float64) for a in cell[:3])
    hidden = w_h.shape[0]
    if states is None:
      h = np.zeros(layer_inputs.shape[1:-1] + (hidden,))
      c = np.zeros_like(h)
    else:
      h = np.asarray(states[layer][0].h, np.float64)
      c = np.asarray(states[layer][0].c, np.float64)
    outputs = []
    for x in layer_inputs:
      z = x @ w_x + h @ w_h + b
      i, f, g, o = (z[..., k * hidden : (k + 1) * hidden] for k in range(4))
      c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
      h = _sigmoid(o) * np.tanh(c)
      outputs.append(h)
    finals.append((h, c))
    layer_inputs = np.stack(outputs)
  return finals, layer_inputs


@pytest.mark.parametrize('embed_size', [0, 5])
def test_language_model_matches_numpy(x64, embed_size):
  """Embedding or one-hot, 2 LSTM layers, readout: equal to float64 NumPy."""
  vocab, hidden = 7, 6
  model = models.language_model(
    vocab, hidden, num_layers=2, embed_size=embed_size, dtype=jnp.float64
  )
  params = model.init(jax.random.key(0))
  # Non-zero readout bias so the test sees it.
  params['head']['b'] = jnp.linspace(-1.0, 1.0, vocab)
  tokens = np.array([[0, 3], [6, 1], [2, 2], [5, 4]], np.int32)

  logits, states = model.apply(params, jnp.asarray(tokens))

  if embed_size:
    xs = np.asarray(params['embed'], np.float64)[tokens]
  else:
    xs = np.eye(vocab)[tokens]
  finals, hs = _numpy_stack(params['lstm'], xs)
  want = hs @ np.asarray(params['head']['w']) + np.asarray(params['head']['b'])
  # float64 end to end except the float32 readout accumulator.
  np.testing.assert_allclose(logits, want, rtol=1e-6, atol=1e-6)
  for layer, (h, c) in enumerate(finals):
    np.testing.assert_allclose(states[layer][0].h, h, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(states[layer][0].c, c, rtol=1e-12, atol=1e-12)


def test_language_model_carried_state_equals_one_long_pass():
  """Two chunks with the state carried equal one pass over both (float32)."""
  model = models.language_model(11, 8, num_layers=2, embed_size=4)
  params = model.init(jax.random.key(1))
  tokens = jax.random.randint(jax.random.key(2), (12, 3), 0, 11)
  whole, whole_states = model.apply(params, tokens)
  first, states = model.apply(params, tokens[:5])
  second, states = model.apply(params, tokens[5:], states)
  # float32 on CPU: both paths run the same ops in the same order.
  np.testing.assert_allclose(
    jnp.concatenate([first, second]), whole, rtol=1e-6, atol=1e-6
  )
  np.testing.assert_allclose(
    states[1][0].c, whole_states[1][0].c, rtol=1e-6, atol=1e-6
  )


def test_regression_model_matches_numpy(x64):
  """Feature inputs and a 1-unit readout match the float64 reference."""
  model = models.regression_model(2, 5, dtype=jnp.float64)
  params = model.init(jax.random.key(3))
  xs = np.random.default_rng(0).normal(size=(6, 4, 2))
  outputs, _ = model.apply(params, jnp.asarray(xs))
  _, hs = _numpy_stack(params['lstm'], xs)
  want = hs @ np.asarray(params['head']['w'])
  assert outputs.shape == (6, 4, 1)
  np.testing.assert_allclose(outputs, want, rtol=1e-6, atol=1e-6)


def test_tagging_model_is_one_hot_in_and_out():
  """The copy-task model reads one-hot symbols and emits per-step logits."""
  model = models.tagging_model(10, 16)
  assert model.lstm_input_size == 10
  params = model.init(jax.random.key(0))
  assert 'embed' not in params
  logits, _ = model.apply(params, jnp.zeros((30, 2), jnp.int32))
  assert logits.shape == (30, 2, 10)


def test_dropout_only_in_training():
  """Dropout needs a key in training, changes outputs, and is off in eval."""
  model = models.language_model(9, 8, num_layers=2, embed_size=4, dropout=0.5)
  params = model.init(jax.random.key(0))
  tokens = jnp.arange(12, dtype=jnp.int32).reshape(6, 2) % 9
  with pytest.raises(ValueError, match='needs a PRNG key'):
    model.apply(params, tokens, training=True)
  plain, _ = model.apply(params, tokens)
  again, _ = model.apply(params, tokens, key=jax.random.key(1))
  np.testing.assert_array_equal(plain, again)
  dropped, _ = model.apply(params, tokens, key=jax.random.key(1), training=True)
  assert not np.allclose(dropped, plain)


def test_sequence_model_rejects_bad_inputs():
  """Wrong input rank and bad hyperparameters raise ValueError."""
  model = models.language_model(9, 8)
  params = model.init(jax.random.key(0))
  with pytest.raises(ValueError, match=r'\[T, B\] int ids'):
    model.apply(params, jnp.zeros((3, 2, 9)))
  with pytest.raises(ValueError, match='hidden_size must be a positive int'):
    models.language_model(9, 0)
  with pytest.raises(ValueError, match='dropout must lie in'):
    models.language_model(9, 8, dropout=1.0)
  with pytest.raises(ValueError, match='embed_size must be 0'):
    models.regression_model(2, 8, embed_size=4)
