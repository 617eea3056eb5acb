"""The plain LSTM's unroll with a hand-written backward pass.

Reverse-mode autodiff of a ``lax.scan`` adds each step's weight gradient
into the loop carry, so the backward pass spends its time on T small
outer products. This module gives the plain cell's unroll a
``jax.custom_vjp`` instead, shaped the way cuDNN and oneDNN shape theirs:

* the forward scan stores each step's activated gates [T, B, 4H] and the
  incoming cell state [T, B, H] (or, with ``remat``, only the state at the
  start of every chunk of steps);
* the backward scan carries only the state gradients ``(dh, dc)`` and emits
  each step's gate gradient ``dgates`` [T, B, 4H];
* the weight gradients then come from a few large matmuls over all steps at
  once::

    dw_x = xs ^ T @ dgates  # [I, 4H], contracting T and B
    dw_h = hs_prev ^ T @ dgates  # [H, 4H]
    db = sum(dgates)  # [4H]
    dxs = dgates @ w_x ^ T  # [T, B, I]

The gate maths (for the pre-activations ``z``, with ``i, f, o`` sigmoids
and ``g`` a tanh) and its derivative::

  c_t = f * c_{t-1} + i * g              h_t = o * tanh(c_t)
  dc = dc_{t+1} + dh * o * (1 - tanh(c_t)^2)
  dz_i = dc * g * i * (1 - i)            dz_f = dc * c_{t-1} * f * (1 - f)
  dz_g = dc * i * (1 - g^2)              dz_o = dh * tanh(c_t) * o * (1 - o)
  dh_{t-1} = dz @ w_h^T                  dc_{t-1} = dc * f

The three sigmoids and the tanh are evaluated as one tanh over all 4H
pre-activations (``sigmoid(z) = (1 + tanh(z / 2)) / 2``), which XLA fuses
into a single loop.

JAX cannot differentiate a ``custom_vjp`` function in forward mode
(``jax.jvp``, ``jax.jacfwd``); :func:`jlstm.unroll` takes the generic scan
for that (``impl='scan'``, or automatically when it sees a forward-mode
tracer).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.interpreters import ad

from jlstm.cell import LSTMState
from jlstm.cell import compute_dtype
from jlstm.cell import is_basic

Array = jax.Array


class Plan(NamedTuple):
  """Static choices of the fused unroll, decided by measurement.

  Attributes:
    hoist: compute the input projection ``xs @ w_x + b`` for all steps
      before the loop (one large matmul) instead of one per step.
    unroll: steps per scan iteration, or True to unroll fully.
    remat: recompute the gates in the backward pass from the state saved at
      the start of each chunk instead of storing them.
    chunk: steps per chunk with ``remat``.
    recurrent_nt: compute ``h @ w_h`` against ``w_h^T`` stored [4H, H].
  """

  hoist: bool = False
  unroll: int | bool = 1
  remat: bool = False
  chunk: int = 64
  recurrent_nt: bool = False
  backward_nn: bool = False
  concat_input: bool = False
  inplace: bool = False
  grad_rows: int = 0
  one_tanh: bool = True


def plan(
  time: int, batch: int, input_size: int, hidden_size: int, *, unroll, remat
) -> Plan:
  """Picks the :class:`Plan` for one problem size."""
  del time, batch, input_size, hidden_size
  return Plan(unroll=unroll, remat=remat)


#: The values of ``jlstm.unroll``'s ``impl`` argument.
IMPLS = ('auto', 'fused', 'scan')


def check_impl(impl: str, *, plain: bool = True) -> None:
  """Raises ValueError for an unknown ``impl``, or for ``'fused'`` when the
  step is not the plain cell (``plain=False``)."""
  if impl not in IMPLS:
    raise ValueError(f'impl must be one of {IMPLS}; got impl={impl!r}')
  if impl == 'fused' and not plain:
    raise ValueError(
      "impl='fused' covers the plain cell only (no variant fields, cell "
      "options, resets, dropout or zoneout); use impl='auto' or 'scan'"
    )


def _forward_mode(*trees) -> bool:
  """True when an argument carries a forward-mode (jvp) tangent.

  Reverse mode linearises with its own tracer type when JAX's direct
  linearisation is on (the default since JAX 0.7), so a ``JVPTracer`` then
  means ``jax.jvp`` or ``jax.jacfwd``, which a ``custom_vjp`` cannot serve.
  """
  if not getattr(jax.config, 'jax_use_direct_linearize', False):
    return False
  tracer = getattr(ad, 'JVPTracer', None)
  if tracer is None:
    return False
  return any(isinstance(x, tracer) for x in jax.tree.leaves(trees))


def wanted(impl: str, params, xs, state) -> bool:
  """True when :func:`jlstm.unroll` should run the plain cell fused."""
  if impl == 'scan' or not is_basic(params):
    return False
  return impl == 'fused' or not _forward_mode(params, xs, state)


# The gate maths -----------------------------------------------------------


def _gate_scales(hidden_size: int, dtype) -> tuple[np.ndarray, np.ndarray]:
  """Per-gate ``(scale, shift)`` so that act(z) = tanh(z * s) * s + shift.

  With s = 1/2 and shift = 1/2 this is the sigmoid; with s = 1 and
  shift = 0 the tanh. One tanh over all 4H entries then activates every
  gate.
  """
  scale = np.full((4 * hidden_size,), 0.5)
  scale[2 * hidden_size : 3 * hidden_size] = 1.0
  return scale.astype(dtype), (1.0 - scale).astype(dtype)


def _activate(z: Array, hidden_size: int, one_tanh: bool = True) -> Array:
  """[..., 4H] pre-activations to activated gates (i, f, g, o)."""
  if not one_tanh:
    i, f, g, o = _split(z, hidden_size)
    sig = jax.nn.sigmoid
    return jnp.concatenate([sig(i), sig(f), jnp.tanh(g), sig(o)], axis=-1)
  scale, shift = _gate_scales(hidden_size, z.dtype)
  return jnp.tanh(z * scale) * scale + shift


def _split(gates: Array, hidden_size: int) -> tuple[Array, ...]:
  return tuple(
    gates[..., k * hidden_size : (k + 1) * hidden_size] for k in range(4)
  )


def _cell_from_gates(acts: Array, c: Array, hidden_size: int):
  i, f, g, o = _split(acts, hidden_size)
  c = f * c + i * g
  return o * jnp.tanh(c), c


def _gate_grads(acts, c_prev, c, dh, dc, hidden_size):
  """One step's backward: returns (dz [.., 4H], dc_prev [.., H])."""
  i, f, g, o = _split(acts, hidden_size)
  tanh_c = jnp.tanh(c)
  dc = dc + dh * o * (1 - tanh_c * tanh_c)
  dz = jnp.concatenate(
    [
      dc * g * i * (1 - i),
      dc * c_prev * f * (1 - f),
      dc * i * (1 - g * g),
      dh * tanh_c * o * (1 - o),
    ],
    axis=-1,
  )
  return dz, dc * f


