"""Trace-time argument checks with messages that name the argument.

Every check runs on shapes and dtypes only, so it costs nothing at run time
and fails before XLA sees a mismatched program.
"""

from __future__ import annotations

import operator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def positive_int(name: str, value: Any) -> int:
  """Returns ``value`` as an int, or raises if it is not a positive int."""
  try:
    as_int = operator.index(value)
  except TypeError:
    raise TypeError(
      f'{name} must be a positive int; got {value!r} of type '
      f'{type(value).__name__}'
    ) from None
  if as_int <= 0:
    raise ValueError(f'{name} must be a positive int; got {name}={value}')
  return as_int


def shape_tuple(name: str, value: Any) -> tuple[int, ...]:
  """Returns ``value`` as a tuple of non-negative ints, or raises."""
  try:
    dims = tuple(operator.index(d) for d in value)
  except TypeError:
    raise TypeError(f'{name} must be a tuple of ints; got {value!r}') from None
  if any(d < 0 for d in dims):
    raise ValueError(f'{name} must hold non-negative ints; got {dims}')
  return dims


def _shape(x: Any) -> tuple[int, ...] | None:
  return getattr(x, 'shape', None)


def floating(name: str, x: Any) -> None:
  """Raises TypeError unless ``x`` is a floating array."""
  dtype = getattr(x, 'dtype', None)
  if dtype is None:
    raise TypeError(f'{name} must be an array; got {type(x).__name__}')
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f'{name} must have a floating dtype; got {dtype}')


def check_params(name: str, params: Any) -> None:
  """Checks the fields of one cell's parameters against each other."""
  for field in ('w_x', 'w_h', 'b'):
    if not hasattr(params, field):
      raise TypeError(
        f'{name} must be LSTMParams with fields w_x, w_h, b; got '
        f'{type(params).__name__} without {field!r}'
      )
  w_x, w_h, b = params.w_x, params.w_h, params.b
  for field, value in (('w_x', w_x), ('w_h', w_h), ('b', b)):
    floating(f'{name}.{field}', value)
  if w_h.ndim != 2 or w_h.shape[1] % 4:
    raise ValueError(
      f'{name}.w_h must be [H, 4H]; got shape {tuple(w_h.shape)}'
    )
  gates = w_h.shape[1]
  if w_x.ndim != 2 or w_x.shape[1] != gates:
    raise ValueError(
      f'{name}.w_x must be [I, {gates}] to match {name}.w_h '
      f'{tuple(w_h.shape)}; got shape {tuple(w_x.shape)}'
    )
  if tuple(b.shape) != (gates,):
    raise ValueError(
      f'{name}.b must be [{gates}] to match {name}.w_h '
      f'{tuple(w_h.shape)}; got shape {tuple(b.shape)}'
    )
  check_variant_params(name, params)


def _check_field(name: str, value: Any, shape: tuple[int, ...], what: str):
  floating(name, value)
  if tuple(value.shape) != shape:
    raise ValueError(
      f'{name} must be {what} = {list(shape)}; got shape {tuple(value.shape)}'
    )


def check_variant_params(name: str, params: Any) -> None:
  """Checks the optional variant fields (peepholes, layer norm, projection).

  With a projection ``w_proj`` [H, P], ``w_h`` must be [P, 4H]; without
  one, [H, 4H].
  """
  gates = params.w_h.shape[1]
  hidden = gates // 4
  w_peep = getattr(params, 'w_peep', None)
  ln = getattr(params, 'ln', None)
  w_proj = getattr(params, 'w_proj', None)
  if w_peep is not None:
    _check_field(f'{name}.w_peep', w_peep, (3, hidden), '[3, H]')
  if ln is not None:
    for field, size, what in (
      ('scale_x', gates, '[4H]'),
      ('scale_h', gates, '[4H]'),
      ('scale_c', hidden, '[H]'),
      ('offset_c', hidden, '[H]'),
    ):
      _check_field(f'{name}.ln.{field}', getattr(ln, field), (size,), what)
  recurrent = hidden
  if w_proj is not None:
    floating(f'{name}.w_proj', w_proj)
    if w_proj.ndim != 2 or w_proj.shape[0] != hidden:
      raise ValueError(
        f'{name}.w_proj must be [H, P] with H={hidden}; got shape '
        f'{tuple(w_proj.shape)}'
      )
    recurrent = w_proj.shape[1]
  if params.w_h.shape[0] != recurrent:
    layout = '[P, 4H] with P from w_proj' if w_proj is not None else '[H, 4H]'
    raise ValueError(
      f'{name}.w_h must be {layout}, [{recurrent}, {gates}]; got shape '
      f'{tuple(params.w_h.shape)}'
    )


