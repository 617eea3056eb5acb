"""The LSTM cell: parameters, state, initialisation and one step.

Axis legend used throughout jlstm: B batch (any number of leading dims,
written ``...``), T time, I input, H hidden, G = 4H gates.

The cell is the classic one (Hochreiter and Schmidhuber 1997, with the
forget gate of Gers et al. 2000) as TensorFlow 1 programs write it::

  i = sigmoid(x @ W_x^i + h @ W_h^i + b^i)
  f = sigmoid(x @ W_x^f + h @ W_h^f + b^f)
  g = tanh   (x @ W_x^g + h @ W_h^g + b^g)
  o = sigmoid(x @ W_x^o + h @ W_h^o + b^o)
  c' = f * c + i * g
  h' = o * tanh(c')

The four per-gate matrices are stored side by side, so each operand takes
one fused matmul: ``w_x`` is [I, 4H], ``w_h`` is [H, 4H] and ``b`` is [4H],
with the gate blocks in the order of :data:`GATE_ORDER` (i, f, g, o: the
order PyTorch, Keras and cuDNN use).
"""

from __future__ import annotations

import math
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jlstm import _checks

Array = jax.Array

#: Order of the gate blocks along the 4H axis of ``w_x``, ``w_h`` and ``b``:
#: input gate, forget gate, candidate (tanh) and output gate.
GATE_ORDER = ('i', 'f', 'g', 'o')

#: The initialisation schemes that :func:`init_params` accepts.
INIT_SCHEMES = ('seed', 'uniform', 'glorot')


class LSTMParams(NamedTuple):
  """Parameters of one LSTM cell, a pytree.

  Attributes:
    w_x: [I, 4H] input-to-gates matrix, gate blocks in :data:`GATE_ORDER`.
    w_h: [H, 4H] recurrent matrix, same gate blocks.
    b: [4H] gate bias, same gate blocks.
  """

  w_x: Array
  w_h: Array
  b: Array

  @property
  def input_size(self) -> int:
    """I, the number of input features."""
    return self.w_x.shape[-2]

  @property
  def hidden_size(self) -> int:
    """H, the number of units."""
    return self.w_h.shape[-1] // 4


class LSTMState(NamedTuple):
  """Recurrent state of an LSTM, a pytree with named fields.

  Named fields end the (c, h) versus (h, c) confusion between frameworks.

  Attributes:
    h: [..., H] hidden state (the cell's output).
    c: [..., H] cell state.
  """

  h: Array
  c: Array


def gate_slice(gate: str, hidden_size: int) -> slice:
  """Returns the slice of the 4H axis that holds ``gate``.

  Args:
    gate: one of :data:`GATE_ORDER`: ``'i'``, ``'f'``, ``'g'``, ``'o'``.
    hidden_size: H.

  Returns:
    A ``slice`` of length H into the gate axis.

  Example:
    >>> import jlstm
    >>> jlstm.gate_slice('f', 256)
    slice(256, 512, None)
  """
  if gate not in GATE_ORDER:
    raise ValueError(f'gate must be one of {GATE_ORDER}; got {gate!r}')
  k = GATE_ORDER.index(gate)
  return slice(k * hidden_size, (k + 1) * hidden_size)


def init_params(
  key: Array,
  input_size: int,
  hidden_size: int,
  *,
  scheme: str = 'seed',
  scale: float | None = None,
  forget_bias: float | None = None,
  dtype: Any = jnp.float32,
) -> LSTMParams:
  """Draws the parameters of one LSTM cell.

  Schemes:

  * ``'seed'``: every entry of ``w_x``, ``w_h`` and ``b`` from a normal with
    standard deviation ``scale`` (default 0.1), values beyond two standard
    deviations redrawn, as TF1's ``tf.truncated_normal`` does. No variance
    correction, so the realised standard deviation is about 0.88 * scale.
  * ``'uniform'``: every entry from U(-s, s) with s = ``scale`` or
    1/sqrt(H), as PyTorch and Equinox initialise.
  * ``'glorot'``: Keras' defaults: ``w_x`` Glorot-uniform, ``w_h``
    orthogonal (over the whole [H, 4H] matrix), ``b`` zeros with the forget
    block at 1 (Jozefowicz et al. 2015). ``scale`` multiplies the weights.

  Args:
    key: a PRNG key.
    input_size: I.
    hidden_size: H.
    scheme: one of :data:`INIT_SCHEMES`.
    scale: scheme-specific scale, see above.
    forget_bias: if given, the forget block of ``b`` is set to this value
      (overrides the scheme's choice).
    dtype: floating dtype of the parameters.

  Returns:
    :class:`LSTMParams` with ``w_x`` [I, 4H], ``w_h`` [H, 4H], ``b`` [4H].

  Raises:
    ValueError: for an unknown scheme or non-positive sizes.

  Example:
    >>> import jax, jlstm
    >>> p = jlstm.init_params(jax.random.key(0), 300, 256)
    >>> p.w_x.shape, p.w_h.shape, p.b.shape
    ((300, 1024), (256, 1024), (1024,))
  """
  _checks.positive_int('input_size', input_size)
  _checks.positive_int('hidden_size', hidden_size)
  if scheme not in INIT_SCHEMES:
    raise ValueError(
      f'scheme must be one of {INIT_SCHEMES}; got scheme={scheme!r}'
    )
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f'dtype must be a floating dtype; got dtype={dtype}')
  gates = 4 * hidden_size
  k_x, k_h, k_b = jax.random.split(key, 3)

  if scheme == 'seed':
    std = 0.1 if scale is None else scale

    def draw(k, shape):
      return jax.random.truncated_normal(k, -2.0, 2.0, shape, dtype) * std

    w_x = draw(k_x, (input_size, gates))
    w_h = draw(k_h, (hidden_size, gates))
    b = draw(k_b, (gates,))
  elif scheme == 'uniform':
    s = 1.0 / math.sqrt(hidden_size) if scale is None else scale

    def draw(k, shape):
      return jax.random.uniform(k, shape, dtype, -s, s)

    w_x = draw(k_x, (input_size, gates))
    w_h = draw(k_h, (hidden_size, gates))
    b = draw(k_b, (gates,))
  else:
    gain = 1.0 if scale is None else scale
    w_x = gain * jax.nn.initializers.glorot_uniform()(
      k_x, (input_size, gates), dtype
    )
    w_h = gain * jax.nn.initializers.orthogonal()(
      k_h, (hidden_size, gates), dtype
    )
    b = jnp.zeros((gates,), dtype).at[gate_slice('f', hidden_size)].set(1.0)

  if forget_bias is not None:
    b = b.at[gate_slice('f', hidden_size)].set(forget_bias)
  return LSTMParams(w_x=w_x, w_h=w_h, b=b)