def _dot_nt(a: Array, b: Array, acc) -> Array:
  """``a @ b^T`` for a [..., K] and b [N, K], accumulated in ``acc``."""
  return lax.dot_general(
    a, b, (((a.ndim - 1,), (1,)), ((), ())), preferred_element_type=acc
  )


def _dot(a: Array, b: Array, acc) -> Array:
  return jnp.matmul(a, b, preferred_element_type=acc)


# Forward and backward scans ---------------------------------------------


def _valid(t: Array, lengths: Array | None):
  """[N, 1] mask of the sequences still running at step ``t``."""
  if lengths is None:
    return None
  return (t < lengths)[:, None]


def _forward(p: Plan, w_x, w_h, b, xs, h0, c0, lengths, t0, save):
  """Runs the steps t0 .. t0 + len(xs) - 1 from the state (h0, c0).

  Returns ``((h, c), hs, saved)`` where ``saved`` is ``(acts, cs_in)``,
  the activated gates [T, N, 4H] and the incoming cell states [T, N, H],
  when ``save`` and None otherwise.
  """
  hidden = w_h.shape[0]
  acc = h0.dtype
  mm_x, mm_h = compute_dtype(w_x), compute_dtype(w_h)
  b = b.astype(acc)
  if p.recurrent_nt:
    w_ht = w_h.T
    recurrent = lambda h: _dot_nt(h.astype(mm_h), w_ht, acc)
  else:
    recurrent = lambda h: _dot(h.astype(mm_h), w_h, acc)
  time = xs.shape[0]
  steps = t0 + jnp.arange(time)
  if lengths is not None:
    valid = (steps[:, None] < lengths)[..., None]
    # Zeroing the padding keeps NaN or inf there out of every result.
    xs = jnp.where(valid, xs, jnp.zeros((), xs.dtype))
  if p.hoist:
    seq = _dot(xs.astype(mm_x), w_x, acc) + b
    project = lambda s: s
  elif p.concat_input:
    w_cat = jnp.concatenate([w_x.astype(mm_h), w_h], axis=0)
    seq = xs
    project = lambda x: b
    recurrent = None
  else:
    seq = xs
    project = lambda x: _dot(x.astype(mm_x), w_x, acc) + b

  if save and p.inplace:
    return _forward_inplace(
      p, seq, project, recurrent, h0, c0, lengths, steps, hidden
    )

  def step(carry, inputs):
    h, c = carry
    s, t = inputs
    if recurrent is None:
      xh = jnp.concatenate([s.astype(mm_h), h.astype(mm_h)], axis=-1)
      z = _dot(xh, w_cat, acc) + b
    else:
      z = project(s) + recurrent(h)
    acts = _activate(z, hidden, p.one_tanh)
    h_new, c_new = _cell_from_gates(acts, c, hidden)
    keep = _valid(t, lengths)
    if keep is not None:
      h_new = jnp.where(keep, h_new, h)
      c_new = jnp.where(keep, c_new, c)
      out = jnp.where(keep, h_new, jnp.zeros((), acc))
    else:
      out = h_new
    if save:
      return (h_new, c_new), (out, acts, c)
    return (h_new, c_new), out

  carry, ys = lax.scan(step, (h0, c0), (seq, steps), unroll=p.unroll)
  if save:
    hs, acts, cs_in = ys
    return carry, hs, (acts, cs_in)
  return carry, ys, None