def check_input(name: str, x: Any, input_size: int, *, min_rank: int) -> None:
  """Checks that ``x`` is floating with trailing dim ``input_size``."""
  floating(name, x)
  if x.ndim < min_rank or x.shape[-1] != input_size:
    layout = '[I] or [..., I]' if min_rank == 1 else '[T, ..., I]'
    raise ValueError(
      f'{name} must be {layout} with I={input_size} (from params.w_x); '
      f'got shape {tuple(x.shape)}'
    )


def check_state(
  name: str, state: Any, hidden_size: int, *, output_size: int | None = None
) -> None:
  """Checks that ``state`` has ``h`` and ``c`` of the same [..., H] shape.

  With ``output_size`` P (a projected cell), ``h`` must be [..., P] and
  ``c`` [..., H] with the same batch dims.
  """
  if not (hasattr(state, 'h') and hasattr(state, 'c')):
    raise TypeError(
      f'{name} must be an LSTMState(h, c); got {type(state).__name__}'
    )
  floating(f'{name}.h', state.h)
  floating(f'{name}.c', state.c)
  if output_size is not None and output_size != hidden_size:
    h_shape, c_shape = _shape(state.h), _shape(state.c)
    if (
      len(h_shape) < 1
      or h_shape[-1] != output_size
      or len(c_shape) < 1
      or c_shape[-1] != hidden_size
      or h_shape[:-1] != c_shape[:-1]
    ):
      raise ValueError(
        f'{name}.h must be [..., P] with P={output_size} (from '
        f'params.w_proj) and {name}.c [..., H] with H={hidden_size}, same '
        f'batch dims; got shapes {tuple(h_shape)} and {tuple(c_shape)}'
      )
    return
  if _shape(state.h) != _shape(state.c):
    raise ValueError(
      f'{name}.h and {name}.c must have the same shape; got '
      f'{tuple(state.h.shape)} and {tuple(state.c.shape)}'
    )
  if state.h.ndim < 1 or state.h.shape[-1] != hidden_size:
    raise ValueError(
      f'{name}.h and {name}.c must be [..., H] with H={hidden_size} (from '
      f'params.w_h); got shape {tuple(state.h.shape)}'
    )


def broadcast_batch(
  name: str, batch_shape: tuple[int, ...], other: tuple[int, ...], what: str
) -> tuple[int, ...]:
  """Returns the broadcast of two batch shapes, or raises naming ``name``."""
  try:
    return tuple(np.broadcast_shapes(batch_shape, other))
  except ValueError:
    raise ValueError(
      f'{name} batch dims {batch_shape} do not broadcast against {what} '
      f'batch dims {other}'
    ) from None


def is_concrete(x: Any) -> bool:
  """True when ``x`` holds known values (not a tracer under jit or vmap)."""
  return not isinstance(x, jax.core.Tracer)


def check_lengths(lengths: Any, batch_shape: tuple[int, ...], time: int):
  """Validates ``lengths`` [...] and returns it as an int32 array.

  Concrete lengths outside [0, T] raise ValueError; traced ones are clamped
  into [0, T] since their values cannot be inspected.
  """
  if not hasattr(lengths, 'dtype'):
    lengths = np.asarray(lengths)
  if not jnp.issubdtype(lengths.dtype, jnp.integer):
    raise TypeError(f'lengths must have an integer dtype; got {lengths.dtype}')
  try:
    np.broadcast_shapes(tuple(lengths.shape), batch_shape)
    fits = tuple(lengths.shape) == batch_shape or np.broadcast_shapes(
      tuple(lengths.shape), batch_shape
    ) == tuple(batch_shape)
  except ValueError:
    fits = False
  if not fits:
    raise ValueError(
      f'lengths must have the batch shape of xs, {batch_shape} (or '
      f'broadcast to it); got shape {tuple(lengths.shape)}'
    )
  if is_concrete(lengths):
    values = np.asarray(lengths)
    if values.size and (values.min() < 0 or values.max() > time):
      raise ValueError(
        f'lengths must lie in [0, T] = [0, {time}]; got values from '
        f'{values.min()} to {values.max()}'
      )
  lengths = jnp.clip(jnp.asarray(lengths, jnp.int32), 0, time)
  return jnp.broadcast_to(lengths, batch_shape)
