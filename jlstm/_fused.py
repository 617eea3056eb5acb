"""The plain LSTM's unroll with a hand-written backward pass.

Reverse-mode autodiff of a ``lax.scan`` adds each step's weight gradient
into the loop carry, so its backward pass spends its time on T small outer
products. :func:`jlstm.unroll` runs the plain cell through this module
instead, a ``jax.custom_vjp`` shaped the way cuDNN and oneDNN shape theirs:

* the forward scan keeps each step's activated gates [T, B, 4H] and its
  incoming cell state [T, B, H] (with ``remat``, only the state at the start
  of every chunk of steps, and the backward pass recomputes the rest);
* the backward scan carries only the state gradients ``(dh, dc)`` and emits
  each step's gate gradient ``dz`` [B, 4H];
* the weight gradients come from a few large matmuls over many steps at
  once instead of one outer product per step::

    dw_x = xs ^ T @ dz  # [I, 4H], contracting T and B
    dw_h = hs_prev ^ T @ dz  # [H, 4H]
    db = sum(dz)  # [4H]
    dxs = dz @ w_x ^ T  # [T, B, I]

With i, f, o sigmoids and g a tanh of the pre-activations ``z``, a step and
its derivative are::

  c_t = f * c_{t-1} + i * g              h_t = o * tanh(c_t)
  dc = dc_{t+1} + dh * o * (1 - tanh(c_t)^2)
  dz_i = dc * g * i * (1 - i)            dz_f = dc * c_{t-1} * f * (1 - f)
  dz_g = dc * i * (1 - g^2)              dz_o = dh * tanh(c_t) * o * (1 - o)
  dh_{t-1} = dz @ w_h^T                  dc_{t-1} = dc * f

What the measurements on a 2-core CPU decided (``jlstm bench`` and the
notes in the README):

* The input projection ``xs @ w_x`` is hoisted out of the step loop: per
  step it is a small matmul that cost as much as the recurrent one at long
  sequences. A forward pass that saves its gates for the backward pass
  projects the whole sequence in one matmul and each step writes its gates
  over its slot of the projection, so the [T, B, 4H] buffer the gates need
  anyway is never filled twice. A forward pass that saves nothing projects
  one chunk of about 512 rows (steps times batch) at a time; a
  [T, B, 4H] buffer there costs more in fresh memory than it saves.
* In the backward step, the gate gradients are the saved factors times
  ``[dc, dc, dc, dh]`` joined along the gate axis; XLA's CPU backend
  vectorises that far better than the same product written with tiled
  copies and a [4H] mask.
* The backward pass runs a chunk of about 2048 rows at a time: the gate
  gradients of one chunk live in a buffer every chunk reuses, and that
  chunk's weight gradients are a few matmuls. A [T, B, 4H] gradient buffer
  cost more in first-touch page faults than the larger matmuls saved.
* ``h @ w_h`` against ``w_h`` as stored ([H, 4H]) forward, and
  ``dz @ w_h^T`` against a transposed copy backward: each the faster of
  the two layouts.
* The three sigmoids and the tanh are one tanh over all 4H pre-activations
  (``sigmoid(z) = (1 + tanh(z / 2)) / 2``), one fused loop.
* Short sequences (T <= 16) run their forward pass unrolled.

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

#: The values of ``jlstm.unroll``'s ``impl`` argument.
IMPLS = ('auto', 'fused', 'scan')

#: Sequences up to this long run their forward pass fully unrolled.
SHORT_SEQUENCE = 16


class Plan(NamedTuple):
  """Static choices of the fused unroll; the defaults won on the benchmark.

  Attributes:
    project_rows: rows (steps times batch) per chunk whose input projection
      is one matmul in a forward pass that saves no gates (one saving them
      projects the whole sequence at once); 0 projects step by step.
    grad_rows: rows per chunk of the backward pass.
    remat_rows: rows per chunk recomputed in the backward pass with
      ``remat``.
    unroll: steps per scan iteration of the training passes.
    primal_unroll: the same for a forward pass that is not differentiated.
    remat: keep only the state at each chunk's start and recompute the
      gates in the backward pass.
  """

  project_rows: int = 512
  grad_rows: int = 2048
  remat_rows: int = 1024
  unroll: int | bool = 1
  primal_unroll: int | bool = 1
  remat: bool = False


def plan(time: int, batch: int, *, unroll, remat) -> Plan:
  """The :class:`Plan` for T steps of batch B (``batch``)."""
  del batch
  primal_unroll = unroll
  if unroll is not True and unroll == 1 and time <= SHORT_SEQUENCE:
    primal_unroll = True
  return Plan(unroll=unroll, primal_unroll=primal_unroll, remat=remat)


# Dispatch -------------------------------------------------------------------


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
  # Empty sequences or batches have nothing to fuse; the scan handles them.
  if xs.shape[0] == 0 or 0 in state.h.shape:
    return False
  return impl == 'fused' or not _forward_mode(params, xs, state)


# The gate maths -------------------------------------------------------------


def _activate(z: Array, hidden_size: int) -> Array:
  """[..., 4H] pre-activations to activated gates (i, f, g, o).

  One tanh over all 4H entries: ``tanh(z * s) * s + (1 - s)`` is the
  sigmoid for s = 1/2 and the tanh for s = 1.
  """
  scale = np.full((4 * hidden_size,), 0.5)
  scale[2 * hidden_size : 3 * hidden_size] = 1.0
  scale = scale.astype(z.dtype)
  return jnp.tanh(z * scale) * scale + (1 - scale)


def _split(gates: Array, hidden_size: int) -> tuple[Array, ...]:
  return tuple(
    gates[..., k * hidden_size : (k + 1) * hidden_size] for k in range(4)
  )


def _cell_from_gates(acts: Array, c: Array, hidden_size: int):
  i, f, g, o = _split(acts, hidden_size)
  c = f * c + i * g
  return o * jnp.tanh(c), c


def _dot(a: Array, b: Array, acc) -> Array:
  return jnp.matmul(a, b, preferred_element_type=acc)


def _valid(t: Array, lengths: Array | None) -> Array | None:
  """[N, 1] mask of the sequences still running at step ``t``."""
  if lengths is None:
    return None
  return (t < lengths)[:, None]


def _mask_padding(xs: Array, t0, lengths: Array | None) -> Array:
  """Zeros the padding of ``xs`` [T, N, F] (steps t0 ..), so NaN or inf
  there reach no result."""
  if lengths is None:
    return xs
  steps = t0 + jnp.arange(xs.shape[0])
  valid = (steps[:, None] < lengths)[..., None]
  return jnp.where(valid, xs, jnp.zeros((), xs.dtype))


def _chunk_steps(time: int, batch: int, rows: int) -> int:
  """Steps per chunk: the divisor of T nearest below ``rows / batch``, or T
  when that divisor would make chunks far smaller than asked."""
  target = max(1, rows // max(batch, 1))
  if rows <= 0 or target >= time:
    return time
  best = max(d for d in range(1, target + 1) if time % d == 0)
  return best if 4 * best >= target else time


# The forward pass -----------------------------------------------------------


def _forward(p: Plan, w_x, w_h, b, xs, h0, c0, lengths, t0, save, unroll):
  """Runs the steps t0 .. t0 + T - 1 of ``xs`` [T, N, I] from (h0, c0).

  Returns ``((h, c), hs, saved)`` with ``saved`` = ``(acts, cs_in)``, the
  activated gates [T, N, 4H] and each step's incoming cell state
  [T, N, H], when ``save``, and None otherwise.
  """
  time, batch = xs.shape[:2]
  hoist = p.project_rows > 0
  chunk = time if hoist and save else _chunk_steps(time, batch, p.project_rows)
  if chunk == time:
    return _forward_chunk(
      w_x, w_h, b, xs, h0, c0, lengths, t0, save, hoist, unroll
    )
  count = time // chunk

  def run_chunk(carry, inputs):
    xs_k, k = inputs
    carry, hs_k, saved = _forward_chunk(
      w_x, w_h, b, xs_k, *carry, lengths, t0 + k * chunk, save, True, unroll
    )
    return carry, (hs_k, saved)

  carry, (hs, saved) = lax.scan(
    run_chunk,
    (h0, c0),
    (xs.reshape(count, chunk, *xs.shape[1:]), jnp.arange(count)),
  )

  def merge(a):
    return a.reshape(time, *a.shape[2:])

  if saved is not None:
    saved = tuple(merge(a) for a in saved)
  return carry, merge(hs), saved


def _forward_chunk(w_x, w_h, b, xs, h0, c0, lengths, t0, save, hoist, unroll):
  """One scan over the steps of ``xs``; see :func:`_forward`."""
  hidden = w_h.shape[0]
  acc = h0.dtype
  mm_x, mm_h = compute_dtype(w_x), compute_dtype(w_h)
  b = b.astype(acc)
  xs = _mask_padding(xs, t0, lengths)
  index = jnp.arange(xs.shape[0])
  if hoist:
    # With the gates saved, each step writes them over its slot of the
    # projection, so they take no memory of their own.
    projection = _dot(xs.astype(mm_x), w_x, acc)
    inputs = index
  else:
    projection = None
    inputs = (xs, index)

  def step(carry, inputs):
    h, c, projection = carry
    if hoist:
      j = inputs
      z = lax.dynamic_index_in_dim(projection, j, keepdims=False)
    else:
      x, j = inputs
      z = _dot(x.astype(mm_x), w_x, acc)
    acts = _activate(z + _dot(h.astype(mm_h), w_h, acc) + b, hidden)
    h_new, c_new = _cell_from_gates(acts, c, hidden)
    keep = _valid(t0 + j, lengths)
    if keep is None:
      out = h_new
    else:
      h_new = jnp.where(keep, h_new, h)
      c_new = jnp.where(keep, c_new, c)
      out = jnp.where(keep, h_new, jnp.zeros((), acc))
    if not save:
      return (h_new, c_new, projection), out
    if hoist:
      projection = lax.dynamic_update_index_in_dim(projection, acts, j, 0)
      return (h_new, c_new, projection), (out, c)
    return (h_new, c_new, projection), (out, c, acts)

  (h, c, projection), ys = lax.scan(
    step, (h0, c0, projection), inputs, unroll=unroll
  )
  if not save:
    return (h, c), ys, None
  if hoist:
    hs, cs_in = ys
    return (h, c), hs, (projection, cs_in)
  hs, cs_in, acts = ys
  return (h, c), hs, (acts, cs_in)


# The backward pass ----------------------------------------------------------


def _backward(p: Plan, w_ht, acts, cs_in, c_last, dhs, dh, dc, lengths, t0):
  """Backward scan over a block of saved gates.

  Every factor of the gate gradients that does not depend on the arriving
  state gradients is computed for the whole block at once, so each step
  is one fused multiply and one matmul::

    q = [g i (1 - i), c_{t-1} f (1 - f), i (1 - g^2), tanh(c_t) o (1 - o)]
    dc = dc + dh * o (1 - tanh(c_t)^2)
    dz = q * [dc, dc, dc, dh]

  Args:
    w_ht: [4H, H], the transposed recurrent matrix in the state dtype.
    acts, cs_in, dhs: the block's gates [K, N, 4H], incoming cell states and
      output cotangents [K, N, H].
    c_last: [N, H] cell state after the block's last step.
    dh, dc: [N, H] state gradients arriving from after the block.

  Returns:
    ``((dh, dc), dz)``: the state gradients before the block and the gate
    gradients [K, N, 4H].
  """
  hidden = w_ht.shape[1]
  acc = dh.dtype
  i, f, g, o = _split(acts, hidden)
  tanh_c = jnp.tanh(jnp.concatenate([cs_in[1:], c_last[None]], axis=0))
  q = jnp.concatenate(
    [
      g * i * (1 - i),
      cs_in * f * (1 - f),
      i * (1 - g * g),
      tanh_c * o * (1 - o),
    ],
    axis=-1,
  )
  dc_dh = o * (1 - tanh_c * tanh_c)
  steps = t0 + jnp.arange(acts.shape[0])

  def step(carry, inputs):
    dh, dc = carry
    dh_t, q_t, dc_dh_t, f_t, t = inputs
    keep = _valid(t, lengths)
    if keep is not None:
      dh_t = jnp.where(keep, dh_t, jnp.zeros((), acc))
    dh_in = dh + dh_t
    dc_in = dc + dh_in * dc_dh_t
    dz = q_t * jnp.concatenate([dc_in, dc_in, dc_in, dh_in], axis=-1)
    dc_prev = dc_in * f_t
    if keep is None:
      dh_prev = _dot(dz, w_ht, acc)
    else:
      # Padded steps pass the state gradients through untouched.
      dz = jnp.where(keep, dz, jnp.zeros((), acc))
      dc_prev = jnp.where(keep, dc_prev, dc)
      dh_prev = jnp.where(keep, _dot(dz, w_ht, acc), dh_in)
    return (dh_prev, dc_prev), dz

  (dh, dc), dz = lax.scan(
    step,
    (dh, dc),
    (dhs, q, dc_dh, f, steps),
    reverse=True,
    unroll=p.unroll,
  )
  return (dh, dc), dz


def _block_grads(p, w_x, w_ht, block, dh, dc, lengths, t0):
  """Gradients of one block of steps: its backward scan, then its weight
  gradients as one matmul and one sum over all of its rows.

  Args:
    block: ``(xs, dhs, acts, cs_in, c_last, h_start, hs)`` of the block,
      ``h_start`` [N, H] being the state before its first step.

  Returns:
    ``((dh, dc), (dw_x, dw_h, db), dxs)``.
  """
  xs, dhs, acts, cs_in, c_last, h_start, hs = block
  acc = dh.dtype
  (dh, dc), dz = _backward(
    p, w_ht, acts, cs_in, c_last, dhs, dh, dc, lengths, t0
  )
  rows = dz.reshape(-1, dz.shape[-1])
  hs_prev = jnp.concatenate([h_start[None], hs[:-1]], axis=0)

  # dw_x and dw_h in one [I + H, K*N] @ [K*N, 4H] matmul, so dz streams
  # through once. The barrier keeps XLA from folding the transpose back
  # into the dot, which makes it pick a slower matmul kernel.
  inputs = jnp.concatenate(
    [_mask_padding(xs, t0, lengths).astype(acc), hs_prev], axis=-1
  )
  inputs = lax.optimization_barrier(inputs.reshape(-1, inputs.shape[-1]).T)
  both = _dot(inputs, rows, acc)
  width = xs.shape[-1]
  weights = (both[:width], both[width:], rows.sum(0))
  dxs = _dot(dz, w_x.astype(acc).T, acc)
  return (dh, dc), weights, dxs


# The custom VJP -------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _run(p: Plan, w_x, w_h, b, xs, h0, c0, lengths):
  (h, c), hs, _ = _forward(
    p, w_x, w_h, b, xs, h0, c0, lengths, 0, False, p.primal_unroll
  )
  return h, c, hs


def _run_fwd(p: Plan, w_x, w_h, b, xs, h0, c0, lengths):
  if p.remat:
    return _remat_fwd(p, w_x, w_h, b, xs, h0, c0, lengths)
  (h, c), hs, (acts, cs_in) = _forward(
    p, w_x, w_h, b, xs, h0, c0, lengths, 0, True, p.unroll
  )
  residuals = (w_x, w_h, b, xs, h0, hs, acts, cs_in, c, lengths)
  return (h, c, hs), residuals


def _run_bwd(p: Plan, residuals, cotangents):
  if p.remat:
    return _remat_bwd(p, residuals, cotangents)
  w_x, w_h, b, xs, h0, hs, acts, cs_in, c_last, lengths = residuals
  dh, dc, dhs = cotangents
  acc = dh.dtype
  time, batch = xs.shape[:2]
  chunk = _chunk_steps(time, batch, p.grad_rows)
  count = time // chunk
  w_ht = w_h.astype(acc).T

  def split(a):
    return a.reshape(count, chunk, *a.shape[1:])

  # The state before each chunk: h0, then the output of each chunk's end.
  h_starts = jnp.concatenate([h0[None], hs[chunk - 1 : -1 : chunk]], axis=0)

  def run_chunk(carry, inputs):
    dh, dc, c_last, grads = carry
    xs_k, dhs_k, acts_k, cs_k, h_k, hs_k, k = inputs
    block = (xs_k, dhs_k, acts_k, cs_k, c_last, h_k, hs_k)
    (dh, dc), grads_k, dxs_k = _block_grads(
      p, w_x, w_ht, block, dh, dc, lengths, k * chunk
    )
    grads = tuple(a + g for a, g in zip(grads, grads_k, strict=True))
    return (dh, dc, cs_k[0], grads), dxs_k

  (dh0, dc0, _, grads), dxs = lax.scan(
    run_chunk,
    (dh, dc, c_last, _zero_grads(w_x, w_h, b, acc)),
    (
      split(xs),
      split(dhs),
      split(acts),
      split(cs_in),
      h_starts,
      split(hs),
      jnp.arange(count),
    ),
    reverse=True,
  )
  return _cast_grads(
    w_x, w_h, b, xs, grads, dxs.reshape(xs.shape[:2] + (-1,)), dh0, dc0
  )


def _zero_grads(w_x, w_h, b, acc):
  return tuple(jnp.zeros(a.shape, acc) for a in (w_x, w_h, b))


def _cast_grads(w_x, w_h, b, xs, grads, dxs, dh0, dc0):
  dw_x, dw_h, db = grads
  return (
    dw_x.astype(w_x.dtype),
    dw_h.astype(w_h.dtype),
    db.astype(b.dtype),
    dxs.astype(xs.dtype),
    dh0,
    dc0,
    None,
  )


# Rematerialisation ---------------------------------------------------------


def _remat_chunks(p: Plan, xs, lengths):
  """Splits ``xs`` [T, ...] into [n, K, ...] chunks of about
  ``p.remat_rows`` rows, padding the end when no divisor of T fits.

  Returns ``(chunks, lengths)``; padded steps run masked (``lengths`` = T
  where it was None), so they change nothing.
  """
  time, batch = xs.shape[:2]
  chunk = _chunk_steps(time, batch, p.remat_rows)
  if chunk == time:
    chunk = min(time, max(1, p.remat_rows // max(batch, 1)))
  count = -(-time // chunk)
  pad = count * chunk - time
  if pad:
    xs = jnp.concatenate([xs, jnp.zeros((pad, *xs.shape[1:]), xs.dtype)])
    if lengths is None:
      lengths = jnp.full((batch,), time, jnp.int32)
  return xs.reshape(count, chunk, *xs.shape[1:]), lengths


def _remat_fwd(p: Plan, w_x, w_h, b, xs, h0, c0, lengths):
  """The forward pass keeping only the state at the start of each chunk."""
  time = xs.shape[0]
  chunks, masked = _remat_chunks(p, xs, lengths)
  chunk = chunks.shape[1]

  def run_chunk(carry, inputs):
    xs_k, k = inputs
    end, hs_k, _ = _forward(
      p, w_x, w_h, b, xs_k, *carry, masked, k * chunk, False, p.unroll
    )
    return end, (hs_k, carry)

  (h, c), (hs, starts) = lax.scan(
    run_chunk, (h0, c0), (chunks, jnp.arange(chunks.shape[0]))
  )
  hs = hs.reshape(-1, *hs.shape[2:])[:time]
  return (h, c, hs), (w_x, w_h, b, xs, starts, lengths)


def _remat_bwd(p: Plan, residuals, cotangents):
  """The backward pass recomputing each chunk's gates from its start."""
  w_x, w_h, b, xs, (h_starts, c_starts), lengths = residuals
  dh, dc, dhs = cotangents
  acc = dh.dtype
  time = xs.shape[0]
  chunks, masked = _remat_chunks(p, xs, lengths)
  count, chunk = chunks.shape[:2]
  dhs, _ = _remat_chunks(p, dhs, None)
  w_ht = w_h.astype(acc).T

  def run_chunk(carry, inputs):
    dh, dc, grads = carry
    xs_k, dhs_k, h_k, c_k, k = inputs
    t0 = k * chunk
    (_, c_end), hs_k, (acts, cs_in) = _forward(
      p, w_x, w_h, b, xs_k, h_k, c_k, masked, t0, True, p.unroll
    )
    block = (xs_k, dhs_k, acts, cs_in, c_end, h_k, hs_k)
    (dh, dc), grads_k, dxs_k = _block_grads(
      p, w_x, w_ht, block, dh, dc, masked, t0
    )
    grads = tuple(a + g for a, g in zip(grads, grads_k, strict=True))
    return (dh, dc, grads), dxs_k

  (dh0, dc0, grads), dxs = lax.scan(
    run_chunk,
    (dh, dc, _zero_grads(w_x, w_h, b, acc)),
    (chunks, dhs, h_starts, c_starts, jnp.arange(count)),
    reverse=True,
  )
  dxs = dxs.reshape(-1, *dxs.shape[2:])[:time]
  return _cast_grads(w_x, w_h, b, xs, grads, dxs, dh0, dc0)


_run.defvjp(_run_fwd, _run_bwd)


# The entry point -----------------------------------------------------------


def _reverse_index(lengths: Array, time: int) -> Array:
  """[T, N] time index that reverses each sequence's first ``lengths``
  steps and leaves the padding in place; it is its own inverse."""
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
  p = plan(time, batch, unroll=unroll, remat=remat)

  # Batch dims broadcast right-aligned, behind the time axis.
  missing = len(batch_shape) - (xs.ndim - 2)
  xs = xs.reshape(time, *(1,) * missing, *xs.shape[1:])
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
