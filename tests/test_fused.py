"""Tests of the fused unroll (jlstm/_fused.py) behind ``jlstm.unroll``.

References: plain autodiff of the generic scan (``impl='scan'``), a float64
NumPy forward and backward pass written below, and ``check_grads``.
Tolerances: float32 1e-5 relative to the values' scale (both paths round
differently: one tanh for all gates versus separate sigmoids); float64
1e-10; bfloat16 3e-2 (its 8-bit mantissa).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jlstm
from jlstm import _fused

F32_TOL = 1e-5
F64_TOL = 1e-10
BF16_TOL = 3e-2


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def numpy_unroll_vjp(w_x, w_h, b, xs, h0, c0, lengths, reverse, cts):
  """Float64 forward pass and backprop through time, one sequence at a time.

  Args:
    w_x, w_h, b: [I, 4H], [H, 4H], [4H] in gate order i, f, g, o.
    xs: [T, B, I]; h0, c0: [B, H]; lengths: [B]; reverse: bool.
    cts: cotangents (d_hs [T, B, H], d_h_final [B, H], d_c_final [B, H]).

  Returns:
    ``((h, c, hs), (dw_x, dw_h, db, dxs, dh0, dc0))`` in float64.
  """
  w_x, w_h, b, xs, h0, c0 = (
    np.asarray(a, np.float64) for a in (w_x, w_h, b, xs, h0, c0)
  )
  d_hs, d_h, d_c = (np.asarray(a, np.float64) for a in cts)
  time, batch = xs.shape[:2]
  hidden = w_h.shape[0]
  hs = np.zeros((time, batch, hidden))
  h_out, c_out = h0.copy(), c0.copy()
  grads = [np.zeros_like(a) for a in (w_x, w_h, b, xs, h0, c0)]
  dw_x, dw_h, db, dxs, dh0, dc0 = grads
  for n in range(batch):
    order = list(range(lengths[n]))
    if reverse:
      order = order[::-1]
    h, c = h0[n], c0[n]
    tape = []
    for t in order:
      z = xs[t, n] @ w_x + h @ w_h + b
      i, f, o = (_sigmoid(z[k * hidden : (k + 1) * hidden]) for k in (0, 1, 3))
      g = np.tanh(z[2 * hidden : 3 * hidden])
      c_new = f * c + i * g
      tape.append((t, h, c, i, f, g, o, c_new))
      h, c = o * np.tanh(c_new), c_new
      hs[t, n] = h
    h_out[n], c_out[n] = h, c

    dh, dc = d_h[n].copy(), d_c[n].copy()
    for t, h_prev, c_prev, i, f, g, o, c_new in reversed(tape):
      dh = dh + d_hs[t, n]
      tanh_c = np.tanh(c_new)
      dc = dc + dh * o * (1 - tanh_c**2)
      dz = np.concatenate(
        [
          dc * g * i * (1 - i),
          dc * c_prev * f * (1 - f),
          dc * i * (1 - g**2),
          dh * tanh_c * o * (1 - o),
        ]
      )
      dw_x += np.outer(xs[t, n], dz)
      dw_h += np.outer(h_prev, dz)
      db += dz
      dxs[t, n] = w_x @ dz
      dh = w_h @ dz
      dc = dc * f
    dh0[n], dc0[n] = dh, dc
  return (h_out, c_out, hs), tuple(grads)


def _problem(key, time=7, batch=3, inputs=5, hidden=4, dtype=jnp.float32):
  """Random params (scale 0.7, so gates saturate a little), xs and state."""
  k = jax.random.split(key, 4)
  params = jlstm.init_params(
    k[0], inputs, hidden, scheme='uniform', scale=0.7, dtype=dtype
  )
  xs = jax.random.normal(k[1], (time, batch, inputs), dtype)
  state = jlstm.LSTMState(
    h=0.5 * jax.random.normal(k[2], (batch, hidden), dtype),
    c=0.5 * jax.random.normal(k[3], (batch, hidden), dtype),
  )
  return params, xs, state


def _loss(impl, **kwargs):
  """A scalar that weighs every output, the final state and all inputs."""

  def loss(params, xs, state):
    final, hs = jlstm.unroll(params, xs, state, impl=impl, **kwargs)
    weights = jnp.cos(jnp.arange(hs.size, dtype=hs.dtype)).reshape(hs.shape)
    return (
      jnp.sum(hs * weights)
      + jnp.sum(jnp.sin(final.h))
      + 0.5 * jnp.sum(final.c**2)
    )

  return loss


def _jit_grad(loss, argnums=(0, 1, 2)):
  return jax.jit(jax.value_and_grad(loss, argnums))


def _assert_close(actual, expected, tol):
  actual, expected = jax.tree.leaves(actual), jax.tree.leaves(expected)
  assert len(actual) == len(expected)
  for a, e in zip(actual, expected, strict=True):
    a = np.asarray(a, np.float64)
    e = np.asarray(e, np.float64)
    scale = max(1.0, float(np.max(np.abs(e))))
    np.testing.assert_allclose(a, e, rtol=0, atol=tol * scale)


LENGTHS = np.array([7, 0, 4])


@pytest.mark.parametrize('remat', [False, True])
@pytest.mark.parametrize('reverse', [False, True])
@pytest.mark.parametrize('lengths', [None, LENGTHS])
def test_fused_matches_scan_autodiff(lengths, reverse, remat):
  """Outputs and gradients (params, xs, state) equal autodiff of the scan."""
  params, xs, state = _problem(jax.random.key(0))
  kwargs = dict(lengths=lengths, reverse=reverse, remat=remat)
  args = (params, xs, state)

  fused = _jit_grad(_loss('fused', **kwargs))(*args)
  scan = _jit_grad(_loss('scan', **kwargs))(*args)
  _assert_close(fused, scan, F32_TOL)
  out_fused = jlstm.unroll(*args, impl='fused', **kwargs)
  out_scan = jlstm.unroll(*args, impl='scan', **kwargs)
  _assert_close(out_fused, out_scan, F32_TOL)


@pytest.mark.parametrize('remat', [False, True])
@pytest.mark.parametrize('reverse', [False, True])
def test_fused_matches_float64_numpy_backprop(x64, reverse, remat):
  """Float64 values and VJP match the NumPy backprop with lengths."""
  params, xs, state = _problem(jax.random.key(1), dtype=jnp.float64)
  k = jax.random.split(jax.random.key(2), 3)
  cts = (
    jax.random.normal(k[0], (7, 3, 4), jnp.float64),
    jax.random.normal(k[1], (3, 4), jnp.float64),
    jax.random.normal(k[2], (3, 4), jnp.float64),
  )

  def run(w_x, w_h, b, xs, h0, c0):
    final, hs = jlstm.unroll(
      jlstm.LSTMParams(w_x, w_h, b),
      xs,
      jlstm.LSTMState(h0, c0),
      lengths=LENGTHS,
      reverse=reverse,
      remat=remat,
      impl='fused',
    )
    return hs, final.h, final.c

  @jax.jit
  def values_and_vjp(primals, cts):
    outputs, vjp = jax.vjp(run, *primals)
    return outputs, vjp(cts)

  primals = (params.w_x, params.w_h, params.b, xs, state.h, state.c)
  (hs, h, c), grads = values_and_vjp(primals, cts)
  (h_ref, c_ref, hs_ref), grads_ref = numpy_unroll_vjp(
    *primals, LENGTHS, reverse, (cts[0], cts[1], cts[2])
  )
  _assert_close((h, c, hs), (h_ref, c_ref, hs_ref), F64_TOL)
  _assert_close(grads, grads_ref, F64_TOL)


@pytest.mark.parametrize('remat', [False, True])
def test_fused_check_grads_float64(x64, remat):
  """Reverse-mode gradients, first and second order, match differences."""
  params, xs, state = _problem(
    jax.random.key(3), time=5, batch=2, inputs=3, hidden=2, dtype=jnp.float64
  )
  loss = jax.jit(_loss('fused', lengths=np.array([5, 3]), remat=remat))
  check_grads(loss, (params, xs, state), order=2, modes=['rev'], eps=1e-4)


def test_fused_padding_nan_gives_exact_zero_finite_gradients():
  """NaN and inf in the padding: finite grads, exactly zero at the padding."""
  params, xs, state = _problem(jax.random.key(4))
  xs = xs.at[4:, 2].set(jnp.nan).at[:, 1].set(jnp.inf)
  for reverse in (False, True):
    for remat in (False, True):
      loss = _loss('fused', lengths=LENGTHS, reverse=reverse, remat=remat)
      _, grads = _jit_grad(loss)(params, xs, state)
      for leaf in jax.tree.leaves(grads):
        assert np.isfinite(np.asarray(leaf)).all()
      d_xs = np.asarray(grads[1])
      assert (d_xs[4:, 2] == 0).all() and (d_xs[:, 1] == 0).all()
      assert np.abs(d_xs[:4, 2]).max() > 0
      # A length-0 sequence passes its state straight through.
      d_state = grads[2]
      np.testing.assert_array_equal(
        d_state.c[1], np.asarray(state.c[1], np.float32)
      )


def test_fused_bfloat16_params_keep_float32_state():
  """bfloat16 params: float32 outputs, bf16 grads, close to the scan."""
  params, xs, state = _problem(jax.random.key(5), dtype=jnp.bfloat16)
  state = jlstm.LSTMState(*(a.astype(jnp.float32) for a in state))
  final, hs = jlstm.unroll(params, xs, state, impl='fused')
  assert hs.dtype == jnp.float32 and final.c.dtype == jnp.float32
  _assert_close(
    (final, hs), jlstm.unroll(params, xs, state, impl='scan'), BF16_TOL
  )
  grads = jax.jit(jax.grad(_loss('fused')))(params, xs, state)
  assert grads.w_x.dtype == jnp.bfloat16 and grads.b.dtype == jnp.bfloat16
  want = jax.jit(jax.grad(_loss('scan')))(params, xs, state)
  _assert_close(grads, want, BF16_TOL)


def test_fused_vmap_over_batch_and_params_equals_loop():
  """vmap over examples and over parameter sets equals a Python loop."""
  params, xs, state = _problem(jax.random.key(6))
  loss = _loss('fused')

  per_example = jax.vmap(
    lambda x, h, c: jlstm.unroll(params, x, jlstm.LSTMState(h, c))[1],
    in_axes=(1, 0, 0),
    out_axes=1,
  )(xs, state.h, state.c)
  _assert_close(per_example, jlstm.unroll(params, xs, state)[1], F32_TOL)

  stacked = jax.tree.map(lambda a: jnp.stack([a, 0.5 * a, -a]), params)
  grads = jax.jit(jax.vmap(jax.grad(loss), in_axes=(0, None, None)))(
    stacked, xs, state
  )
  scan_grad = jax.jit(jax.grad(_loss('scan')))
  for k in range(3):
    one = jax.tree.map(lambda a, k=k: a[k], stacked)
    _assert_close(
      jax.tree.map(lambda a, k=k: a[k], grads),
      scan_grad(one, xs, state),
      F32_TOL,
    )


def test_fused_batch_shapes_and_broadcast_state():
  """No batch, two batch dims and a state broadcast over xs all work."""
  params, xs, state = _problem(jax.random.key(7))
  for x, s in (
    (xs[:, 0], None),
    (xs.reshape(7, 3, 1, 5) * jnp.ones((1, 1, 2, 1)), None),
    (xs[:, :1], state),
  ):
    got = _jit_grad(_loss('fused'), (0, 1))(params, x, s)
    want = _jit_grad(_loss('scan'), (0, 1))(params, x, s)
    _assert_close(got, want, F32_TOL)


def test_fused_jit_unroll_factor_and_remat_keep_results():
  """jit, unroll factors and remat change nothing but speed."""
  params, xs, state = _problem(jax.random.key(8), time=9)
  want = _jit_grad(_loss('scan'))(params, xs, state)
  for unroll, remat in ((1, True), (4, False), (True, True)):
    loss = _loss('fused', unroll=unroll, remat=remat)
    got = _jit_grad(loss)(params, xs, state)
    _assert_close(got, want, F32_TOL)


@pytest.mark.parametrize('time', [100, 67])
def test_fused_chunked_passes_match_scan(time):
  """Chunked projection, backward and remat (a padded last chunk at T = 67)
  equal the scan, with and without lengths."""
  params, xs, state = _problem(
    jax.random.key(9), time=time, batch=32, inputs=3, hidden=4
  )
  lengths = np.arange(32) * 3 % (time + 1)
  for kwargs in (
    dict(),
    dict(remat=True),
    dict(remat=True, lengths=lengths, reverse=True),
  ):
    got = _jit_grad(_loss('fused', **kwargs))(params, xs, state)
    want = _jit_grad(_loss('scan', **kwargs))(params, xs, state)
    _assert_close(got, want, F32_TOL)


def test_unroll_default_is_fused_for_the_plain_cell_only():
  """impl='auto' fuses the plain cell; variants and options take the scan."""
  params, xs, _ = _problem(jax.random.key(10))

  def has_custom_vjp(fn):
    return 'custom_vjp_call' in str(jax.make_jaxpr(fn)(params, xs))

  assert has_custom_vjp(lambda p, x: jlstm.unroll(p, x))
  assert not has_custom_vjp(lambda p, x: jlstm.unroll(p, x, impl='scan'))
  assert not has_custom_vjp(lambda p, x: jlstm.unroll(p, x, forget_bias=1.0))
  peephole = params._replace(w_peep=jnp.zeros((3, 4)))
  assert not has_custom_vjp(lambda p, x: jlstm.unroll(peephole, x))


def test_unroll_forward_mode_falls_back_to_scan():
  """jax.jvp and jacfwd work under impl='auto' and equal the scan's."""
  params, xs, state = _problem(jax.random.key(11))
  tangent = jnp.ones_like(xs)

  def outputs(impl):
    return lambda x: jlstm.unroll(params, x, state, impl=impl)[1]

  _, auto = jax.jvp(outputs('auto'), (xs,), (tangent,))
  _, scan = jax.jvp(outputs('scan'), (xs,), (tangent,))
  _assert_close(auto, scan, F32_TOL)
  with pytest.raises(TypeError, match='forward-mode'):
    jax.jvp(outputs('fused'), (xs,), (tangent,))


