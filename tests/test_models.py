"""Tests for jlstm.models against a float64 NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import variant_reference

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
  apply = jax.jit(model.apply)
  whole, whole_states = apply(params, tokens)
  first, states = apply(params, tokens[:6])
  second, states = apply(params, tokens[6:], states)
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
  logits, _ = jax.jit(model.apply)(params, jnp.zeros((30, 2), jnp.int32))
  assert logits.shape == (30, 2, 10)


def test_dropout_only_in_training():
  """Dropout needs a key in training, changes outputs, and is off in eval."""
  model = models.language_model(9, 8, num_layers=2, embed_size=4, dropout=0.5)
  params = model.init(jax.random.key(0))
  tokens = jnp.arange(12, dtype=jnp.int32).reshape(6, 2) % 9
  with pytest.raises(ValueError, match='needs a PRNG key'):
    model.apply(params, tokens, training=True)
  apply = jax.jit(model.apply, static_argnames='training')
  plain, _ = apply(params, tokens, key=jax.random.key(1))
  again, _ = apply(params, tokens, key=jax.random.key(2))
  np.testing.assert_array_equal(plain, again)
  dropped, _ = apply(params, tokens, key=jax.random.key(1), training=True)
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


def _reference_params(lstm_params):
  """A stack's LSTMParams as variant_reference parameter dicts."""
  layers = []
  for layer in lstm_params:
    cells = []
    for cell in layer:
      p = {
        name: np.asarray(getattr(cell, name), np.float64)
        for name in ('w_x', 'w_h', 'b', 'w_peep', 'w_proj')
        if getattr(cell, name) is not None
      }
      if cell.ln is not None:
        p.update({k: np.asarray(v) for k, v in cell.ln._asdict().items()})
      cells.append(p)
    layers.append(cells)
  return layers


def test_tagging_model_with_variants_matches_float64_reference(x64):
  """Bidirectional, projected, peephole, layer-norm, clipped, coupled: the
  model's logits and states equal a float64 NumPy stack and readout."""
  vocab, hidden, proj = 5, 6, 4
  model = models.tagging_model(
    vocab,
    hidden,
    num_layers=2,
    bidirectional=True,
    proj_size=proj,
    peepholes=True,
    layer_norm=True,
    cell_clip=0.8,
    proj_clip=0.7,
    coupled=True,
    dtype=jnp.float64,
  )
  assert model.lstm_output_size == 2 * proj
  params = model.init(jax.random.key(4))
  # Unit gains and zero offsets at init would hide a dropped scale.
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(5), len(leaves))
  params = jax.tree.unflatten(
    treedef,
    [
      leaf + 0.3 * jax.random.normal(k, leaf.shape, leaf.dtype)
      for leaf, k in zip(leaves, keys, strict=True)
    ],
  )
  tokens = np.array([[0, 3, 4], [4, 1, 1], [2, 2, 0], [1, 4, 3]], np.int32)

  logits, states = model.apply(params, jnp.asarray(tokens))

  finals, hs = variant_reference.unroll_stack(
    _reference_params(params['lstm']),
    np.eye(vocab)[tokens],
    cell_clip=0.8,
    proj_clip=0.7,
    coupled=True,
  )
  head = params['head']
  want = hs @ np.asarray(head['w']) + np.asarray(head['b'])
  assert logits.shape == (4, 3, vocab)
  # The readout accumulates in float32; everything before it is float64.
  np.testing.assert_allclose(logits, want, rtol=1e-6, atol=1e-6)
  for layer in range(2):
    for direction in range(2):
      h, c = finals[layer][direction]
      got = states[layer][direction]
      np.testing.assert_allclose(got.h, h, rtol=1e-12, atol=1e-12)
      np.testing.assert_allclose(got.c, c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
  'option',
  ['input_dropout', 'recurrent_dropout', 'zoneout_cell', 'zoneout_hidden'],
)
def test_recurrent_regularisers_need_a_key_and_only_act_in_training(option):
  """Each rate asks for a key in training, changes the outputs there, and
  out of training gives the same outputs for every key."""
  model = models.language_model(9, 8, embed_size=4, **{option: 0.3})
  params = model.init(jax.random.key(0))
  tokens = jnp.arange(12, dtype=jnp.int32).reshape(6, 2) % 9
  with pytest.raises(ValueError, match='needs a PRNG key'):
    model.apply(params, tokens, training=True)
  apply = jax.jit(model.apply, static_argnames='training')
  plain, _ = apply(params, tokens, key=jax.random.key(1))
  again, _ = apply(params, tokens, key=jax.random.key(2))
  np.testing.assert_array_equal(plain, again)
  first, _ = apply(params, tokens, key=jax.random.key(1), training=True)
  second, _ = apply(params, tokens, key=jax.random.key(1), training=True)
  np.testing.assert_array_equal(first, second)
  assert not np.allclose(first, plain)


def test_sequence_model_rejects_bad_variant_options():
  """Options that make no model raise a ValueError naming the field."""
  with pytest.raises(ValueError, match='bidirectional must be False'):
    models.language_model(9, 8, bidirectional=True)
  with pytest.raises(ValueError, match='proj_size must be 0'):
    models.tagging_model(9, 8, proj_size=-1)
  with pytest.raises(ValueError, match='proj_clip=0.5 bounds a projection'):
    models.tagging_model(9, 8, proj_clip=0.5)
  with pytest.raises(ValueError, match='cell_clip must be 0'):
    models.tagging_model(9, 8, cell_clip=-1.0)
  with pytest.raises(ValueError, match=r'zoneout_cell must be a number'):
    models.tagging_model(9, 8, zoneout_cell=1.0)
