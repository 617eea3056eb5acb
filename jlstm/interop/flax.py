"""Flax ``LSTMCell`` and ``OptimizedLSTMCell`` parameters, linen and NNX.

Flax has two layouts, both with gate order i, f, g, o and one bias per
gate on the recurrent side:

* per gate (linen ``LSTMCell`` and ``OptimizedLSTMCell``, NNX
  ``LSTMCell``): input kernels ``ii``, ``if``, ``ig``, ``io`` [I, H]
  without bias and recurrent ``hi``, ``hf``, ``hg``, ``ho`` with
  ``kernel`` [H, H] and ``bias`` [H]. NNX names the forget kernel ``if_``
  (``if`` is a Python keyword).
* fused (NNX ``OptimizedLSTMCell``): ``dense_i`` ``kernel`` [I, 4H] and
  ``dense_h`` ``kernel`` [H, 4H], ``bias`` [4H]: exactly ``w_x``, ``w_h``
  and ``b``.

Flax carries ``(c, h)``, cell state first; jlstm's
:class:`~jlstm.LSTMState` names its fields instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jlstm.cell import GATE_ORDER
from jlstm.cell import LSTMParams
from jlstm.cell import LSTMState
from jlstm.interop import _util

#: The layouts :func:`to_flax` writes.
FLAX_LAYOUTS = ('linen', 'nnx', 'nnx_optimized')

_WRAPPERS = ('params', 'cell')


def _plain(tree: Any) -> Any:
  """Turns an NNX module or state into nested dicts of arrays."""
  if not isinstance(tree, Mapping):
    if hasattr(tree, 'ii') or hasattr(tree, 'dense_i'):
      from flax import nnx  # only reached for an NNX module

      tree = nnx.state(tree, nnx.Param)
    else:
      raise TypeError(
        'tree must be a Flax parameter tree (a mapping) or an NNX LSTM '
        f'cell; got {type(tree).__name__}'
      )
  return {
    str(key): _plain(value) if isinstance(value, Mapping) else value
    for key, value in tree.items()
  }


def from_flax(tree: Any) -> LSTMParams:
  """Imports Flax LSTM cell parameters, linen or NNX.

  Args:
    tree: one of

      * linen variables or params of ``LSTMCell`` / ``OptimizedLSTMCell``
        (``{'params': {'ii': ..., 'hi': ...}}``), also wrapped in
        ``nn.RNN`` (``{'params': {'cell': ...}}``);
      * an NNX ``LSTMCell`` or ``OptimizedLSTMCell``, its
        ``nnx.state(...)``, or ``nnx.to_pure_dict`` of it.

  Returns:
    :class:`~jlstm.LSTMParams` with ``w_x`` [I, 4H], ``w_h`` [H, 4H], ``b``
    [4H].

  Raises:
    KeyError: a kernel or bias is missing (named). ValueError: a shape
      does not match, or an unexpected key (e.g. an input bias).

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, jlstm
    >>> carry = (jnp.zeros(5), jnp.zeros(5))
    >>> variables = nn.LSTMCell(5).init(jax.random.key(0), carry, jnp.ones(3))
    >>> jlstm.interop.from_flax(variables).w_x.shape
    (3, 20)
  """
  tree = _plain(tree)
  path = ''
  while len(tree) == 1 and next(iter(tree)) in _WRAPPERS:
    key = next(iter(tree))
    tree, path = tree[key], f'{path}{key}/'
  if 'dense_i' in tree or 'dense_h' in tree:
    return _from_fused(tree, path)
  return _from_per_gate(tree, path)


def _leaf(
  tree: Mapping, module: str, param: str, path: str, has_bias: bool
) -> jax.Array:
  """Returns ``tree[module][param]``, naming the key when it is missing."""
  sub = _util.lookup(tree, module, f'tree[{path!r}]')
  if not isinstance(sub, Mapping):
    raise TypeError(
      f'{path}{module} must hold kernel/bias; got {type(sub).__name__}'
    )
  allowed = ('kernel', 'bias') if has_bias else ('kernel',)
  _util.check_unexpected(
    sub, allowed, f'{path}{module}', f'Flax keeps only {allowed} there'
  )
  return _util.as_array(_util.lookup(sub, param, f'{path}{module}'))


def _gate_count(name: str, w_h: jax.Array) -> int:
  """Checks a fused [H, 4H] recurrent kernel; returns 4H."""
  _util.check_matrix(name, w_h, '[H, 4H]')
  rows, cols = w_h.shape
  if 4 * rows != cols:
    raise ValueError(f'{name} must be [H, 4H]; got shape {w_h.shape}')
  return cols


def _from_fused(tree: Mapping, path: str) -> LSTMParams:
  _util.check_unexpected(
    tree,
    ('dense_i', 'dense_h'),
    f'tree[{path!r}]',
    'an NNX OptimizedLSTMCell has dense_i and dense_h',
  )
  w_h = _leaf(tree, 'dense_h', 'kernel', path, has_bias=True)
  gates = _gate_count(f'{path}dense_h/kernel', w_h)
  w_x = _leaf(tree, 'dense_i', 'kernel', path, has_bias=False)
  _util.check_matrix(f'{path}dense_i/kernel', w_x, '[I, 4H]')
  _util.check_shape(f'{path}dense_i/kernel', w_x, (w_x.shape[0], gates))
  b = _leaf(tree, 'dense_h', 'bias', path, has_bias=True)
  _util.check_shape(f'{path}dense_h/bias', b, (gates,))
  return LSTMParams(w_x=w_x, w_h=w_h, b=b)


def _from_per_gate(tree: Mapping, path: str) -> LSTMParams:
  inputs = {gate: f'i{gate}' for gate in GATE_ORDER}
  inputs['f'] = 'if_' if 'if_' in tree else 'if'
  recurrent = {gate: f'h{gate}' for gate in GATE_ORDER}
  _util.check_unexpected(
    tree,
    [*inputs.values(), *recurrent.values()],
    f'tree[{path!r}]',
    'a Flax LSTMCell has ii, if (NNX: if_), ig, io, hi, hf, hg, ho',
  )
  w_hi = _leaf(tree, 'hi', 'kernel', path, has_bias=True)
  _util.check_matrix(f'{path}hi/kernel', w_hi, '[H, H]')
  hidden = w_hi.shape[1]
  w_ii = _leaf(tree, 'ii', 'kernel', path, has_bias=False)
  _util.check_matrix(f'{path}ii/kernel', w_ii, '[I, H]')
  input_size = w_ii.shape[0]

  w_x, w_h, b = [], [], []
  for gate in GATE_ORDER:
    name = inputs[gate]
    w_x.append(_leaf(tree, name, 'kernel', path, has_bias=False))
    _util.check_shape(f'{path}{name}/kernel', w_x[-1], (input_size, hidden))
    name = recurrent[gate]
    w_h.append(_leaf(tree, name, 'kernel', path, has_bias=True))
    _util.check_shape(f'{path}{name}/kernel', w_h[-1], (hidden, hidden))
    b.append(_leaf(tree, name, 'bias', path, has_bias=True))
    _util.check_shape(f'{path}{name}/bias', b[-1], (hidden,))
  return LSTMParams(
    w_x=jnp.concatenate(w_x, axis=-1),
    w_h=jnp.concatenate(w_h, axis=-1),
    b=jnp.concatenate(b, axis=-1),
  )


def to_flax(params: LSTMParams, *, layout: str = 'linen') -> dict[str, Any]:
  """Exports :class:`~jlstm.LSTMParams` as a Flax parameter tree.

  Args:
    params: ``w_x`` [I, 4H], ``w_h`` [H, 4H], ``b`` [4H], without variant
      fields.
    layout: one of :data:`FLAX_LAYOUTS`:

      * ``'linen'``: variables ``{'params': {'ii': ..., 'hi': ...}}`` for
        ``cell.apply`` of a linen ``LSTMCell`` or ``OptimizedLSTMCell``
        (wrap the inner dict as ``{'params': {'cell': ...}}`` for
        ``nn.RNN``);
      * ``'nnx'``: a pure dict for an NNX ``LSTMCell``, loaded with
        ``nnx.update(cell, tree)``;
      * ``'nnx_optimized'``: the same for an NNX ``OptimizedLSTMCell``.

  Returns:
    Nested dicts of arrays.

  Raises:
    ValueError: an unknown layout, or a variant field (Flax's cells have
      no peepholes, layer norm or projection).

  Example:
    >>> import jax, jlstm
    >>> p = jlstm.init_params(jax.random.key(0), 3, 5)
    >>> tree = jlstm.interop.to_flax(p)
    >>> tree['params']['hf']['bias'].shape
    (5,)
  """
  if layout not in FLAX_LAYOUTS:
    raise ValueError(
      f'layout must be one of {FLAX_LAYOUTS}; got layout={layout!r}'
    )
  _util.check_cell('params', params, 'Flax LSTMCell')
  if layout == 'nnx_optimized':
    return {
      'dense_i': {'kernel': params.w_x},
      'dense_h': {'kernel': params.w_h, 'bias': params.b},
    }
  w_x, w_h, b = (
    jnp.split(a, 4, axis=-1) for a in (params.w_x, params.w_h, params.b)
  )
  forget = 'if_' if layout == 'nnx' else 'if'
  tree = {}
  for k, gate in enumerate(GATE_ORDER):
    tree[forget if gate == 'f' else f'i{gate}'] = {'kernel': w_x[k]}
    tree[f'h{gate}'] = {'kernel': w_h[k], 'bias': b[k]}
  return {'params': tree} if layout == 'linen' else tree


def from_flax_carry(carry: Any) -> LSTMState:
  """Imports Flax's ``(c, h)`` carry as :class:`~jlstm.LSTMState`.

  Example:
    >>> import jax.numpy as jnp, jlstm
    >>> state = jlstm.interop.from_flax_carry((jnp.ones(5), jnp.zeros(5)))
    >>> float(state.c[0]), float(state.h[0])
    (1.0, 0.0)
  """
  c, h = _util.pair(carry, 'carry', '(c, h)')
  return LSTMState(h=h, c=c)


def to_flax_carry(state: LSTMState) -> tuple[jax.Array, jax.Array]:
  """Exports :class:`~jlstm.LSTMState` as Flax's ``(c, h)`` carry.

  Example:
    >>> import jlstm
    >>> c, h = jlstm.interop.to_flax_carry(jlstm.zero_state(5))
    >>> c.shape
    (5,)
  """
  return (state.c, state.h)
