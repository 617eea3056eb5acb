"""Keras 3 ``LSTM`` and ``LSTMCell`` weights.

Keras keeps jlstm's layout exactly: ``kernel`` [I, 4H] is ``w_x``,
``recurrent_kernel`` [H, 4H] is ``w_h`` and ``bias`` [4H] is ``b``, gate
blocks i, f, c (the candidate, jlstm's g), o. ``unit_forget_bias`` only
sets the initial value of ``bias``, so nothing is added at run time. The
state list is ``[h, c]``.

Only the default activations match jlstm's cell: ``activation='tanh'``
and ``recurrent_activation='sigmoid'``. Dropout and recurrent dropout act
in training only and leave inference exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jlstm.cell import LSTMParams
from jlstm.cell import LSTMState
from jlstm.interop import _util

_NAMES = ('kernel', 'recurrent_kernel', 'bias')


def _check_layer(layer: Any) -> dict[str, Any]:
  """Reads the variables of a built Keras LSTM or LSTMCell, by path."""
  cell = getattr(layer, 'cell', layer)
  if not hasattr(cell, 'recurrent_activation'):
    raise TypeError(
      'weights must be a Keras LSTM or LSTMCell layer; got '
      f'{type(layer).__name__}'
    )
  for option, want in (
    ('activation', 'tanh'),
    ('recurrent_activation', 'sigmoid'),
  ):
    fn = getattr(cell, option, None)
    got = getattr(fn, '__name__', repr(fn))
    if got != want:
      raise ValueError(
        f'jlstm runs the Keras LSTM with {option}={want!r}; this layer has '
        f'{option}={got!r}'
      )
  if not layer.weights:
    raise ValueError(
      'the Keras layer is not built; call it once (or layer.build) first'
    )
  return {v.path: v.value for v in layer.weights}


def from_keras(weights: Any) -> LSTMParams:
  """Imports the weights of a Keras ``LSTM`` or ``LSTMCell``.

  Args:
    weights: a built ``keras.layers.LSTM`` / ``LSTMCell`` (its activations
      are checked); or its weights as a list ``[kernel, recurrent_kernel,
      bias]`` (``layer.get_weights()``; two entries for ``use_bias=False``);
      or a mapping from ``'kernel'``, ``'recurrent_kernel'``, ``'bias'``
      (or variable paths ending in them) to arrays.

  Returns:
    :class:`~jlstm.LSTMParams` with ``w_x`` [I, 4H], ``w_h`` [H, 4H],
    ``b`` [4H] (zeros without a bias).

  Raises:
    KeyError: a mapping lacks a weight. ValueError: wrong count or shape
      of weights, or activations jlstm does not run.

  Example:
    >>> import numpy as np, jlstm
    >>> kernel = np.zeros((3, 20), np.float32)
    >>> recurrent = np.zeros((5, 20), np.float32)
    >>> bias = np.zeros(20, np.float32)
    >>> jlstm.interop.from_keras([kernel, recurrent, bias]).w_h.shape
    (5, 20)
  """
  if hasattr(weights, 'weights') and hasattr(weights, 'get_config'):
    weights = _check_layer(weights)
  if isinstance(weights, Mapping):
    by_name = {}
    for key, value in weights.items():
      last = str(key).rsplit('/', 1)[-1]
      if last in by_name:
        raise ValueError(
          f'weights has two entries named {last!r}; pass one layer at a time'
        )
      by_name[last] = value
    _util.check_unexpected(
      by_name, _NAMES, 'weights', 'a Keras LSTM has ' + ', '.join(_NAMES)
    )
    values = [_util.lookup(by_name, name, 'weights') for name in _NAMES[:2]]
    if 'bias' in by_name:
      values.append(by_name['bias'])
  elif isinstance(weights, Sequence) and not isinstance(weights, str):
    values = list(weights)
    if len(values) not in (2, 3):
      raise ValueError(
        'weights must be [kernel, recurrent_kernel, bias] (or the first '
        f'two, for use_bias=False); got {len(values)} arrays'
      )
  else:
    raise TypeError(
      'weights must be a Keras LSTM layer, a list or a mapping; got '
      f'{type(weights).__name__}'
    )

  kernel, recurrent = (_util.as_array(v) for v in values[:2])
  _util.check_matrix('recurrent_kernel', recurrent, '[H, 4H]')
  gates = recurrent.shape[1]
  if gates % 4 or recurrent.shape[0] * 4 != gates:
    raise ValueError(
      f'recurrent_kernel must be [H, 4H]; got shape {tuple(recurrent.shape)}'
    )
  _util.check_matrix('kernel', kernel, '[I, 4H]')
  _util.check_shape('kernel', kernel, (kernel.shape[0], gates))
  if len(values) == 3:
    b = _util.as_array(values[2])
    _util.check_shape('bias', b, (gates,))
  else:
    b = jnp.zeros((gates,), recurrent.dtype)
  return LSTMParams(w_x=kernel, w_h=recurrent, b=b)


def to_keras(params: LSTMParams, *, use_bias: bool = True) -> list[np.ndarray]:
  """Exports :class:`~jlstm.LSTMParams` as Keras ``LSTM`` weights.

  Args:
    params: ``w_x`` [I, 4H], ``w_h`` [H, 4H], ``b`` [4H], without variant
      fields.
    use_bias: False for a layer built with ``use_bias=False``; ``b`` must
      then be zero.

  Returns:
    ``[kernel, recurrent_kernel, bias]`` (without ``bias`` when
    ``use_bias=False``) as NumPy arrays, for ``layer.set_weights``.

  Raises:
    ValueError: a variant field (Keras has no peepholes, layer norm or
      projection), or a non-zero bias with ``use_bias=False``.

  Example:
    >>> import jax, jlstm
    >>> p = jlstm.init_params(jax.random.key(0), 3, 5)
    >>> [w.shape for w in jlstm.interop.to_keras(p)]
    [(3, 20), (5, 20), (20,)]
  """
  _util.check_cell('params', params, 'Keras LSTM')
  weights = [np.asarray(params.w_x), np.asarray(params.w_h)]
  if use_bias:
    weights.append(np.asarray(params.b))
  else:
    _util.require_zero('params.b', params.b, 'to export with use_bias=False')
  return weights


def from_keras_state(states: Sequence[Any]) -> LSTMState:
  """Imports Keras' ``[h, c]`` state list as :class:`~jlstm.LSTMState`.

  Example:
    >>> import numpy as np, jlstm
    >>> h, c = np.zeros((2, 5)), np.ones((2, 5))
    >>> float(jlstm.interop.from_keras_state([h, c]).c[0, 0])
    1.0
  """
  h, c = _util.pair(states, 'states', '[h, c]')
  return LSTMState(h=h, c=c)


def to_keras_state(state: LSTMState) -> list[jax.Array]:
  """Exports :class:`~jlstm.LSTMState` as Keras' ``[h, c]`` list.

  Example:
    >>> import jlstm
    >>> h, c = jlstm.interop.to_keras_state(jlstm.zero_state(5, (2,)))
    >>> h.shape
    (2, 5)
  """
  return [state.h, state.c]
