"""Tests of the cell: parameters, state, initialisation, one step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference

import jlstm


def test_gate_order_constant_matches_slices():
  """GATE_ORDER is i, f, g, o and gate_slice follows it."""
  assert jlstm.GATE_ORDER == ('i', 'f', 'g', 'o')
  assert jlstm.gate_slice('i', 5) == slice(0, 5)
  assert jlstm.gate_slice('o', 5) == slice(15, 20)
  with pytest.raises(ValueError, match='gate'):
    jlstm.gate_slice('c', 5)


def test_params_and_state_are_pytrees():
  """LSTMParams and LSTMState flatten into their named fields."""
  p = jlstm.init_params(jax.random.key(0), 3, 4)
  assert len(jax.tree.leaves(p)) == 3
  assert p.input_size == 3 and p.hidden_size == 4
  s = jlstm.zero_state(4, (2,))
  assert s._fields == ('h', 'c')
  assert s.h.shape == (2, 4) and not s.c.any()


@pytest.mark.parametrize('scheme', jlstm.INIT_SCHEMES)
def test_init_params_shapes_and_dtype(scheme):
  """Every scheme gives [I, 4H], [H, 4H], [4H] in the requested dtype."""
  p = jlstm.init_params(
    jax.random.key(1), 7, 5, scheme=scheme, dtype=jnp.bfloat16
  )
  assert p.w_x.shape == (7, 20) and p.w_h.shape == (5, 20)
  assert p.b.shape == (20,)
  assert {a.dtype for a in jax.tree.leaves(p)} == {jnp.dtype(jnp.bfloat16)}


def test_init_seed_is_tf_truncated_normal():
  """'seed' is N(0, 0.1) cut at 2 stddev: std ~0.088, no value past 0.2."""
  p = jlstm.init_params(jax.random.key(2), 300, 256, scheme='seed')
  values = np.concatenate([np.ravel(a) for a in jax.tree.leaves(p)])
  assert np.abs(values).max() <= 0.2
  # Truncated at +-2 sigma, the std is 0.1 * 0.8796; 400k samples put the
  # estimate within about 0.1% of it.
  assert values.std() == pytest.approx(0.08796, rel=0.01)
  assert abs(values.mean()) < 1e-3


def test_init_uniform_is_pytorch_style():
  """'uniform' draws from U(-1/sqrt(H), 1/sqrt(H)), std = bound/sqrt(3)."""
  p = jlstm.init_params(jax.random.key(3), 64, 256, scheme='uniform')
  values = np.concatenate([np.ravel(a) for a in jax.tree.leaves(p)])
  bound = 1 / 16
  assert np.abs(values).max() <= bound
  assert values.std() == pytest.approx(bound / np.sqrt(3), rel=0.01)


def test_init_glorot_is_keras_style():
  """'glorot': Glorot-uniform w_x, orthogonal w_h, forget bias 1."""
  i, h = 64, 32
  p = jlstm.init_params(jax.random.key(4), i, h, scheme='glorot')
  limit = np.sqrt(6 / (i + 4 * h))
  assert np.abs(p.w_x).max() <= limit
  assert np.std(p.w_x) == pytest.approx(limit / np.sqrt(3), rel=0.05)
  w_h = np.asarray(p.w_h, np.float64)
  np.testing.assert_allclose(w_h @ w_h.T, np.eye(h), atol=1e-5)
  expected_b = np.zeros(4 * h)
  expected_b[h : 2 * h] = 1.0
  np.testing.assert_array_equal(p.b, expected_b)


def test_init_forget_bias_overrides_scheme():
  """forget_bias sets exactly the forget block of b."""
  p = jlstm.init_params(jax.random.key(5), 3, 4, forget_bias=2.5)
  np.testing.assert_array_equal(p.b[4:8], 2.5)
  assert not np.any(p.b[:4] == 2.5)


def test_init_params_rejects_bad_arguments():
  """Unknown scheme, non-positive sizes and int dtypes are named errors."""
  key = jax.random.key(0)
  with pytest.raises(ValueError, match='scheme'):
    jlstm.init_params(key, 3, 4, scheme='xavier')
  with pytest.raises(ValueError, match='hidden_size'):
    jlstm.init_params(key, 3, 0)
  with pytest.raises(TypeError, match='input_size'):
    jlstm.init_params(key, 3.5, 4)
  with pytest.raises(TypeError, match='dtype'):
    jlstm.init_params(key, 3, 4, dtype=jnp.int32)


def test_lstm_cell_matches_float64_reference():
  """One step equals the notebook's four-gate float64 loop."""
  rng = np.random.default_rng(0)
  v = reference.random_seed_variables(rng, 6, 5)
  params = jlstm.interop.from_seed(v)
  h, c = rng.normal(size=(2, 2, 5))
  x = rng.normal(size=(2, 6))
  want_h, want_c = reference.seed_cell(v, h, c, x)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  got = jlstm.lstm_cell(
    jax.tree.map(f32, params), jlstm.LSTMState(f32(h), f32(c)), f32(x)
  )
  # float32 against float64: inputs of order 1, a few ulps of float32.
  np.testing.assert_allclose(got.h, want_h, atol=2e-6)
  np.testing.assert_allclose(got.c, want_c, atol=2e-6)


def test_lstm_cell_accepts_any_batch_dims():
  """x may be [I], [B, I] or [B1, B2, I]; state broadcasts against it."""
  p = jlstm.init_params(jax.random.key(0), 3, 4)
  x = jax.random.normal(jax.random.key(1), (2, 5, 3))
  full = jlstm.lstm_cell(p, jlstm.zero_state(4, (2, 5)), x)
  broadcast = jlstm.lstm_cell(p, jlstm.zero_state(4), x)
  np.testing.assert_array_equal(full.h, broadcast.h)
  single = jlstm.lstm_cell(p, jlstm.zero_state(4), x[1, 2])
  np.testing.assert_allclose(single.h, full.h[1, 2], atol=1e-6)


def test_lstm_cell_bad_input_names_argument():
  """Shape and dtype errors name the argument and both shapes."""
  p = jlstm.init_params(jax.random.key(0), 3, 4)
  s = jlstm.zero_state(4, (2,))
  with pytest.raises(ValueError, match=r'x must be .*I=3.*\(2, 5\)'):
    jlstm.lstm_cell(p, s, jnp.ones((2, 5)))
  with pytest.raises(ValueError, match=r'state\.h .*H=4.*\(2, 3\)'):
    jlstm.lstm_cell(p, jlstm.zero_state(3, (2,)), jnp.ones((2, 3)))
  with pytest.raises(TypeError, match='x must have a floating dtype'):
    jlstm.lstm_cell(p, s, jnp.ones((2, 3), jnp.int32))
  with pytest.raises(TypeError, match='state must be an LSTMState'):
    jlstm.lstm_cell(p, (s.h, s.c), jnp.ones((2, 3)))
  bad = p._replace(b=jnp.zeros(15))
  with pytest.raises(ValueError, match=r'params\.b must be \[16\]'):
    jlstm.lstm_cell(bad, s, jnp.ones((2, 3)))
  bad = p._replace(w_x=jnp.zeros((3, 12)))
  with pytest.raises(ValueError, match=r'params\.w_x must be \[I, 16\]'):
    jlstm.lstm_cell(bad, s, jnp.ones((2, 3)))
  with pytest.raises(ValueError, match='do not broadcast'):
    jlstm.lstm_cell(p, jlstm.zero_state(4, (3,)), jnp.ones((2, 3)))
