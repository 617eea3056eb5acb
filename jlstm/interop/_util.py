"""Helpers shared by the converters: array intake, key and shape checks.

Converters build their results with ``jnp`` operations only, so an import
(``from_X``) can also run on traced values, e.g. to pull a gradient back
into another framework's layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jlstm.cell import GATE_ORDER
from jlstm.cell import LSTMParams


def as_array(value: Any) -> jax.Array:
  """Returns ``value`` as a JAX array, keeping its dtype.

  Accepts JAX and NumPy arrays, PyTorch tensors (detached and copied to the
  host), and framework variables that wrap an array (Flax NNX, Keras).
  """
  if isinstance(value, jax.Array | np.ndarray):
    return jnp.asarray(value)
  if type(value).__module__.startswith('torch') and hasattr(value, 'detach'):
    return _torch_to_jax(value)
  if hasattr(value, 'get_value'):
    # Flax NNX variables; ``.value`` is deprecated there.
    return as_array(value.get_value())
  if hasattr(value, 'value'):
    # Keras variables and older NNX variables.
    return as_array(value.value)
  return jnp.asarray(value)


def _torch_to_jax(tensor: Any) -> jax.Array:
  import torch  # only reached when a tensor is given

  tensor = tensor.detach().cpu()
  if tensor.dtype == torch.bfloat16:
    # NumPy has no bfloat16; go through float32, which holds it exactly.
    return jnp.asarray(tensor.float().numpy(), jnp.bfloat16)
  return jnp.asarray(tensor.numpy())


def pair(value: Any, name: str, layout: str) -> tuple[jax.Array, jax.Array]:
  """Unpacks a two-array state such as ``(c, h)``, converting each array."""
  if isinstance(value, Mapping) or not hasattr(value, '__len__'):
    raise TypeError(
      f'{name} must be a pair {layout}; got {type(value).__name__}'
    )
  if len(value) != 2:
    raise ValueError(f'{name} must be a pair {layout}; got {len(value)} items')
  first, second = value
  return as_array(first), as_array(second)


def lookup(mapping: Mapping, key: str, what: str) -> Any:
  """Returns ``mapping[key]`` or raises a KeyError that names the key."""
  if key not in mapping:
    keys = sorted(str(k) for k in mapping)
    shown = ', '.join(keys[:12]) + (', ...' if len(keys) > 12 else '')
    raise KeyError(f'{what} is missing the key {key!r}; it has: {shown}')
  return mapping[key]


def check_shape(name: str, value: jax.Array, shape: tuple[int, ...]) -> None:
  """Raises a ValueError naming ``name`` unless ``value`` has ``shape``."""
  if tuple(value.shape) != tuple(shape):
    raise ValueError(
      f'{name} must have shape {tuple(shape)}; got {tuple(value.shape)}'
    )


def check_matrix(name: str, value: jax.Array, layout: str) -> None:
  """Raises unless ``value`` is a floating matrix; ``layout`` is shown."""
  if not jnp.issubdtype(value.dtype, jnp.floating):
    raise TypeError(f'{name} must have a floating dtype; got {value.dtype}')
  if value.ndim != 2:
    raise ValueError(
      f'{name} must be a {layout} matrix; got shape {tuple(value.shape)}'
    )


def check_unexpected(keys: Any, allowed: Any, what: str, hint: str) -> None:
  """Raises a ValueError naming keys of ``what`` outside ``allowed``."""
  extra = sorted(set(keys) - set(allowed))
  if extra:
    raise ValueError(f'{what} has unexpected key(s) {extra}: {hint}')


def require_zero(name: str, value: Any, why: str) -> None:
  """Raises a ValueError unless the concrete ``value`` is all zeros."""
  values = np.asarray(value, np.float64)
  if np.any(values != 0.0):
    raise ValueError(
      f'{name} must be all zeros {why}; got max |value| = '
      f'{np.max(np.abs(values)):.3g}'
    )


def reorder_gates(
  array: jax.Array, source: Sequence[str], target: Sequence[str]
) -> jax.Array:
  """Permutes the gate blocks of the last axis from ``source`` order.

  Args:
    array: [..., 4H] with blocks in the order ``source``.
    source: the order of the blocks in ``array``, jlstm gate letters.
    target: the order wanted.

  Returns:
    [..., 4H] with blocks in the order ``target``.
  """
  blocks = dict(zip(source, jnp.split(array, 4, axis=-1), strict=True))
  return jnp.concatenate([blocks[gate] for gate in target], axis=-1)


def shift_forget(b: jax.Array, delta: float) -> jax.Array:
  """Adds ``delta`` to the forget block of ``b`` [4H] in :data:`GATE_ORDER`.

  Concrete values are summed in float64 and rounded once to ``b``'s dtype,
  so a shift and its inverse differ from the identity by at most one
  rounding at the scale of max(|b|, |delta|).
  """
  if delta == 0.0:
    return b
  hidden = b.shape[-1] // 4
  k = GATE_ORDER.index('f')
  offset = np.zeros(b.shape[-1], np.float64)
  offset[k * hidden : (k + 1) * hidden] = delta
  if isinstance(b, jax.core.Tracer):
    return b + jnp.asarray(offset, b.dtype)
  shifted = np.asarray(b, np.float64) + offset
  return jnp.asarray(shifted.astype(np.dtype(b.dtype)))


_VARIANT_NAMES = {
  'w_peep': 'peepholes',
  'ln': 'layer normalisation',
  'w_proj': 'projection',
}


def check_cell(
  name: str, params: Any, target: str, variants: tuple[str, ...] = ()
) -> tuple[int, int, int | None]:
  """Checks one cell's parameters for export to ``target``.

  Args:
    name: how the parameters are named in messages, e.g. ``'params'``.
    params: the :class:`~jlstm.LSTMParams` to check.
    target: the format, named in messages, e.g. ``'PyTorch nn.LSTM'``.
    variants: the variant fields ``target`` can hold.

  Returns:
    ``(I, H, P)`` with P None when the cell has no projection.

  Raises:
    TypeError: not LSTMParams. ValueError: a variant ``target`` cannot
      hold, or shapes that do not agree.
  """
  if not isinstance(params, LSTMParams):
    raise TypeError(f'{name} must be LSTMParams; got {type(params).__name__}')
  for field, what in _VARIANT_NAMES.items():
    if getattr(params, field) is not None and field not in variants:
      raise ValueError(
        f'{target} has no {what}; {name}.{field} must be None to export'
      )
  w_x, w_h, b = (jnp.asarray(a) for a in (params.w_x, params.w_h, params.b))
  check_matrix(f'{name}.w_x', w_x, '[I, 4H]')
  check_matrix(f'{name}.w_h', w_h, '[H_out, 4H]')
  gates = w_h.shape[1]
  if gates % 4:
    raise ValueError(
      f'{name}.w_h must be [H_out, 4H]; got shape {tuple(w_h.shape)}'
    )
  hidden = gates // 4
  out = hidden
  if params.w_proj is not None:
    w_proj = jnp.asarray(params.w_proj)
    check_matrix(f'{name}.w_proj', w_proj, '[H, P]')
    check_shape(f'{name}.w_proj', w_proj, (hidden, w_proj.shape[1]))
    out = w_proj.shape[1]
  check_shape(f'{name}.w_h', w_h, (out, gates))
  check_shape(f'{name}.w_x', w_x, (w_x.shape[0], gates))
  check_shape(f'{name}.b', b, (gates,))
  if params.w_peep is not None:
    check_shape(f'{name}.w_peep', jnp.asarray(params.w_peep), (3, hidden))
  return w_x.shape[0], hidden, None if params.w_proj is None else out