def _forward_inplace(
  p, seq, project, recurrent, h0, c0, lengths, steps, hidden
):
  """The saving forward scan, writing the gates over one [T, N, 4H] buffer.

  With the input projection hoisted the buffer starts as ``xs @ w_x + b``
  and each step overwrites its slot with the activated gates.
  """
  acc = h0.dtype
  time, batch = seq.shape[:2]
  if p.hoist:
    buf = seq
    inputs = steps
  else:
    buf = jnp.zeros((time, batch, 4 * hidden), acc)
    inputs = (seq, steps)

  def step(carry, inputs):
    h, c, buf = carry
    if p.hoist:
      t = inputs
      z = lax.dynamic_index_in_dim(buf, t - steps[0], keepdims=False)
      # A materialised copy of the slot lets XLA overwrite it in place.
      z = lax.optimization_barrier(z) + recurrent(h)
    else:
      s, t = inputs
      z = project(s) + recurrent(h)
    acts = _activate(z, hidden, p.one_tanh)
    buf = lax.dynamic_update_index_in_dim(buf, acts, t - steps[0], 0)
    h_new, c_new = _cell_from_gates(acts, c, hidden)
    keep = _valid(t, lengths)
    if keep is not None:
      h_new = jnp.where(keep, h_new, h)
      c_new = jnp.where(keep, c_new, c)
      out = jnp.where(keep, h_new, jnp.zeros((), acc))
    else:
      out = h_new
    return (h_new, c_new, buf), (out, c)

  (h, c, buf), (hs, cs_in) = lax.scan(
    step, (h0, c0, buf), inputs, unroll=p.unroll
  )
  return (h, c), hs, (buf, cs_in)


def _backward(p: Plan, w_h, acts, cs_in, c_last, dhs, dh, dc, lengths, t0):
  """Backward scan over saved gates: returns ((dh0, dc0), dgates)."""
  hidden = w_h.shape[0]
  acc = dh.dtype
  w_h = w_h.astype(acc)
  if p.backward_nn:
    w_ht = w_h.T
    back = lambda dz: _dot(dz, w_ht, acc)
  else:
    back = lambda dz: _dot_nt(dz, w_h, acc)
  steps = t0 + jnp.arange(acts.shape[0])
  if p.inplace:
    return _backward_inplace(
      back, acts, cs_in, c_last, dhs, dh, dc, lengths, steps, hidden
    )

  def step(carry, inputs):
    dh, dc, c = carry
    dh_t, a, c_prev, t = inputs
    keep = _valid(t, lengths)
    if keep is not None:
      dh_t = jnp.where(keep, dh_t, jnp.zeros((), acc))
    dh_in = dh + dh_t
    dz, dc_prev = _gate_grads(a, c_prev, c, dh_in, dc, hidden)
    if keep is not None:
      dz = jnp.where(keep, dz, jnp.zeros((), acc))
      dc_prev = jnp.where(keep, dc_prev, dc)
      dh_prev = jnp.where(keep, back(dz), dh_in)
    else:
      dh_prev = back(dz)
    return (dh_prev, dc_prev, c_prev), dz

  (dh, dc, _), dz = lax.scan(
    step,
    (dh, dc, c_last),
    (dhs, acts, cs_in, steps),
    reverse=True,
    unroll=p.unroll,
  )
  return (dh, dc), dz


