"""Unrolling a cell over time with ``jax.lax.scan``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jlstm import _checks
from jlstm.cell import LSTMParams
from jlstm.cell import LSTMState
from jlstm.cell import apply_gates
from jlstm.cell import gate_preactivations
from jlstm.cell import state_dtype
from jlstm.cell import zero_state

Array = jax.Array


def _check_unroll_factor(unroll) -> int | bool:
  if unroll is True:
    return True
  if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
    raise ValueError(f'unroll must be a positive int or True; got {unroll!r}')
  return unroll


def prepare(params, xs, state, lengths):
  """Validates the arguments of an unroll and fills in the defaults.

  Returns:
    ``(state, lengths, batch_shape)`` with the state broadcast to the batch
    shape and cast to the state dtype, and ``lengths`` None or int32 [...].
  """
  _checks.check_params('params', params)
  input_size, hidden_size = params.input_size, params.hidden_size
  _checks.check_input('xs', xs, input_size, min_rank=2)
  batch_shape = tuple(xs.shape[1:-1])
  acc = state_dtype(params.w_h.dtype)

  if state is None:
    state = zero_state(hidden_size, batch_shape, acc)
  else:
    _checks.check_state('state', state, hidden_size)
    batch_shape = _checks.broadcast_batch(
      'xs', batch_shape, tuple(state.h.shape[:-1]), 'state'
    )
    full = (*batch_shape, hidden_size)
    state = LSTMState(
      h=jnp.broadcast_to(state.h.astype(acc), full),
      c=jnp.broadcast_to(state.c.astype(acc), full),
    )
  if lengths is not None:
    lengths = _checks.check_lengths(lengths, batch_shape, xs.shape[0])
  return state, lengths, batch_shape


def reverse_index(lengths: Array, time: int) -> Array:
  """[T, ...] time index that reverses each sequence's valid part.

  Position t < length maps to length - 1 - t; padding maps to itself. The
  map is its own inverse, so it both gathers the inputs and scatters the
  outputs back.
  """
  t = jnp.arange(time).reshape((time,) + (1,) * lengths.ndim)
  return jnp.where(t < lengths, lengths - 1 - t, t)


def take_time(xs: Array, index: Array) -> Array:
  """Gathers ``xs`` [T, ..., F] along time with ``index`` [T, ...]."""
  index = jnp.broadcast_to(index[..., None], index.shape + xs.shape[-1:])
  return jnp.take_along_axis(xs, index, axis=0)


def unroll(
  params: LSTMParams,
  xs: Array,
  state: LSTMState | None = None,
  *,
  lengths: Array | None = None,
  reverse: bool = False,
  unroll: int | bool = 1,
  remat: bool = False,
) -> tuple[LSTMState, Array]:
  """Runs the LSTM cell over a time-major sequence.

  Roughly equivalent Python::

    state = zero_state(H, batch_shape) if state is None else state
    hs = []
    for t in range(T):  # from T - 1 down to 0 when reverse
      if t < lengths:  # per sequence
        state = lstm_cell(params, state, xs[t])
        hs.append(state.h)
      else:
        hs.append(zeros)
    return state, stack(hs)

  Variable lengths: steps at or past a sequence's length leave its state
  unchanged and write zeros to ``hs``; gradients through those steps are
  exactly zero, and finite whatever the padding holds (NaN and inf
  included). With ``reverse=True`` each sequence runs from its last valid
  step back to step 0, and each output is written at its own time position.
  A length of 0 returns the initial state unchanged.

  Args:
    params: :class:`LSTMParams`, ``w_x`` [I, 4H], ``w_h`` [H, 4H], ``b``
      [4H].
    xs: [T, ..., I] time-major floating inputs.
    state: initial :class:`LSTMState`, [..., H] (its batch dims broadcast
      against those of ``xs``); zeros when None.
    lengths: optional int [...] valid lengths per sequence, in [0, T].
      Concrete values outside that range raise ``ValueError``; traced ones
      (under ``jit``) are clamped into it.
    reverse: run from the last step to the first.
    unroll: steps per ``lax.scan`` iteration (``True`` unrolls fully, which
      compiles slowly for long sequences).
    remat: recompute each step's gates in the backward pass instead of
      storing them (less memory, more compute).

  Returns:
    ``(final_state, hs)``: the :class:`LSTMState` after the last valid step,
    [..., H], and the outputs ``hs`` [T, ..., H]. Both are in the state
    dtype, float32 for bfloat16 parameters.

  Raises:
    ValueError: mismatched shapes or lengths out of range.
    TypeError: non-floating inputs or non-integer lengths.

  Example:
    >>> import jax, jax.numpy as jnp, jlstm
    >>> p = jlstm.init_params(jax.random.key(0), 300, 256)
    >>> xs = jnp.ones((10, 32, 300))
    >>> final, hs = jlstm.unroll(p, xs)
    >>> hs.shape, final.c.shape
    ((10, 32, 256), (32, 256))
  """
  unroll = _check_unroll_factor(unroll)
  state, lengths, _ = prepare(params, xs, state, lengths)
  time = xs.shape[0]
  acc = state.h.dtype

  def cell(carry, x):
    with jax.named_scope('lstm_cell'):
      return apply_gates(gate_preactivations(params, carry.h, x), carry.c)

  if lengths is None:

    def step(carry, x):
      new = cell(carry, x)
      return new, new.h

    if remat:
      step = jax.checkpoint(step)
    final, hs = jax.lax.scan(step, state, xs, reverse=reverse, unroll=unroll)
    return final, hs

  if reverse:
    index = reverse_index(lengths, time)
    xs = take_time(xs, index)

  def masked_step(carry, inputs):
    x, t = inputs
    valid = (t < lengths)[..., None]
    # Zero the padding before it enters the cell, so NaN or inf there can
    # reach neither the outputs nor the gradients.
    x = jnp.where(valid, x, jnp.zeros((), x.dtype))
    new = cell(carry, x)
    new = LSTMState(
      h=jnp.where(valid, new.h, carry.h), c=jnp.where(valid, new.c, carry.c)
    )
    return new, jnp.where(valid, new.h, jnp.zeros((), acc))

  if remat:
    masked_step = jax.checkpoint(masked_step)
  final, hs = jax.lax.scan(
    masked_step, state, (xs, jnp.arange(time)), unroll=unroll
  )
  if reverse:
    hs = take_time(hs, index)
  return final, hs