def state_dtype(dtype: Any) -> np.dtype:
  """Returns the dtype jlstm keeps the state in for parameters of ``dtype``.

  Low-precision floats (bfloat16, float16) keep the state in float32 so the
  cell state does not drift over long sequences; float32 and float64 keep
  their own dtype.

  Example:
    >>> import jax.numpy as jnp, jlstm
    >>> jlstm.state_dtype(jnp.bfloat16)
    dtype('float32')
  """
  return np.dtype(jnp.promote_types(dtype, jnp.float32))


def zero_state(
  hidden_size: int,
  batch_shape: tuple[int, ...] = (),
  dtype: Any = jnp.float32,
) -> LSTMState:
  """Returns the all-zero state.

  Args:
    hidden_size: H.
    batch_shape: the leading batch dims ``...``; ``()`` for one example.
    dtype: dtype of ``h`` and ``c``.

  Returns:
    :class:`LSTMState` with ``h`` and ``c`` of shape [..., H].

  Example:
    >>> import jlstm
    >>> s = jlstm.zero_state(256, batch_shape=(32,))
    >>> s.h.shape, s.c.shape
    ((32, 256), (32, 256))
  """
  _checks.positive_int('hidden_size', hidden_size)
  batch_shape = _checks.shape_tuple('batch_shape', batch_shape)
  zeros = jnp.zeros((*batch_shape, hidden_size), dtype)
  return LSTMState(h=zeros, c=zeros)


def gate_preactivations(params: LSTMParams, h: Array, x: Array) -> Array:
  """Returns ``x @ w_x + h @ w_h + b``, [..., 4H], accumulated in float32+.

  Matmuls run in the parameters' dtype (bfloat16 parameters give bfloat16
  matmuls) and accumulate in the state dtype.
  """
  acc = state_dtype(params.w_h.dtype)
  gx = jnp.matmul(
    x.astype(params.w_x.dtype), params.w_x, preferred_element_type=acc
  )
  gh = jnp.matmul(
    h.astype(params.w_h.dtype), params.w_h, preferred_element_type=acc
  )
  return gx + gh + params.b.astype(acc)


def apply_gates(gates: Array, c: Array) -> LSTMState:
  """The elementwise half of the cell: gate pre-activations to new state.

  Args:
    gates: [..., 4H] pre-activations in :data:`GATE_ORDER`.
    c: [..., H] previous cell state.

  Returns:
    The new :class:`LSTMState`.
  """
  i, f, g, o = jnp.split(gates, 4, axis=-1)
  c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  h = jax.nn.sigmoid(o) * jnp.tanh(c)
  return LSTMState(h=h, c=c)


def lstm_cell(params: LSTMParams, state: LSTMState, x: Array) -> LSTMState:
  """One step of the LSTM: a pure function ``(params, state, x) -> state``.

  Computes, with the gate blocks of :data:`GATE_ORDER`::

    gates = x @ w_x + h @ w_h + b          # [..., 4H]
    i, f, g, o = split(gates, 4)
    c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
    h' = sigmoid(o) * tanh(c')

  Args:
    params: :class:`LSTMParams` with ``w_x`` [I, 4H], ``w_h`` [H, 4H],
      ``b`` [4H].
    state: :class:`LSTMState`, ``h`` and ``c`` of shape [..., H]; its batch
      dims broadcast against those of ``x``.
    x: [I] or [..., I] floating input.

  Returns:
    The new :class:`LSTMState`, [..., H], in :func:`state_dtype` of the
    parameters (float32 for bfloat16 parameters).

  Raises:
    ValueError: if shapes do not match; TypeError: for non-floating input.

  Example:
    >>> import jax, jax.numpy as jnp, jlstm
    >>> p = jlstm.init_params(jax.random.key(0), 3, 4)
    >>> s = jlstm.lstm_cell(p, jlstm.zero_state(4, (2,)), jnp.ones((2, 3)))
    >>> s.h.shape
    (2, 4)

  References:
    Hochreiter and Schmidhuber, Long short-term memory, 1997.
  """
  _checks.check_params('params', params)
  input_size, hidden_size = params.input_size, params.hidden_size
  _checks.check_input('x', x, input_size, min_rank=1)
  _checks.check_state('state', state, hidden_size)
  with jax.named_scope('lstm_cell'):
    acc = state_dtype(params.w_h.dtype)
    gates = gate_preactivations(params, state.h.astype(acc), x)
    return apply_gates(gates, state.c.astype(acc))
