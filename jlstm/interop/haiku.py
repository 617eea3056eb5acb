"""Haiku ``hk.LSTM`` parameters.

``hk.LSTM`` applies one ``hk.Linear`` to the concatenation ``[x, h]``:
``w`` [I + H, 4H] (rows 0..I-1 read ``x``, the rest read ``h``) and ``b``
[4H], with the gate blocks in the order i, g, f, o. At run time it adds 1
to the forget gate's pre-activation, a constant that is not in ``b``.

On import that constant is folded into jlstm's stored bias (``b_f + 1``),
so :func:`jlstm.lstm_cell` reproduces ``hk.LSTM`` without a run-time
option; on export it is taken out again (``b_f - 1``). A round trip is
therefore exact up to one float rounding of the forget bias.

Haiku's state is ``hk.LSTMState(hidden, cell)``, i.e. (h, c).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from jlstm.cell import GATE_ORDER
from jlstm.cell import LSTMParams
from jlstm.cell import LSTMState
from jlstm.interop import _util

#: Haiku's gate order along the 4H axis.
HAIKU_GATE_ORDER = ('i', 'g', 'f', 'o')

#: The constant ``hk.LSTM`` adds to the forget gate at run time.
HAIKU_FORGET_BIAS = 1.0


def _find_linear(params: Mapping, name: str | None) -> tuple[str, Mapping]:
  """Returns ``(module name, {'w', 'b'})`` of the LSTM's linear layer."""
  if 'w' in params or 'b' in params:
    return '', params
  if name is not None:
    key = f'{name}/linear'
    return key, _util.lookup(params, key, 'params')
  found = [key for key in params if str(key).rsplit('/', 1)[-1] == 'linear']
  if len(found) != 1:
    raise ValueError(
      'params must hold exactly one <name>/linear module, or pass name=...; '
      f'found {found or "none"} among {sorted(params)[:12]}'
    )
  return found[0], params[found[0]]


def from_haiku(params: Mapping[str, Any], *, name: str | None = None):
  """Imports ``hk.LSTM`` parameters.

  Args:
    params: Haiku parameters, ``{'<name>/linear': {'w': [I + H, 4H], 'b':
      [4H]}}`` (from ``hk.transform(...).init``), or just the inner
      ``{'w', 'b'}``.
    name: the LSTM module's name (default ``'lstm'``, e.g. ``'rnn/lstm'``
      inside another module); needed only when ``params`` holds more than
      one ``*/linear`` module.

  Returns:
    :class:`~jlstm.LSTMParams` with ``w_x`` [I, 4H], ``w_h`` [H, 4H] and
    ``b`` [4H], the forget block holding Haiku's ``b_f + 1``.

  Raises:
    KeyError: ``w`` or ``b`` is missing (named). ValueError: a shape does
      not match, several candidate modules, or an unexpected key.

  Example:
    >>> import numpy as np, jlstm
    >>> hk_params = {
    ...   'lstm/linear': {
    ...     'w': np.zeros((3 + 5, 20), np.float32),
    ...     'b': np.zeros(20, np.float32),
    ...   }
    ... }
    >>> p = jlstm.interop.from_haiku(hk_params)
    >>> p.w_x.shape, float(p.b[jlstm.gate_slice('f', 5)][0])
    ((3, 20), 1.0)
  """
  if not isinstance(params, Mapping):
    raise TypeError(f'params must be a mapping; got {type(params).__name__}')
  module, linear = _find_linear(params, name)
  where = f'params[{module!r}]' if module else 'params'
  _util.check_unexpected(linear, ('w', 'b'), where, 'hk.Linear has w and b')
  w = _util.as_array(_util.lookup(linear, 'w', where))
  b = _util.as_array(_util.lookup(linear, 'b', where))
  _util.check_matrix(f'{where}["w"]', w, '[I + H, 4H]')
  gates = w.shape[1]
  hidden = gates // 4
  if gates % 4 or w.shape[0] <= hidden:
    raise ValueError(
      f'{where}["w"] must be [I + H, 4H] with I >= 1; got shape '
      f'{tuple(w.shape)}'
    )
  _util.check_shape(f'{where}["b"]', b, (gates,))
  input_size = w.shape[0] - hidden

  def reorder(a):
    return _util.reorder_gates(a, HAIKU_GATE_ORDER, GATE_ORDER)

  b = _util.shift_forget(reorder(b), HAIKU_FORGET_BIAS)
  return LSTMParams(
    w_x=reorder(w[:input_size]), w_h=reorder(w[input_size:]), b=b
  )


def to_haiku(params: LSTMParams, *, name: str = 'lstm') -> dict[str, Any]:
  """Exports :class:`~jlstm.LSTMParams` as ``hk.LSTM`` parameters.

  The forget block of ``b`` is stored minus Haiku's run-time +1.

  Args:
    params: ``w_x`` [I, 4H], ``w_h`` [H, 4H], ``b`` [4H], without variant
      fields.
    name: the LSTM module's name in the Haiku program.

  Returns:
    ``{f'{name}/linear': {'w': [I + H, 4H], 'b': [4H]}}``.

  Raises:
    ValueError: a variant field (``hk.LSTM`` has no peepholes, layer norm
      or projection).

  Example:
    >>> import jax, jlstm
    >>> p = jlstm.init_params(jax.random.key(0), 3, 5)
    >>> jlstm.interop.to_haiku(p)['lstm/linear']['w'].shape
    (8, 20)
  """
  _util.check_cell('params', params, 'Haiku hk.LSTM')

  def reorder(a):
    return _util.reorder_gates(a, GATE_ORDER, HAIKU_GATE_ORDER)

  w = jnp.concatenate([params.w_x, params.w_h], axis=0)
  b = _util.shift_forget(params.b, -HAIKU_FORGET_BIAS)
  return {f'{name}/linear': {'w': reorder(w), 'b': reorder(b)}}


def from_haiku_state(state: Any) -> LSTMState:
  """Imports ``hk.LSTMState(hidden, cell)`` as :class:`~jlstm.LSTMState`.

  Example:
    >>> import haiku as hk, jax.numpy as jnp, jlstm
    >>> s = hk.LSTMState(hidden=jnp.zeros(5), cell=jnp.ones(5))
    >>> float(jlstm.interop.from_haiku_state(s).c[0])
    1.0
  """
  if not (hasattr(state, 'hidden') and hasattr(state, 'cell')):
    raise TypeError(
      f'state must be an hk.LSTMState(hidden, cell); got {type(state)}'
    )
  return LSTMState(h=_util.as_array(state.hidden), c=_util.as_array(state.cell))


def to_haiku_state(state: LSTMState) -> Any:
  """Exports :class:`~jlstm.LSTMState` as ``hk.LSTMState(hidden, cell)``.

  Example:
    >>> import jlstm
    >>> jlstm.interop.to_haiku_state(jlstm.zero_state(5)).hidden.shape
    (5,)
  """
  import haiku as hk  # only needed to build Haiku's own state type

  return hk.LSTMState(hidden=state.h, cell=state.c)
