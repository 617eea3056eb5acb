"""PyTorch ``nn.LSTM`` and ``nn.LSTMCell`` state dicts.

PyTorch stores the transposes of jlstm's matrices, in the same gate order
(i, f, g, o), and two biases whose sum is the gate bias:

============================  ================================  ==========
PyTorch key                   shape                             jlstm
============================  ================================  ==========
``weight_ih_l{k}{sfx}``       [4H, I] (layer 0), [4H, D*H_out]  ``w_x.T``
``weight_hh_l{k}{sfx}``       [4H, H_out]                       ``w_h.T``
``bias_ih_l{k}{sfx}``         [4H]                              ``b`` (all)
``bias_hh_l{k}{sfx}``         [4H]                              zeros
``weight_hr_l{k}{sfx}``       [P, H] (``proj_size`` only)       ``w_proj.T``
============================  ================================  ==========

``sfx`` is ``''`` for the forward and ``'_reverse'`` for the backward
direction, D is 2 for a bidirectional LSTM, and H_out is ``proj_size`` or
H. ``nn.LSTMCell`` uses the same names without ``_l{k}{sfx}``. On import
the two biases are summed; on export the whole bias goes to ``bias_ih``
and ``bias_hh`` is zero, which gives the same gates. Stack parameters are
``params[layer][direction]``, as :func:`jlstm.unroll_stack` takes them,
with PyTorch's semantics (``batch_first`` only moves the batch axis of the
inputs: jlstm is time-major).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jlstm.cell import LSTMParams
from jlstm.cell import LSTMState
from jlstm.interop import _util
from jlstm.layers import check_stack

_CELL_KEYS = ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh')
_STACK_KEY = re.compile(
  r'^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$'
)
_SUFFIXES = ('', '_reverse')
_TARGET = 'PyTorch nn.LSTM'


def _strip(state_dict: Any, prefix: str) -> dict[str, Any]:
  if hasattr(state_dict, 'state_dict') and not isinstance(state_dict, Mapping):
    state_dict = state_dict.state_dict()
  if not isinstance(state_dict, Mapping):
    raise TypeError(
      'state_dict must be a mapping of parameter names to tensors (or an '
      f'nn.LSTM / nn.LSTMCell); got {type(state_dict).__name__}'
    )
  found = {
    key[len(prefix) :]: value
    for key, value in state_dict.items()
    if key.startswith(prefix)
  }
  if not found:
    raise KeyError(
      f'state_dict has no key starting with prefix={prefix!r}; it has: '
      f'{sorted(state_dict)[:12]}'
    )
  return found


def _getter(sd: dict[str, Any], prefix: str):
  """Returns ``get(key)``: the array under ``key``, or a KeyError naming it."""
  what = f'state_dict (prefix={prefix!r})'
  return lambda key: _util.as_array(_util.lookup(sd, key, what))


def _check_recurrent(name: str, weight_hh: jax.Array, has_proj: bool) -> int:
  """Checks ``weight_hh`` [4H, H] (or [4H, P]); returns 4H."""
  _util.check_matrix(name, weight_hh, '[4H, H_out]')
  gates, cols = weight_hh.shape
  if gates % 4 or (not has_proj and gates != 4 * cols):
    raise ValueError(
      f'{name} must be [4H, {"P" if has_proj else "H"}]; got shape '
      f'{tuple(weight_hh.shape)} (an nn.GRU or nn.RNN has 3H or H rows)'
    )
  return gates


def _bias(sd, name, prefix, gates, dtype, *, has_bias):
  """``bias_ih + bias_hh`` of one cell, or zeros for ``bias=False``."""
  if not has_bias:
    return jnp.zeros((gates,), dtype)
  get = _getter(sd, prefix)
  bias_ih, bias_hh = get('bias_ih' + name), get('bias_hh' + name)
  _util.check_shape(f'{prefix}bias_ih{name}', bias_ih, (gates,))
  _util.check_shape(f'{prefix}bias_hh{name}', bias_hh, (gates,))
  return bias_ih + bias_hh


def _from_cell(sd: dict[str, Any], prefix: str) -> LSTMParams:
  _util.check_unexpected(
    sd, _CELL_KEYS, 'state_dict', 'nn.LSTMCell has ' + ', '.join(_CELL_KEYS)
  )
  get = _getter(sd, prefix)
  weight_ih, weight_hh = get('weight_ih'), get('weight_hh')
  gates = _check_recurrent(prefix + 'weight_hh', weight_hh, has_proj=False)
  _util.check_matrix(prefix + 'weight_ih', weight_ih, '[4H, I]')
  _util.check_shape(
    prefix + 'weight_ih', weight_ih, (gates, weight_ih.shape[1])
  )
  # Either bias alone is a damaged dict; _bias then names the missing one.
  has_bias = 'bias_ih' in sd or 'bias_hh' in sd
  b = _bias(sd, '', prefix, gates, weight_hh.dtype, has_bias=has_bias)
  return LSTMParams(w_x=weight_ih.T, w_h=weight_hh.T, b=b)


def _from_stack(sd: dict[str, Any], prefix: str):
  layers = set()
  for key in sd:
    match = _STACK_KEY.match(key)
    if match is None:
      raise ValueError(
        f'state_dict has unexpected key {prefix + key!r}: nn.LSTM keys are '
        'weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k} and '
        "weight_hr_l{k} (proj_size), with '_reverse' for the backward "
        'direction'
      )
    layers.add(int(match.group(2)))
  num_layers = max(layers) + 1
  directions = 2 if any(key.endswith('_reverse') for key in sd) else 1
  has_bias = 'bias_ih_l0' in sd or 'bias_hh_l0' in sd
  has_proj = 'weight_hr_l0' in sd
  # Options hold for the whole module: a key of layer k > 0 without its
  # layer-0 twin means a mixed or hand-edited dict.
  for stem, present, option in (
    ('bias_', has_bias, 'bias'),
    ('weight_hr_', has_proj, 'proj_size'),
  ):
    stray = sorted(k for k in sd if k.startswith(stem))
    if stray and not present:
      raise KeyError(
        f'state_dict has {prefix + stray[0]!r} but no {prefix + stem}l0 '
        f'keys: nn.LSTM sets {option} for every layer'
      )
  get = _getter(sd, prefix)

  weight_hh = get('weight_hh_l0')
  gates = _check_recurrent(prefix + 'weight_hh_l0', weight_hh, has_proj)
  hidden = gates // 4
  out = weight_hh.shape[1]

  params = []
  for layer in range(num_layers):
    layer_params = []
    for suffix in _SUFFIXES[:directions]:
      name = f'_l{layer}{suffix}'
      weight_ih, weight_hh = get('weight_ih' + name), get('weight_hh' + name)
      input_size = weight_ih.shape[-1] if layer == 0 else directions * out
      _util.check_matrix(prefix + 'weight_ih' + name, weight_ih, '[4H, I]')
      _util.check_shape(
        prefix + 'weight_ih' + name, weight_ih, (gates, input_size)
      )
      _util.check_shape(prefix + 'weight_hh' + name, weight_hh, (gates, out))
      b = _bias(sd, name, prefix, gates, weight_hh.dtype, has_bias=has_bias)
      w_proj = None
      if has_proj:
        weight_hr = get('weight_hr' + name)
        _util.check_shape(prefix + 'weight_hr' + name, weight_hr, (out, hidden))
        w_proj = weight_hr.T
      layer_params.append(
        LSTMParams(weight_ih.T, weight_hh.T, b, w_proj=w_proj)
      )
    params.append(tuple(layer_params))
  return tuple(params)


def from_torch(state_dict: Any, *, prefix: str = '') -> Any:
  """Imports an ``nn.LSTM`` or ``nn.LSTMCell`` state dict.

  ``nn.LSTM`` options are read from the keys: the number of layers,
  ``bidirectional`` (``_reverse`` keys), ``proj_size`` (``weight_hr``
  keys) and ``bias=False`` (no bias keys: the bias is zero).

  Args:
    state_dict: the module's ``state_dict()`` (tensors or arrays), or the
      module itself.
    prefix: only keys starting with ``prefix`` are read, without it; e.g.
      ``'encoder.'`` for an LSTM held as ``model.encoder``.

  Returns:
    For ``nn.LSTM``, stack parameters ``params[layer][direction]`` of
    :class:`~jlstm.LSTMParams` for :func:`jlstm.unroll_stack`: ``w_x``
    [I, 4H] (layer 0) or [D*H_out, 4H], ``w_h`` [H_out, 4H], ``b`` [4H]
    (``bias_ih + bias_hh``) and, with ``proj_size``, ``w_proj`` [H, P].
    For ``nn.LSTMCell``, one :class:`~jlstm.LSTMParams`.

  Raises:
    KeyError: a key is missing (named). ValueError: a shape does not
      match, or an unexpected key. TypeError: not a mapping.

  Example:
    >>> import torch, jlstm
    >>> lstm = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True)
    >>> params = jlstm.interop.from_torch(lstm.state_dict())
    >>> len(params), len(params[1]), params[1][0].w_x.shape
    (2, 2, (10, 20))
  """
  sd = _strip(state_dict, prefix)
  if any(key in sd for key in _CELL_KEYS):
    return _from_cell(sd, prefix)
  return _from_stack(sd, prefix)


def _output(array: jax.Array, as_numpy: bool) -> Any:
  """A contiguous host copy: a NumPy array, or a torch tensor."""
  if as_numpy:
    return np.ascontiguousarray(np.asarray(array))
  import torch  # imported here: exporting as NumPy must not need torch

  if array.dtype == jnp.bfloat16:
    host = np.ascontiguousarray(np.asarray(array, np.float32))
    return torch.from_numpy(host).to(torch.bfloat16)
  return torch.from_numpy(np.array(array, copy=True, order='C'))


def _check_export_stack(params: Any) -> tuple[int, int, int, int | None]:
  """Checks that a stack fits nn.LSTM; returns (L, D, H, P)."""
  num_layers, directions = check_stack(params)
  _, hidden, proj = _util.check_cell(
    'params[0][0]', params[0][0], _TARGET, ('w_proj',)
  )
  out = hidden if proj is None else proj
  for layer in range(num_layers):
    for direction in range(directions):
      name = f'params[{layer}][{direction}]'
      input_size, h, p = _util.check_cell(
        name, params[layer][direction], _TARGET, ('w_proj',)
      )
      if (h, p) != (hidden, proj):
        raise ValueError(
          f'nn.LSTM has one hidden_size and proj_size for all layers: '
          f'params[0][0] has H={hidden}, P={proj} but {name} has H={h}, '
          f'P={p}'
        )
      if layer and input_size != directions * out:
        raise ValueError(
          f'{name}.w_x must read the {directions} * {out} outputs of the '
          f'layer below, as in nn.LSTM; got input size {input_size}'
        )
  return num_layers, directions, hidden, proj


def to_torch(
  params: Any, *, bias: bool = True, prefix: str = '', as_numpy: bool = False
) -> dict[str, Any]:
  """Exports stack or cell parameters as an ``nn.LSTM``/``nn.LSTMCell`` dict.

  The gate bias goes whole into ``bias_ih``; ``bias_hh`` is zero. PyTorch
  adds the two, so the gates are the same.

  Args:
    params: stack parameters ``params[layer][direction]`` (gives an
      ``nn.LSTM`` state dict) or one :class:`~jlstm.LSTMParams` (gives an
      ``nn.LSTMCell`` state dict).
    bias: False for a module built with ``bias=False``; every ``b`` must
      then be zero.
    prefix: prepended to every key.
    as_numpy: return NumPy arrays instead of torch tensors (torch is then
      not imported).

  Returns:
    dict of contiguous tensors that ``module.load_state_dict`` accepts,
    laid out as in the module docstring.

  Raises:
    ValueError: a non-zero bias with ``bias=False``; peepholes or layer
      norm (PyTorch has neither); a projection in a cell (``nn.LSTMCell``
      has none); layers whose sizes differ or do not chain as in
      ``nn.LSTM``. TypeError: not LSTMParams.

  Example:
    >>> import jax, torch, jlstm
    >>> params = jlstm.init_stack(jax.random.key(0), 3, 5, num_layers=2)
    >>> lstm = torch.nn.LSTM(3, 5, num_layers=2)
    >>> lstm.load_state_dict(jlstm.interop.to_torch(params))
    <All keys matched successfully>
  """
  out: dict[str, Any] = {}

  def put(key, array):
    out[prefix + key] = _output(array, as_numpy)

  def put_bias(name, b, where):
    if bias:
      put('bias_ih' + name, b)
      put('bias_hh' + name, jnp.zeros_like(b))
    else:
      _util.require_zero(where, b, 'to export with bias=False')

  if isinstance(params, LSTMParams):
    _util.check_cell('params', params, 'PyTorch nn.LSTMCell')
    put('weight_ih', params.w_x.T)
    put('weight_hh', params.w_h.T)
    put_bias('', params.b, 'params.b')
    return out

  num_layers, directions, _, proj = _check_export_stack(params)
  for layer in range(num_layers):
    for direction in range(directions):
      p = params[layer][direction]
      name = f'_l{layer}{_SUFFIXES[direction]}'
      put('weight_ih' + name, p.w_x.T)
      put('weight_hh' + name, p.w_h.T)
      put_bias(name, p.b, f'params[{layer}][{direction}].b')
      if proj is not None:
        put('weight_hr' + name, p.w_proj.T)
  return out


def from_torch_state(
  hx: Any, *, bidirectional: bool = False, cell: bool = False
) -> Any:
  """Imports PyTorch's ``(h, c)`` state.

  Args:
    hx: ``(h, c)``. For ``nn.LSTM``, ``h`` [D*L, N, H_out] and ``c``
      [D*L, N, H] (or without N for unbatched input), row ``k * D + d``
      holding layer k, direction d. For ``nn.LSTMCell``, [N, H] each.
    bidirectional: whether the ``nn.LSTM`` has two directions.
    cell: ``hx`` is an ``nn.LSTMCell`` state.

  Returns:
    ``states[layer][direction]`` of :class:`~jlstm.LSTMState` for
    :func:`jlstm.unroll_stack`, or one :class:`~jlstm.LSTMState` for a
    cell.

  Raises:
    TypeError or ValueError: ``hx`` is not a pair ``(h, c)``, or their
      shapes do not agree.

  Example:
    >>> import torch, jlstm
    >>> h, c = torch.zeros(4, 2, 5), torch.zeros(4, 2, 5)
    >>> states = jlstm.interop.from_torch_state((h, c), bidirectional=True)
    >>> len(states), len(states[0]), states[1][1].c.shape
    (2, 2, (2, 5))
  """
  h, c = _util.pair(hx, 'hx', '(h, c)')
  if cell:
    return LSTMState(h=h, c=c)
  directions = 2 if bidirectional else 1
  if h.ndim < 2 or h.shape[:-1] != c.shape[:-1]:
    raise ValueError(
      'hx must be (h [D*L, ..., H_out], c [D*L, ..., H]) with the same '
      f'leading dims; got h {tuple(h.shape)} and c {tuple(c.shape)}'
    )
  if h.shape[0] % directions:
    raise ValueError(
      f'hx rows must be a multiple of D={directions}; got h {tuple(h.shape)}'
    )
  return tuple(
    tuple(
      LSTMState(h=h[layer * directions + d], c=c[layer * directions + d])
      for d in range(directions)
    )
    for layer in range(h.shape[0] // directions)
  )


def to_torch_state(states: Any, *, as_numpy: bool = False) -> tuple[Any, Any]:
  """Exports a state as PyTorch's ``(h, c)``.

  Args:
    states: ``states[layer][direction]`` of :class:`~jlstm.LSTMState`, or
      one :class:`~jlstm.LSTMState` (an ``nn.LSTMCell`` state).
    as_numpy: return NumPy arrays instead of torch tensors.

  Returns:
    ``(h, c)``: for a stack, ``h`` [D*L, ..., H_out] and ``c``
    [D*L, ..., H], row ``k * D + d`` holding layer k, direction d; for a
    cell, the state's own ``h`` and ``c``.

  Example:
    >>> import jlstm
    >>> states = ((jlstm.zero_state(5, (2,)),) * 2,)
    >>> h, c = jlstm.interop.to_torch_state(states)
    >>> tuple(h.shape)
    (2, 2, 5)
  """
  if isinstance(states, LSTMState):
    return _output(states.h, as_numpy), _output(states.c, as_numpy)
  flat = [s for layer_states in states for s in layer_states]
  if not flat or not all(isinstance(s, LSTMState) for s in flat):
    raise TypeError(
      'states must be states[layer][direction] of LSTMState, or one '
      f'LSTMState; got {type(states).__name__}'
    )
  h = jnp.stack([jnp.asarray(s.h) for s in flat])
  c = jnp.stack([jnp.asarray(s.c) for s in flat])
  return _output(h, as_numpy), _output(c, as_numpy)