def _backward_inplace(
  back, buf, cs_in, c_last, dhs, dh, dc, lengths, steps, hidden
):
  """The backward scan, writing each step's dz over its saved gates."""
  acc = dh.dtype

  def step(carry, inputs):
    dh, dc, c, buf = carry
    dh_t, c_prev, t = inputs
    j = t - steps[0]
    a = lax.optimization_barrier(
      lax.dynamic_index_in_dim(buf, j, keepdims=False)
    )
    keep = _valid(t, lengths)
    if keep is not None:
      dh_t = jnp.where(keep, dh_t, jnp.zeros((), acc))
    dh_in = dh + dh_t
    dz, dc_prev = _gate_grads(a, c_prev, c, dh_in, dc, hidden)
    if keep is not None:
      dz = jnp.where(keep, dz, jnp.zeros((), acc))
      dc_prev = jnp.where(keep, dc_prev, dc)
      dh_prev = jnp.where(keep, back(dz), dh_in)
    else:
      dh_prev = back(dz)
    buf = lax.dynamic_update_index_in_dim(buf, dz, j, 0)
    return (dh_prev, dc_prev, c_prev, buf), None

  (dh, dc, _, buf), _ = lax.scan(
    step,
    (dh, dc, c_last, buf),
    (dhs, cs_in, steps),
    reverse=True,
  )
  return (dh, dc), buf


def _weight_grads(xs, hs_prev, dz, lengths, t0):
  """The weight gradients of a block of steps, as three large matmuls."""
  acc = dz.dtype
  if lengths is not None:
    steps = t0 + jnp.arange(xs.shape[0])
    valid = (steps[:, None] < lengths)[..., None]
    xs = jnp.where(valid, xs, jnp.zeros((), xs.dtype))
  dw_x = jnp.einsum('tni,tng->ig', xs.astype(acc), dz)
  dw_h = jnp.einsum('tnh,tng->hg', hs_prev, dz)
  return dw_x, dw_h, dz.sum((0, 1))


# The custom VJP -----------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _run(p: Plan, w_x, w_h, b, xs, h0, c0, lengths):
  (h, c), hs, _ = _forward(p, w_x, w_h, b, xs, h0, c0, lengths, 0, False)
  return h, c, hs