def test_unroll_impl_is_checked():
  """An unknown impl, or 'fused' for a variant, raises a clear ValueError."""
  params, xs, _ = _problem(jax.random.key(12))
  with pytest.raises(ValueError, match='impl must be one of'):
    jlstm.unroll(params, xs, impl='cudnn')
  with pytest.raises(ValueError, match='plain cell only'):
    jlstm.unroll(params, xs, impl='fused', cell_clip=1.0)


def _fwd_bwd(time, batch, inputs, hidden, remat=False):
  params = jlstm.init_params(jax.random.key(0), inputs, hidden)
  xs = jax.ShapeDtypeStruct((time, batch, inputs), jnp.float32)

  def loss(params, xs):
    return jnp.mean(jlstm.unroll(params, xs, remat=remat)[1])

  return jax.jit(jax.grad(loss)).lower(params, xs)


def test_fused_program_size_does_not_grow_with_time():
  """The program is the same size for T = 1,000 and 10,000, and no larger
  for T = 100: steps run in loops, never unrolled."""

  def lines(time):
    return len(_fwd_bwd(time, 4, 8, 16).as_text().splitlines())

  assert lines(1000) == lines(10_000)
  assert lines(100) <= lines(1000)


def test_fused_temporary_memory_of_long_sequences():
  """XLA temporaries: L shape <= 205 MB; remat T = 10,000 < 1 GiB."""
  long = _fwd_bwd(1000, 16, 64, 256).compile().memory_analysis()
  assert long.temp_size_in_bytes <= 205e6
  remat = _fwd_bwd(10_000, 16, 64, 256, remat=True).compile()
  assert remat.memory_analysis().temp_size_in_bytes < 2**30


def test_fused_plan_chunks_and_short_sequence_unroll():
  """Chunks divide T near the asked rows; short forward passes unroll."""
  assert _fused._chunk_steps(1000, 16, 512) == 25
  assert _fused._chunk_steps(100, 64, 2048) == 25
  assert _fused._chunk_steps(67, 32, 2048) == 67  # no divisor near 64
  assert _fused._chunk_steps(10, 32, 512) == 10
  assert _fused.plan(10, 32, unroll=1, remat=False).primal_unroll is True
  assert _fused.plan(1000, 16, unroll=1, remat=False).primal_unroll == 1
  assert _fused.plan(10, 32, unroll=4, remat=True).primal_unroll == 4
