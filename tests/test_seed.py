"""Tests of the seed notebook's variables and shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference

import jlstm


def test_from_seed_to_seed_round_trip_is_exact():
  """to_seed(from_seed(v)) returns every variable bit for bit."""
  rng = np.random.default_rng(0)
  v = {
    k: a.astype(np.float32)
    for k, a in reference.random_seed_variables(rng, 7, 5).items()
  }
  back = jlstm.interop.to_seed(jlstm.interop.from_seed(v))
  assert sorted(back) == sorted(v)
  for name, value in v.items():
    np.testing.assert_array_equal(back[name], value)


def test_from_seed_places_each_gate_in_its_block():
  """The candidate 'ci' lands in block g, 'f' in block f, and so on."""
  v = {
    f'W_{g}_{p}': np.full(s, k + 1.0, np.float32)
    for k, g in enumerate(reference.SEED_GATE_NAMES)
    for p, s in (('x', (2, 3)), ('hprev', (3, 3)), ('b', (1, 3)))
  }
  params = jlstm.interop.from_seed(v)
  blocks = {g: params.b[jlstm.gate_slice(g, 3)] for g in jlstm.GATE_ORDER}
  # SEED_GATE_NAMES is f, i, o, ci, valued 1, 2, 3, 4.
  np.testing.assert_array_equal(blocks['f'], 1.0)
  np.testing.assert_array_equal(blocks['i'], 2.0)
  np.testing.assert_array_equal(blocks['o'], 3.0)
  np.testing.assert_array_equal(blocks['g'], 4.0)


def test_from_seed_errors_name_the_variable():
  """A missing variable or a wrong shape names the variable."""
  rng = np.random.default_rng(0)
  v = reference.random_seed_variables(rng, 4, 3)
  missing = {k: a for k, a in v.items() if k != 'W_o_hprev'}
  with pytest.raises(KeyError, match='W_o_hprev'):
    jlstm.interop.from_seed(missing)
  wrong = {**v, 'W_ci_b': np.zeros(4)}
  with pytest.raises(ValueError, match=r'W_ci_b.*\(3,\).*\(4,\)'):
    jlstm.interop.from_seed(wrong)
  with pytest.raises(KeyError, match='W_f_x'):
    jlstm.interop.from_seed({})


def test_seed_shapes_match_float64_reference():
  """At the seed's shapes, forward and gradients match the float64 loop."""
  rng = np.random.default_rng(4)
  v = reference.random_seed_variables(rng, 300, 256, scale=0.1)
  xs = rng.normal(size=(10, 32, 300))
  h0 = np.zeros((32, 256))
  weights = rng.normal(size=(10, 32, 256))
  want_h, want_c, want_hs = reference.seed_unroll(v, xs, h0, h0)
  want_grads, want_dxs, _, _ = reference.seed_unroll_grads(
    v, xs, h0, h0, weights
  )
  f32 = lambda a: jnp.asarray(a, jnp.float32)

  def loss(v, xs):
    final, hs = jlstm.unroll(jlstm.interop.from_seed(v), xs)
    return jnp.sum(hs * f32(weights)), (final, hs)

  with jax.default_matmul_precision('highest'):
    (_, (final, hs)), (grads, dxs) = jax.value_and_grad(
      loss, argnums=(0, 1), has_aux=True
    )(jax.tree.map(f32, v), f32(xs))
  # Pre-activations sum 556 products of order 0.1: float32 keeps ~1e-6.
  np.testing.assert_allclose(hs, want_hs, atol=1e-5)
  np.testing.assert_allclose(final.c, want_c, atol=1e-5)
  np.testing.assert_allclose(final.h, want_h, atol=1e-5)
  for name, want in want_grads.items():
    scale = np.abs(want).max()
    np.testing.assert_allclose(grads[name], want, atol=1e-5 * scale)
  np.testing.assert_allclose(dxs, want_dxs, atol=1e-5 * np.abs(want_dxs).max())