def _chunked(p: Plan, xs, lengths):
  """Pads ``xs`` [T, ...] to whole chunks: returns (xs [n, K, ...], lengths).

  Padded steps run masked (``lengths`` = T where it was None), so they
  change nothing.
  """
  time = xs.shape[0]
  chunk = min(p.chunk, time)
  count = -(-time // chunk)
  pad = count * chunk - time
  if pad:
    xs = jnp.concatenate([xs, jnp.zeros((pad, *xs.shape[1:]), xs.dtype)])
    if lengths is None:
      lengths = jnp.full(xs.shape[1:2], time, jnp.int32)
  return xs.reshape(count, chunk, *xs.shape[1:]), lengths


def _run_fwd(p: Plan, w_x, w_h, b, xs, h0, c0, lengths):
  if not p.remat:
    (h, c), hs, (acts, cs_in) = _forward(
      p, w_x, w_h, b, xs, h0, c0, lengths, 0, True
    )
    residuals = (w_x, w_h, b, xs, h0, hs, acts, cs_in, c, lengths)
    return (h, c, hs), residuals

  # Only the state at the start of each chunk is kept; the backward pass
  # recomputes the chunk's gates from it.
  time = xs.shape[0]
  chunks, masked = _chunked(p, xs, lengths)
  chunk = chunks.shape[1]

  def run_chunk(carry, inputs):
    xs_k, k = inputs
    end, hs_k, _ = _forward(
      p, w_x, w_h, b, xs_k, *carry, masked, k * chunk, False
    )
    return end, (hs_k, carry)

  (h, c), (hs, starts) = lax.scan(
    run_chunk, (h0, c0), (chunks, jnp.arange(chunks.shape[0]))
  )
  hs = hs.reshape(-1, *hs.shape[2:])[:time]
  return (h, c, hs), (w_x, w_h, b, xs, starts, lengths)


def _divisor_chunk(time: int, batch: int, rows: int) -> int:
  """Steps per chunk: a divisor of T near ``rows / batch`` (T if none)."""
  target = max(1, rows // max(batch, 1))
  if target >= time:
    return time
  best = max(d for d in range(1, target + 1) if time % d == 0)
  return best if 4 * best >= target else time


def _run_bwd(p: Plan, residuals, cotangents):
  if p.remat:
    return _run_bwd_remat(p, residuals, cotangents)
  w_x, w_h, b, xs, h0, hs, acts, cs_in, c_last, lengths = residuals
  dh, dc, dhs = cotangents
  acc = dh.dtype
  time, batch = xs.shape[:2]
  chunk = _divisor_chunk(time, batch, p.grad_rows) if p.grad_rows else time
  if chunk < time:
    return _run_bwd_chunks(p, residuals, cotangents, chunk)
  (dh0, dc0), dz = _backward(
    p, w_h, acts, cs_in, c_last, dhs, dh, dc, lengths, 0
  )
  hs_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)
  dw_x, dw_h, db = _weight_grads(xs, hs_prev, dz, lengths, 0)
  dxs = _dot_nt(dz, w_x.astype(acc), acc)
  return _cast_grads(w_x, w_h, b, xs, dw_x, dw_h, db, dxs, dh0, dc0)


def _run_bwd_chunks(p: Plan, residuals, cotangents, chunk):
  """The backward pass a chunk of steps at a time, so the gate gradients
  of one chunk live in a buffer that every chunk reuses."""
  w_x, w_h, b, xs, h0, hs, acts, cs_in, c_last, lengths = residuals
  dh, dc, dhs = cotangents
  acc = dh.dtype
  time = xs.shape[0]
  count = time // chunk

  def split(a):
    return a.reshape(count, chunk, *a.shape[1:])

  h_starts = jnp.concatenate([h0[None], hs[chunk - 1 : -1 : chunk]], axis=0)

  def chunk_grads(carry, inputs):
    dh, dc, c, dw_x, dw_h, db = carry
    acts_k, cs_k, dhs_k, xs_k, hs_k, h_k, k = inputs
    t0 = k * chunk
    (dh, dc), dz = _backward(
      p, w_h, acts_k, cs_k, c, dhs_k, dh, dc, lengths, t0
    )
    hs_prev = jnp.concatenate([h_k[None], hs_k[:-1]], axis=0)
    dw_x_k, dw_h_k, db_k = _weight_grads(xs_k, hs_prev, dz, lengths, t0)
    dxs_k = _dot_nt(dz, w_x.astype(acc), acc)
    carry = (dh, dc, cs_k[0], dw_x + dw_x_k, dw_h + dw_h_k, db + db_k)
    return carry, dxs_k

  zeros = (
    jnp.zeros(w_x.shape, acc),
    jnp.zeros(w_h.shape, acc),
    jnp.zeros(b.shape, acc),
  )
  (dh0, dc0, _, dw_x, dw_h, db), dxs = lax.scan(
    chunk_grads,
    (dh, dc, c_last, *zeros),
    (
      split(acts),
      split(cs_in),
      split(dhs),
      split(xs),
      split(hs),
      h_starts,
      jnp.arange(count),
    ),
    reverse=True,
  )
  dxs = dxs.reshape(time, *dxs.shape[2:])
  return _cast_grads(w_x, w_h, b, xs, dw_x, dw_h, db, dxs, dh0, dc0)


def _cast_grads(w_x, w_h, b, xs, dw_x, dw_h, db, dxs, dh0, dc0):
  return (
    dw_x.astype(w_x.dtype),
    dw_h.astype(w_h.dtype),
    db.astype(b.dtype),
    dxs.astype(xs.dtype),
    dh0,
    dc0,
    None,
  )


def _run_bwd_remat(p: Plan, residuals, cotangents):
  w_x, w_h, b, xs, (h_starts, c_starts), lengths = residuals
  dh, dc, dhs = cotangents
  acc = dh.dtype
  time = xs.shape[0]
  chunks, masked = _chunked(p, xs, lengths)
  count, chunk = chunks.shape[:2]
  dhs, _ = _chunked(p, dhs, None)

  def chunk_grads(carry, inputs):
    dh, dc, dw_x, dw_h, db = carry
    xs_k, dhs_k, h_k, c_k, k = inputs
    t0 = k * chunk
    (_, c_end), hs_k, (acts, cs_in) = _forward(
      p, w_x, w_h, b, xs_k, h_k, c_k, masked, t0, True
    )
    (dh, dc), dz = _backward(
      p, w_h, acts, cs_in, c_end, dhs_k, dh, dc, masked, t0
    )
    hs_prev = jnp.concatenate([h_k[None], hs_k[:-1]], axis=0)
    dw_x_k, dw_h_k, db_k = _weight_grads(xs_k, hs_prev, dz, masked, t0)
    dxs_k = _dot_nt(dz, w_x.astype(acc), acc)
    carry = (dh, dc, dw_x + dw_x_k, dw_h + dw_h_k, db + db_k)
    return carry, dxs_k

  zeros = (
    jnp.zeros(w_x.shape, acc),
    jnp.zeros(w_h.shape, acc),
    jnp.zeros(b.shape, acc),
  )
  (dh0, dc0, dw_x, dw_h, db), dxs = lax.scan(
    chunk_grads,
    (dh, dc, *zeros),
    (chunks, dhs, h_starts, c_starts, jnp.arange(count)),
    reverse=True,
  )
  dxs = dxs.reshape(-1, *dxs.shape[2:])[:time]
  return _cast_grads(w_x, w_h, b, xs, dw_x, dw_h, db, dxs, dh0, dc0)


_run.defvjp(_run_fwd, _run_bwd)


def _reverse_index(lengths: Array, time: int) -> Array:
  """[T, N] time index that reverses each sequence's first ``lengths`` steps
  and leaves the padding in place; it is its own inverse."""
  t = jnp.arange(time)[:, None]
  return jnp.where(t < lengths, lengths - 1 - t, t)


def _take_time(xs: Array, index: Array) -> Array:
  """Gathers ``xs`` [T, N, F] along time with ``index`` [T, N]."""
  return jnp.take_along_axis(xs, index[..., None], axis=0)


def unroll(params, xs, state: LSTMState, *, lengths, reverse, unroll, remat):
  """The fused equivalent of :func:`jlstm.unroll` for the plain cell.

  Takes the arguments after ``jlstm.unroll`` has checked them: ``state``
  broadcast to the batch shape in the state dtype, ``lengths`` None or
  int32 [...].
  """
  time = xs.shape[0]
  batch_shape = state.h.shape[:-1]
  batch = int(np.prod(batch_shape, dtype=np.int64))
  hidden = params.w_h.shape[0]
  p = plan(time, batch, params.w_x.shape[0], hidden, unroll=unroll, remat=remat)

  # The state may hold more batch dims than xs: right-align those of xs
  # first, or broadcasting would pair the time axis with a batch axis.
  missing = len(batch_shape) - (xs.ndim - 2)
  xs = xs.reshape(xs.shape[:1] + (1,) * missing + xs.shape[1:])
  xs = jnp.broadcast_to(xs, (time, *batch_shape, xs.shape[-1]))
  flat_xs = xs.reshape(time, batch, xs.shape[-1])
  h0 = state.h.reshape(batch, hidden)
  c0 = state.c.reshape(batch, hidden)
  flat_lengths = None if lengths is None else lengths.reshape(batch)
  if reverse:
    if lengths is None:
      flat_xs = flat_xs[::-1]
    else:
      index = _reverse_index(flat_lengths, time)
      flat_xs = _take_time(flat_xs, index)

  h, c, hs = _run(
    p, params.w_x, params.w_h, params.b, flat_xs, h0, c0, flat_lengths
  )

  if reverse:
    hs = hs[::-1] if lengths is None else _take_time(hs, index)
  final = LSTMState(h=h.reshape(state.h.shape), c=c.reshape(state.c.shape))
  return final, hs.reshape(time, *batch_shape, hidden)
