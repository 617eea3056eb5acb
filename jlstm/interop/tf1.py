"""TensorFlow 1 ``BasicLSTMCell`` and ``LSTMCell`` variables.

Both cells keep one ``kernel`` [I + H_out, 4H] applied to the
concatenation ``[x, h]`` and a ``bias`` [4H], with the gate blocks in the
order i, j, f, o (j is jlstm's candidate g). They add ``forget_bias``
(default 1.0) to the forget gate at run time. ``LSTMCell`` may also hold
peephole weights ``w_i_diag``, ``w_f_diag``, ``w_o_diag`` [H]
(``use_peepholes=True``) and a projection ``projection/kernel`` [H, P]
(``num_proj=P``, then H_out = P).

On import ``forget_bias`` is folded into jlstm's stored bias, so
:func:`jlstm.lstm_cell` reproduces the TF1 cell without a run-time option;
on export it is subtracted again. ``cell_clip`` and ``proj_clip`` are not
stored in the variables: pass the same values to jlstm's cell. The state
is ``LSTMStateTuple(c, h)``, cell state first.

Variable names are those of a TF1 checkpoint, e.g.
``'rnn/lstm_cell/kernel'``; read them with
``reader = tf.train.load_checkpoint(path)`` and
``{name: reader.get_tensor(name) for name in
reader.get_variable_to_shape_map()}``.
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

#: TF1's gate order along the 4H axis (its j is jlstm's g).
TF1_GATE_ORDER = ('i', 'g', 'f', 'o')

#: TF1's peephole variables, in the row order of jlstm's ``w_peep``.
_PEEPHOLES = ('w_i_diag', 'w_f_diag', 'w_o_diag')
_NAMES = ('kernel', 'bias', 'projection/kernel', *_PEEPHOLES)


def _find_scope(variables: Mapping, scope: str | None) -> str:
  """Returns the scope prefix (ending in '/', or '') of the cell."""
  if scope is not None:
    return scope.rstrip('/') + '/' if scope else ''
  scopes = sorted(
    key[: -len('kernel')]
    for key in variables
    if key.endswith('kernel') and not key.endswith('projection/kernel')
  )
  if len(scopes) != 1:
    raise ValueError(
      'variables must hold exactly one LSTM kernel, or pass scope=...; '
      f'found kernels under {scopes or "no scope"}'
    )
  return scopes[0]


def from_tf1(
  variables: Mapping[str, Any],
  *,
  forget_bias: float = 1.0,
  scope: str | None = None,
) -> LSTMParams:
  """Imports the variables of a TF1 ``BasicLSTMCell`` or ``LSTMCell``.

  Args:
    variables: mapping from TF1 variable names (a trailing ``':0'`` is
      ignored) to arrays: ``<scope>kernel`` [I + H_out, 4H] and
      ``<scope>bias`` [4H]; optionally ``<scope>w_i_diag``, ``w_f_diag``,
      ``w_o_diag`` [H] and ``<scope>projection/kernel`` [H, P].
    forget_bias: the cell's ``forget_bias`` (1.0 unless the TF1 program set
      it; 0.0 for checkpoints trained with ``CudnnLSTM``).
    scope: the cell's variable scope, e.g. ``'rnn/lstm_cell'``; found
      automatically when ``variables`` holds one cell.

  Returns:
    :class:`~jlstm.LSTMParams` with ``w_x`` [I, 4H], ``w_h`` [H_out, 4H],
    ``b`` [4H] (forget block plus ``forget_bias``), and ``w_peep`` [3, H]
    or ``w_proj`` [H, P] when the cell has them.

  Raises:
    KeyError: ``kernel``, ``bias`` or one of three peepholes is missing
      (named). ValueError: a shape does not match, an unexpected variable
      in the scope, or several cells without ``scope``.

  Example:
    >>> import numpy as np, jlstm
    >>> v = {
    ...   'rnn/basic_lstm_cell/kernel': np.zeros((3 + 5, 20), np.float32),
    ...   'rnn/basic_lstm_cell/bias': np.zeros(20, np.float32),
    ... }
    >>> p = jlstm.interop.from_tf1(v)
    >>> p.w_h.shape, float(p.b[jlstm.gate_slice('f', 5)][0])
    ((5, 20), 1.0)
  """
  if not isinstance(variables, Mapping):
    raise TypeError(
      f'variables must be a mapping; got {type(variables).__name__}'
    )
  variables = {str(k).removesuffix(':0'): v for k, v in variables.items()}
  prefix = _find_scope(variables, scope)
  cell = {
    key[len(prefix) :]: value
    for key, value in variables.items()
    if key.startswith(prefix)
  }
  # Optimizer slots such as 'kernel/Adam' live under the variable's name.
  cell = {
    key: value
    for key, value in cell.items()
    if not any(key.startswith(name + '/') for name in _NAMES)
  }
  _util.check_unexpected(
    cell,
    _NAMES,
    f'variables under {prefix!r}',
    'a TF1 LSTM cell has ' + ', '.join(_NAMES),
  )
  what = f'variables (scope {prefix!r})'

  def get(name):
    return _util.as_array(_util.lookup(cell, name, what))

  kernel, bias = get('kernel'), get('bias')
  _util.check_matrix(prefix + 'kernel', kernel, '[I + H_out, 4H]')
  gates = kernel.shape[1]
  hidden = gates // 4
  if gates % 4:
    raise ValueError(
      f'{prefix}kernel must be [I + H_out, 4H]; got shape {tuple(kernel.shape)}'
    )
  _util.check_shape(prefix + 'bias', bias, (gates,))

  w_proj = None
  out = hidden
  if 'projection/kernel' in cell:
    w_proj = get('projection/kernel')
    _util.check_matrix(prefix + 'projection/kernel', w_proj, '[H, P]')
    _util.check_shape(
      prefix + 'projection/kernel', w_proj, (hidden, w_proj.shape[1])
    )
    out = w_proj.shape[1]
  if kernel.shape[0] <= out:
    raise ValueError(
      f'{prefix}kernel must be [I + {out}, {gates}] with I >= 1; got shape '
      f'{tuple(kernel.shape)}'
    )

  w_peep = None
  present = [name for name in _PEEPHOLES if name in cell]
  if present:
    rows = [get(name) for name in _PEEPHOLES]
    for name, row in zip(_PEEPHOLES, rows, strict=True):
      _util.check_shape(prefix + name, row, (hidden,))
    w_peep = jnp.stack(rows)

  def reorder(a):
    return _util.reorder_gates(a, TF1_GATE_ORDER, GATE_ORDER)

  input_size = kernel.shape[0] - out
  return LSTMParams(
    w_x=reorder(kernel[:input_size]),
    w_h=reorder(kernel[input_size:]),
    b=_util.shift_forget(reorder(bias), forget_bias),
    w_peep=w_peep,
    w_proj=w_proj,
  )


def to_tf1(
  params: LSTMParams,
  *,
  forget_bias: float = 1.0,
  scope: str = 'rnn/lstm_cell',
) -> dict[str, jax.Array]:
  """Exports :class:`~jlstm.LSTMParams` as TF1 ``LSTMCell`` variables.

  The forget block of ``b`` is stored minus ``forget_bias``, which the TF1
  cell adds back at run time. Without peepholes or projection the
  variables also fit ``BasicLSTMCell`` (scope ``'rnn/basic_lstm_cell'``).

  Args:
    params: ``w_x`` [I, 4H], ``w_h`` [H_out, 4H], ``b`` [4H], and
      optionally ``w_peep`` [3, H] (``use_peepholes=True``) and ``w_proj``
      [H, P] (``num_proj=P``).
    forget_bias: the ``forget_bias`` of the TF1 cell that will load them.
    scope: the cell's variable scope; ``''`` for bare names.

  Returns:
    dict from variable names (``<scope>/kernel``, ``<scope>/bias``, ...) to
    arrays.

  Raises:
    ValueError: layer-normalised parameters (TF1's cells have none).

  Example:
    >>> import jax, jlstm
    >>> p = jlstm.init_params(jax.random.key(0), 3, 5)
    >>> sorted(jlstm.interop.to_tf1(p))
    ['rnn/lstm_cell/bias', 'rnn/lstm_cell/kernel']
  """
  _util.check_cell('params', params, 'TF1 LSTMCell', ('w_peep', 'w_proj'))
  prefix = scope.rstrip('/') + '/' if scope else ''

  def reorder(a):
    return _util.reorder_gates(a, GATE_ORDER, TF1_GATE_ORDER)

  out = {
    prefix + 'kernel': reorder(jnp.concatenate([params.w_x, params.w_h])),
    prefix + 'bias': reorder(_util.shift_forget(params.b, -forget_bias)),
  }
  if params.w_peep is not None:
    for row, name in enumerate(_PEEPHOLES):
      out[prefix + name] = params.w_peep[row]
  if params.w_proj is not None:
    out[prefix + 'projection/kernel'] = params.w_proj
  return out


def from_tf1_state(state: Any) -> LSTMState:
  """Imports TF1's ``LSTMStateTuple(c, h)`` as :class:`~jlstm.LSTMState`.

  Example:
    >>> import numpy as np, jlstm
    >>> s = jlstm.interop.from_tf1_state((np.ones(5), np.zeros(5)))
    >>> float(s.c[0]), float(s.h[0])
    (1.0, 0.0)
  """
  c, h = _util.pair(state, 'state', '(c, h)')
  return LSTMState(h=h, c=c)


def to_tf1_state(state: LSTMState) -> tuple[jax.Array, jax.Array]:
  """Exports :class:`~jlstm.LSTMState` as TF1's ``(c, h)`` order.

  Example:
    >>> import jlstm
    >>> c, h = jlstm.interop.to_tf1_state(jlstm.zero_state(5))
    >>> c.shape
    (5,)
  """
  return (state.c, state.h)
