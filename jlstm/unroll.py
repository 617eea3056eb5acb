"""Unrolling a cell over time with ``jax.lax.scan``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jlstm import _checks
from jlstm import _fused
from jlstm.cell import LSTMParams
from jlstm.cell import LSTMState
from jlstm.cell import apply_gates
from jlstm.cell import cell_update
from jlstm.cell import check_options
from jlstm.cell import check_rate
from jlstm.cell import dropout_mask
from jlstm.cell import gate_preactivations
from jlstm.cell import is_plain_step
from jlstm.cell import state_dtype
from jlstm.cell import zero_state
from jlstm.cell import zoneout

Array = jax.Array


def _check_unroll_factor(unroll) -> int | bool:
  if unroll is True:
    return True
  if isinstance(unroll, bool | np.bool_):
    raise ValueError(f'unroll must be a positive int or True; got {unroll!r}')
  # Any integer type (np.int64 from a config too) is a count of steps.
  return _checks.positive_int('unroll', unroll)


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

  output_size = params.output_size
  if state is None:
    state = zero_state(hidden_size, batch_shape, acc, output_size=output_size)
  else:
    _checks.check_state('state', state, hidden_size, output_size=output_size)
    batch_shape = _checks.broadcast_batch(
      'xs', batch_shape, tuple(state.h.shape[:-1]), 'state'
    )
    state = LSTMState(
      h=jnp.broadcast_to(state.h.astype(acc), (*batch_shape, output_size)),
      c=jnp.broadcast_to(state.c.astype(acc), (*batch_shape, hidden_size)),
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
  # The state may widen the batch: xs [T, I] with a [B, H] state gives a
  # [T, B] index. Right-align the batch dims of xs and broadcast.
  missing = index.ndim - (xs.ndim - 1)
  xs = xs.reshape(xs.shape[:1] + (1,) * missing + xs.shape[1:])
  xs = jnp.broadcast_to(xs, index.shape + xs.shape[-1:])
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
  impl: str = 'auto',
  resets: Array | None = None,
  forget_bias: float = 0.0,
  cell_clip: float | None = None,
  proj_clip: float | None = None,
  coupled: bool = False,
  input_dropout: float = 0.0,
  recurrent_dropout: float = 0.0,
  zoneout_cell: float = 0.0,
  zoneout_hidden: float = 0.0,
  key: Array | None = None,
  training: bool = True,
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

  Resets: where ``resets[t]`` is true, that sequence's state returns to its
  initial ``state`` before step t, so one row can hold several episodes
  back to back. With ``reverse=True`` an episode that starts at step t ends
  the backward pass's episode, so the state is reset before step t - 1
  instead. Resets in the padding are ignored.

  Regularisation, in training: ``input_dropout`` and ``recurrent_dropout``
  draw one mask per sequence for ``x`` and for ``h`` on its way into the
  gates and reuse it at every step (variational dropout, Gal and
  Ghahramani 2016); zoneout draws afresh at every step (see
  :func:`~jlstm.zoneout`). With ``training=False`` dropout is off and
  zoneout takes its expectation.

  Args:
    params: :class:`LSTMParams`, ``w_x`` [I, 4H], ``w_h`` [H, 4H], ``b``
      [4H], and optional variant fields (see :func:`~jlstm.lstm_cell`).
    xs: [T, ..., I] time-major floating inputs.
    state: initial :class:`LSTMState`, ``h`` [..., H] (or [..., P] with a
      projection), ``c`` [..., H] (its batch dims broadcast against those
      of ``xs``); zeros when None.
    lengths: optional int [...] valid lengths per sequence, in [0, T].
      Concrete values outside that range raise ``ValueError``; traced ones
      (under ``jit``) are clamped into it.
    reverse: run from the last step to the first.
    unroll: steps per ``lax.scan`` iteration (``True`` unrolls fully, which
      compiles slowly for long sequences).
    remat: recompute each step's gates in the backward pass instead of
      storing them (less memory, more compute).
    impl: ``'auto'`` runs the plain cell through a fused unroll with a
      hand-written backward pass (weight gradients as a few large matmuls
      after the loop) and everything else through ``lax.scan``;
      ``'scan'`` always takes the scan, which also supports forward-mode
      autodiff (``jax.jvp``, ``jax.jacfwd``) under ``jit``; ``'fused'``
      insists on the fused unroll.
    resets: optional bool [T, ...] per-step, per-sequence reset mask.
    forget_bias: number added to the forget gate at run time.
    cell_clip: positive bound on the cell state, or None.
    proj_clip: positive bound on the projected output, or None.
    coupled: couple the input gate to the forget gate (CIFG).
    input_dropout: variational dropout rate on the inputs, in [0, 1).
    recurrent_dropout: variational dropout rate on the recurrent ``h``.
    zoneout_cell: zoneout probability of ``c``, in [0, 1).
    zoneout_hidden: zoneout probability of ``h``, in [0, 1).
    key: PRNG key; needed in training when a rate is > 0.
    training: apply dropout and random zoneout.

  Returns:
    ``(final_state, hs)``: the :class:`LSTMState` after the last valid step,
    and the outputs ``hs`` [T, ..., H] (or [T, ..., P]). Both are in the
    state dtype, float32 for bfloat16 parameters.

  Raises:
    ValueError: mismatched shapes, lengths out of range, options out of
      range, or a rate > 0 in training without a key.
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
  _fused.check_impl(impl)
  options = dict(
    forget_bias=forget_bias,
    cell_clip=cell_clip,
    proj_clip=proj_clip,
    coupled=coupled,
  )
  rates = dict(
    input_dropout=input_dropout,
    recurrent_dropout=recurrent_dropout,
    zoneout_cell=zoneout_cell,
    zoneout_hidden=zoneout_hidden,
  )
  for name, rate in rates.items():
    check_rate(name, rate)
  dropout_on = training and (input_dropout > 0 or recurrent_dropout > 0)
  zoneout_on = zoneout_cell > 0 or zoneout_hidden > 0
  if (
    resets is not None
    or dropout_on
    or zoneout_on
    or not is_plain_step(params, **options)
  ):
    _fused.check_impl(impl, plain=False)
    return _unroll_variant(
      params,
      xs,
      state,
      lengths=lengths,
      reverse=reverse,
      unroll=unroll,
      remat=remat,
      resets=resets,
      options=options,
      rates=rates,
      key=key,
      training=training,
    )

  state, lengths, _ = prepare(params, xs, state, lengths)
  if _fused.wanted(impl, params, xs, state):
    return _fused.unroll(
      params,
      xs,
      state,
      lengths=lengths,
      reverse=reverse,
      unroll=unroll,
      remat=remat,
    )
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


def _check_resets(resets, time: int, batch_shape: tuple[int, ...]) -> Array:
  """Validates ``resets`` [T, ...] and returns it as bool [T, *batch]."""
  if not hasattr(resets, 'dtype'):
    resets = jnp.asarray(resets)
  if resets.dtype != jnp.bool_:
    raise TypeError(f'resets must be a bool array; got dtype {resets.dtype}')
  full = (time, *batch_shape)
  try:
    fits = np.broadcast_shapes(tuple(resets.shape), full) == full
  except ValueError:
    fits = False
  if not fits or resets.ndim < 1 or resets.shape[0] != time:
    raise ValueError(
      f'resets must be [T, ...] = {list(full)} (or broadcast to it); got '
      f'shape {tuple(resets.shape)}'
    )
  return jnp.broadcast_to(resets, full)


def _unroll_variant(
  params,
  xs,
  state,
  *,
  lengths,
  reverse,
  unroll,
  remat,
  resets,
  options,
  rates,
  key,
  training,
):
  """:func:`unroll` for variant cells, options, resets and regularisation.

  Every sequence runs through a masked scan: reverse runs gather each
  sequence's valid part backwards, as the plain path does with lengths.
  """
  check_options(
    params, cell_clip=options['cell_clip'], proj_clip=options['proj_clip']
  )
  state, lengths, batch_shape = prepare(params, xs, state, lengths)
  time = xs.shape[0]
  acc = state.h.dtype
  initial = state
  if resets is not None:
    resets = _check_resets(resets, time, batch_shape)
  if reverse and lengths is None:
    lengths = jnp.full(batch_shape, time, jnp.int32)

  training_rates = training and any(r > 0 for r in rates.values())
  if training_rates and key is None:
    named = ', '.join(f'{k}={v}' for k, v in rates.items() if v > 0)
    raise ValueError(
      f'{named} in training needs a PRNG key; pass key=... or training=False'
    )
  k_input, k_recurrent, k_zoneout = (
    jax.random.split(key, 3) if training_rates else (None, None, None)
  )
  input_mask = recurrent_mask = None
  if training and rates['input_dropout'] > 0:
    input_mask = dropout_mask(
      k_input,
      rates['input_dropout'],
      (*batch_shape, params.input_size),
      xs.dtype,
    )
  if training and rates['recurrent_dropout'] > 0:
    recurrent_mask = dropout_mask(
      k_recurrent,
      rates['recurrent_dropout'],
      (*batch_shape, params.output_size),
      acc,
    )

  if reverse:
    index = reverse_index(lengths, time)
    xs = take_time(xs, index)
    if resets is not None:
      # Going backwards, the step before an episode's first step is the
      # last of the previous episode, where the backward state restarts.
      t = jnp.arange(time).reshape((time,) + (1,) * len(batch_shape))
      shifted = jnp.concatenate([resets[1:], jnp.zeros_like(resets[:1])])
      shifted = shifted & (t + 1 < lengths)
      resets = take_time(shifted[..., None], index)[..., 0]

  def step(carry, inputs):
    x, t, reset = inputs
    previous = carry
    if reset is not None:
      r = reset[..., None]
      previous = LSTMState(
        h=jnp.where(r, initial.h, carry.h), c=jnp.where(r, initial.c, carry.c)
      )
    if lengths is not None:
      valid = (t < lengths)[..., None]
      # As in the plain path: padding never enters the cell.
      x = jnp.where(valid, x, jnp.zeros((), x.dtype))
    if input_mask is not None:
      x = x * input_mask
    h_in = previous.h
    if recurrent_mask is not None:
      h_in = h_in * recurrent_mask
    with jax.named_scope('lstm_cell'):
      new = cell_update(params, h_in, previous.c, x, **options)
    new = zoneout(
      previous,
      new,
      cell_rate=rates['zoneout_cell'],
      hidden_rate=rates['zoneout_hidden'],
      key=None if k_zoneout is None else jax.random.fold_in(k_zoneout, t),
      training=training,
    )
    if lengths is None:
      return new, new.h
    new = LSTMState(
      h=jnp.where(valid, new.h, carry.h), c=jnp.where(valid, new.c, carry.c)
    )
    return new, jnp.where(valid, new.h, jnp.zeros((), acc))

  if remat:
    step = jax.checkpoint(step)
  final, hs = jax.lax.scan(
    step, state, (xs, jnp.arange(time), resets), unroll=unroll
  )
  if reverse:
    hs = take_time(hs, index)
  return final, hs
