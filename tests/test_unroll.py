"""Tests of unroll: the scan over time, lengths, reverse, transformations."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference
from jax.test_util import check_grads

import jlstm

f32 = lambda a: jnp.asarray(a, jnp.float32)


def chex_close(a, b, atol=0.0):
  chex.assert_trees_all_close(a, b, atol=atol, rtol=0)


def candidate_only_params():
  """1-unit cell whose only non-zero weight is input-to-candidate = 1."""
  w_x = jnp.zeros((1, 4)).at[0, jlstm.gate_slice('g', 1)].set(1.0)
  return jlstm.LSTMParams(w_x=w_x, w_h=jnp.zeros((1, 4)), b=jnp.zeros(4))


def test_unroll_hand_values_forward():
  """After inputs 1, 2, 3: c = 0.833734, h = 0.341238 (by hand)."""
  final, hs = jlstm.unroll(candidate_only_params(), f32([[1], [2], [3]]))
  np.testing.assert_allclose(final.c, [0.833734], atol=1e-6)
  np.testing.assert_allclose(final.h, [0.341238], atol=1e-6)
  np.testing.assert_array_equal(hs[-1], final.h)


def test_unroll_hand_values_lengths_ignore_padding():
  """lengths [3] on inputs 1, 2, 3, 100, 100 give the same state."""
  xs = f32([1, 2, 3, 100, 100]).reshape(5, 1, 1)
  final, hs = jlstm.unroll(candidate_only_params(), xs, lengths=jnp.array([3]))
  np.testing.assert_allclose(final.c, [[0.833734]], atol=1e-6)
  np.testing.assert_allclose(final.h, [[0.341238]], atol=1e-6)
  np.testing.assert_array_equal(hs[3:], 0.0)


def test_unroll_hand_values_reverse():
  """Reversed over 1, 2, 3: c = 0.746186, h = 0.316434 (by hand)."""
  params = candidate_only_params()
  final, _ = jlstm.unroll(params, f32([[1], [2], [3]]), reverse=True)
  np.testing.assert_allclose(final.c, [0.746186], atol=1e-6)
  np.testing.assert_allclose(final.h, [0.316434], atol=1e-6)
  xs = f32([1, 2, 3, 100, 100]).reshape(5, 1, 1)
  final, hs = jlstm.unroll(params, xs, lengths=jnp.array([3]), reverse=True)
  np.testing.assert_allclose(final.c, [[0.746186]], atol=1e-6)
  # The reverse pass emits its first step (input 3) at position 2.
  np.testing.assert_allclose(hs[0, 0], final.h[0], atol=0)
  np.testing.assert_array_equal(hs[3:], 0.0)


def random_problem(rng, time=5, batch=3, input_size=4, hidden=3):
  v = reference.random_seed_variables(rng, input_size, hidden)
  xs = rng.normal(size=(time, batch, input_size))
  h0, c0 = rng.normal(size=(2, batch, hidden))
  return v, xs, h0, c0


@pytest.mark.parametrize('reverse', [False, True])
def test_unroll_matches_float64_reference_with_lengths(reverse):
  """Forward with mixed lengths (0 and T included) equals the NumPy loop."""
  rng = np.random.default_rng(1)
  v, xs, h0, c0 = random_problem(rng, time=6, batch=4)
  lengths = np.array([6, 0, 3, 1])
  want_h, want_c, want_hs = reference.seed_unroll(
    v, xs, h0, c0, lengths, reverse
  )
  params = jax.tree.map(f32, jlstm.interop.from_seed(v))
  final, hs = jlstm.unroll(
    params,
    f32(xs),
    jlstm.LSTMState(f32(h0), f32(c0)),
    lengths=jnp.asarray(lengths),
    reverse=reverse,
  )
  # float32 against float64 over 6 steps of order-1 values.
  np.testing.assert_allclose(hs, want_hs, atol=1e-5)
  np.testing.assert_allclose(final.h, want_h, atol=1e-5)
  np.testing.assert_allclose(final.c, want_c, atol=1e-5)
  # Length 0 returns the initial state unchanged, bit for bit.
  np.testing.assert_array_equal(final.h[1], f32(h0[1]))
  np.testing.assert_array_equal(final.c[1], f32(c0[1]))


def test_unroll_gradients_match_float64_backprop():
  """Gradients w.r.t. params, inputs and initial state equal NumPy BPTT."""
  rng = np.random.default_rng(2)
  v, xs, h0, c0 = random_problem(rng)
  weights = rng.normal(size=(xs.shape[0], xs.shape[1], 3))
  want_v, want_dxs, want_dh0, want_dc0 = reference.seed_unroll_grads(
    v, xs, h0, c0, weights
  )

  def loss(v32, xs, h0, c0):
    params = jlstm.interop.from_seed(v32)
    _, hs = jlstm.unroll(params, xs, jlstm.LSTMState(h0, c0))
    return jnp.sum(hs * f32(weights))

  grads = jax.grad(loss, argnums=(0, 1, 2, 3))(
    jax.tree.map(f32, v), f32(xs), f32(h0), f32(c0)
  )
  got_v, got_dxs, got_dh0, got_dc0 = grads
  for name in want_v:
    np.testing.assert_allclose(got_v[name], want_v[name], atol=2e-5)
  np.testing.assert_allclose(got_dxs, want_dxs, atol=2e-5)
  np.testing.assert_allclose(got_dh0, want_dh0, atol=2e-5)
  np.testing.assert_allclose(got_dc0, want_dc0, atol=2e-5)


def test_reference_backprop_matches_finite_differences():
  """The NumPy BPTT used above agrees with central differences."""
  rng = np.random.default_rng(3)
  v, xs, h0, c0 = random_problem(rng, time=3, batch=2, input_size=2)
  weights = rng.normal(size=(3, 2, 3))
  grads, dxs, _, _ = reference.seed_unroll_grads(v, xs, h0, c0, weights)

  def loss(v, xs):
    return np.sum(reference.seed_unroll(v, xs, h0, c0)[2] * weights)

  eps = 1e-6
  for name in ('W_f_x', 'W_ci_hprev', 'W_o_b'):
    for index in np.ndindex(v[name].shape):
      plus = {**v, name: v[name].copy()}
      minus = {**v, name: v[name].copy()}
      plus[name][index] += eps
      minus[name][index] -= eps
      fd = (loss(plus, xs) - loss(minus, xs)) / (2 * eps)
      assert grads[name][index] == pytest.approx(fd, abs=1e-7)
  bumped = xs.copy()
  bumped[1, 0, 1] += eps
  fd = (loss(v, bumped) - loss(v, xs)) / eps
  assert dxs[1, 0, 1] == pytest.approx(fd, abs=1e-5)


@pytest.mark.parametrize('remat', [False, True])
@pytest.mark.parametrize('reverse', [False, True])
def test_unroll_check_grads(x64, remat, reverse):
  """check_grads in float64 through lengths, reverse and remat."""
  params = jlstm.init_params(
    jax.random.key(0), 3, 2, scheme='uniform', scale=0.8, dtype=jnp.float64
  )
  xs = jax.random.normal(jax.random.key(1), (4, 2, 3), jnp.float64)
  state = jlstm.LSTMState(
    *jax.random.normal(jax.random.key(2), (2, 2, 2), jnp.float64)
  )
  lengths = jnp.array([4, 2])

  def run(params, xs, state):
    final, hs = jlstm.unroll(
      params, xs, state, lengths=lengths, reverse=reverse, remat=remat
    )
    return hs, final

  check_grads(run, (params, xs, state), order=2, modes=['rev'], eps=1e-4)


def test_unroll_padding_nan_gives_zero_finite_gradients():
  """NaN/inf in the padding reach neither outputs nor gradients."""
  params = jlstm.init_params(jax.random.key(0), 3, 4)
  xs = jax.random.normal(jax.random.key(1), (5, 2, 3))
  xs = xs.at[3:, 0].set(jnp.nan).at[1:, 1].set(jnp.inf)
  lengths = jnp.array([3, 1])

  def loss(params, xs):
    final, hs = jlstm.unroll(params, xs, lengths=lengths, reverse=True)
    return jnp.sum(hs) + jnp.sum(final.c)

  value, (g_params, g_xs) = jax.value_and_grad(loss, argnums=(0, 1))(params, xs)
  assert np.isfinite(value)
  for leaf in jax.tree.leaves(g_params):
    assert np.all(np.isfinite(leaf))
  assert np.all(np.isfinite(g_xs))
  np.testing.assert_array_equal(g_xs[3:, 0], 0.0)
  np.testing.assert_array_equal(g_xs[1:, 1], 0.0)
  assert np.all(g_xs[:3, 0] != 0.0)


def test_unroll_lengths_out_of_range_raise_or_clamp():
  """Concrete bad lengths raise; traced ones are clamped into [0, T]."""
  params = jlstm.init_params(jax.random.key(0), 2, 3)
  xs = jnp.ones((4, 2, 2))
  with pytest.raises(ValueError, match=r'lengths must lie in \[0, T\]'):
    jlstm.unroll(params, xs, lengths=jnp.array([5, 1]))
  with pytest.raises(ValueError, match='lengths must lie'):
    jlstm.unroll(params, xs, lengths=np.array([-1, 1]))
  with pytest.raises(TypeError, match='integer'):
    jlstm.unroll(params, xs, lengths=jnp.array([1.0, 2.0]))
  with pytest.raises(ValueError, match=r'batch shape of xs, \(2,\)'):
    jlstm.unroll(params, xs, lengths=jnp.array([1, 2, 3]))
  run = jax.jit(lambda n: jlstm.unroll(params, xs, lengths=n))
  clamped = run(jnp.array([9, -3]))
  expected = jlstm.unroll(params, xs, lengths=jnp.array([4, 0]))
  chex_close(clamped, expected)


def test_unroll_bad_input_names_argument():
  """xs rank/size, state shape and unroll errors name the argument."""
  params = jlstm.init_params(jax.random.key(0), 2, 3)
  with pytest.raises(ValueError, match=r'xs must be \[T, \.\.\., I\]'):
    jlstm.unroll(params, jnp.ones((2,)))
  with pytest.raises(ValueError, match=r'xs must be .*I=2.*\(4, 1, 5\)'):
    jlstm.unroll(params, jnp.ones((4, 1, 5)))
  bad_state = jlstm.zero_state(3, (5,))
  with pytest.raises(ValueError, match='xs batch dims'):
    jlstm.unroll(params, jnp.ones((4, 2, 2)), bad_state)
  with pytest.raises(ValueError, match='unroll'):
    jlstm.unroll(params, jnp.ones((4, 2, 2)), unroll=0)


def test_unroll_jit_equals_eager_and_does_not_recompile():
  """jit gives the eager result; a second call with same shapes reuses it."""
  params = jlstm.init_params(jax.random.key(0), 3, 4)
  xs = jax.random.normal(jax.random.key(1), (6, 2, 3))
  eager = jlstm.unroll(params, xs)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def run(params, xs):
    return jlstm.unroll(params, xs)

  chex_close(run(params, xs), eager, atol=1e-6)
  run(params, xs + 1.0)
  chex.clear_trace_counter()


def test_unroll_vmap_over_batch_and_params_equals_loop():
  """vmap over examples and over an ensemble of params equals a loop."""
  keys = jax.random.split(jax.random.key(0), 3)
  ensemble = jax.vmap(lambda k: jlstm.init_params(k, 3, 4))(keys)
  xs = jax.random.normal(jax.random.key(1), (5, 2, 3))

  by_model = jax.vmap(jlstm.unroll, in_axes=(0, None))(ensemble, xs)
  for m in range(3):
    one = jlstm.unroll(jax.tree.map(lambda a, m=m: a[m], ensemble), xs)
    chex_close(jax.tree.map(lambda a, m=m: a[m], by_model), one, atol=1e-6)

  params = jax.tree.map(lambda a: a[0], ensemble)
  per_example = jax.vmap(jlstm.unroll, in_axes=(None, 1), out_axes=(0, 1))(
    params, xs
  )
  chex_close(per_example, jlstm.unroll(params, xs), atol=1e-6)


def test_unroll_bfloat16_is_finite_close_to_float32_with_f32_state():
  """bfloat16 params and inputs keep a float32 state close to float32."""
  params = jlstm.init_params(jax.random.key(0), 16, 32)
  xs = jax.random.normal(jax.random.key(1), (10, 4, 16))
  final32, hs32 = jlstm.unroll(params, xs)
  bf16 = lambda a: a.astype(jnp.bfloat16)
  final16, hs16 = jlstm.unroll(jax.tree.map(bf16, params), bf16(xs))
  assert final16.c.dtype == jnp.float32 and hs16.dtype == jnp.float32
  assert np.all(np.isfinite(hs16))
  # bfloat16 keeps 8 bits of mantissa: about 3e-3 relative per matmul.
  np.testing.assert_allclose(hs16, hs32, atol=3e-2)
  np.testing.assert_allclose(final16.c, final32.c, atol=3e-2)

  grads = jax.grad(lambda p: jnp.mean(jlstm.unroll(p, bf16(xs))[1]))(
    jax.tree.map(bf16, params)
  )
  assert all(g.dtype == jnp.bfloat16 for g in jax.tree.leaves(grads))
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_unroll_factor_and_remat_do_not_change_results():
  """unroll=3 and remat=True give the same outputs and gradients."""
  params = jlstm.init_params(jax.random.key(0), 3, 4)
  xs = jax.random.normal(jax.random.key(1), (7, 2, 3))

  def loss(params, **kw):
    return jnp.sum(jlstm.unroll(params, xs, **kw)[1] ** 2)

  base = jax.value_and_grad(loss)(params)
  for kw in ({'unroll': 3}, {'remat': True}, {'unroll': True}):
    chex_close(
      jax.value_and_grad(lambda p, kw=kw: loss(p, **kw))(params),
      base,
      atol=1e-6,
    )
