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


class LayerNormParams(NamedTuple):
  """Gains and offset of a layer-normalised cell (Ba et al. 2016), a pytree.

  The offsets of the two gate normalisations would only add to ``b``, so
  the cell keeps them folded into ``b``.

  Attributes:
    scale_x: [4H] gain of the normalised input projection ``x @ w_x``.
    scale_h: [4H] gain of the normalised recurrent projection ``h @ w_h``.
    scale_c: [H] gain of the normalised cell state (output path only).
    offset_c: [H] offset of the normalised cell state.

  Example:
    >>> import jax, jlstm
    >>> p = jlstm.init_params(jax.random.key(0), 3, 4, layer_norm=True)
    >>> p.ln.scale_x.shape, p.ln.scale_c.shape, float(p.ln.offset_c.sum())
    ((16,), (4,), 0.0)
  """

  scale_x: Array
  scale_h: Array
  scale_c: Array
  offset_c: Array


class LSTMParams(NamedTuple):
  """Parameters of one LSTM cell, a pytree.

  The first three fields make the plain cell; the others are variants that
  default to None (absent) and leave no leaves in the pytree when absent.

  Attributes:
    w_x: [I, 4H] input-to-gates matrix, gate blocks in :data:`GATE_ORDER`.
    w_h: [H, 4H] recurrent matrix, same gate blocks; [P, 4H] with a
      projection.
    b: [4H] gate bias, same gate blocks.
    w_peep: optional [3, H] peephole weights (rows for the i, f and o
      gates; Gers and Schmidhuber 2000).
    ln: optional :class:`LayerNormParams` for a layer-normalised cell
      (Ba et al. 2016).
    w_proj: optional [H, P] output projection (LSTMP, Sak et al. 2014);
      the state's ``h`` is then [..., P] while ``c`` stays [..., H].

  Example:
    >>> import jax, jax.numpy as jnp, jlstm
    >>> p = jlstm.LSTMParams(
    ...   w_x=jnp.zeros((3, 16)), w_h=jnp.zeros((4, 16)), b=jnp.zeros(16)
    ... )
    >>> p.input_size, p.hidden_size, p.output_size, len(jax.tree.leaves(p))
    (3, 4, 4, 3)
  """

  w_x: Array
  w_h: Array
  b: Array
  w_peep: Array | None = None
  ln: LayerNormParams | None = None
  w_proj: Array | None = None

  @property
  def input_size(self) -> int:
    """I, the number of input features."""
    return self.w_x.shape[-2]

  @property
  def hidden_size(self) -> int:
    """H, the number of units."""
    return self.w_h.shape[-1] // 4

  @property
  def output_size(self) -> int:
    """The size of ``h``: P with a projection, H otherwise."""
    if self.w_proj is None:
      return self.hidden_size
    return self.w_proj.shape[-1]


#: The optional fields of :class:`LSTMParams`, the cell variants.
VARIANT_FIELDS = ('w_peep', 'ln', 'w_proj')


def is_basic(params: LSTMParams) -> bool:
  """True when ``params`` is the plain cell, without any variant field.

  Example:
    >>> import jax, jlstm
    >>> jlstm.is_basic(jlstm.init_params(jax.random.key(0), 3, 4))
    True
    >>> jlstm.is_basic(
    ...   jlstm.init_params(jax.random.key(0), 3, 4, peepholes=True)
    ... )
    False
  """
  return all(getattr(params, name, None) is None for name in VARIANT_FIELDS)


class LSTMState(NamedTuple):
  """Recurrent state of an LSTM, a pytree with named fields.

  Named fields end the (c, h) versus (h, c) confusion between frameworks.

  Attributes:
    h: [..., H] hidden state (the cell's output); [..., P] with a
      projection.
    c: [..., H] cell state.

  Example:
    >>> import jax, jax.numpy as jnp, jlstm
    >>> s = jlstm.LSTMState(h=jnp.zeros((2, 4)), c=jnp.ones((2, 4)))
    >>> doubled = jax.tree.map(lambda a: 2 * a, s)
    >>> doubled.h.shape, float(doubled.c.sum())
    ((2, 4), 16.0)
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
  peepholes: bool = False,
  layer_norm: bool = False,
  proj_size: int | None = None,
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
    peepholes: add ``w_peep`` [3, H], drawn like the weights (zeros for
      ``'glorot'``, so the cell starts as the plain one).
    layer_norm: add :class:`LayerNormParams` with unit gains and zero
      offset.
    proj_size: P < H to add ``w_proj`` [H, P] (drawn like ``w_x``; Glorot
      for ``'glorot'``); ``w_h`` is then [P, 4H].
    dtype: floating dtype of the parameters.

  Returns:
    :class:`LSTMParams` with ``w_x`` [I, 4H], ``w_h`` [H, 4H] (or [P, 4H]),
    ``b`` [4H] and the requested variant fields.

  Raises:
    ValueError: for an unknown scheme, non-positive sizes or
      ``proj_size >= hidden_size``.

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
  if proj_size is not None:
    _checks.positive_int('proj_size', proj_size)
    if proj_size >= hidden_size:
      raise ValueError(
        f'proj_size must be smaller than hidden_size={hidden_size}; got '
        f'proj_size={proj_size}'
      )
  gates = 4 * hidden_size
  recurrent_size = hidden_size if proj_size is None else proj_size
  k_x, k_h, k_b = jax.random.split(key, 3)
  # Variant fields draw from keys of their own, so adding one leaves the
  # plain fields as they were.
  k_peep, k_proj = jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)
  # Draw low-precision parameters in float32 and round once at the end:
  # the orthogonal init needs a QR that bfloat16 does not have.
  final_dtype, dtype = dtype, state_dtype(dtype)

  if scheme == 'seed':
    std = 0.1 if scale is None else scale

    def draw(k, shape):
      return jax.random.truncated_normal(k, -2.0, 2.0, shape, dtype) * std

    w_x = draw(k_x, (input_size, gates))
    w_h = draw(k_h, (recurrent_size, gates))
    b = draw(k_b, (gates,))
  elif scheme == 'uniform':
    s = 1.0 / math.sqrt(hidden_size) if scale is None else scale

    def draw(k, shape):
      return jax.random.uniform(k, shape, dtype, -s, s)

    w_x = draw(k_x, (input_size, gates))
    w_h = draw(k_h, (recurrent_size, gates))
    b = draw(k_b, (gates,))
  else:
    gain = 1.0 if scale is None else scale
    w_x = gain * jax.nn.initializers.glorot_uniform()(
      k_x, (input_size, gates), dtype
    )
    w_h = gain * jax.nn.initializers.orthogonal()(
      k_h, (recurrent_size, gates), dtype
    )
    b = jnp.zeros((gates,), dtype).at[gate_slice('f', hidden_size)].set(1.0)

  if forget_bias is not None:
    b = b.at[gate_slice('f', hidden_size)].set(forget_bias)

  w_peep = ln = w_proj = None
  if peepholes:
    w_peep = (
      jnp.zeros((3, hidden_size), dtype)
      if scheme == 'glorot'
      else draw(k_peep, (3, hidden_size))
    )
  if layer_norm:
    ln = LayerNormParams(
      scale_x=jnp.ones((gates,), dtype),
      scale_h=jnp.ones((gates,), dtype),
      scale_c=jnp.ones((hidden_size,), dtype),
      offset_c=jnp.zeros((hidden_size,), dtype),
    )
  if proj_size is not None:
    if scheme == 'glorot':
      w_proj = gain * jax.nn.initializers.glorot_uniform()(
        k_proj, (hidden_size, proj_size), dtype
      )
    else:
      w_proj = draw(k_proj, (hidden_size, proj_size))
  params = LSTMParams(
    w_x=w_x, w_h=w_h, b=b, w_peep=w_peep, ln=ln, w_proj=w_proj
  )
  return jax.tree.map(lambda a: a.astype(final_dtype), params)


def state_dtype(dtype: Any) -> np.dtype:
  """Returns the dtype jlstm keeps the state in for parameters of ``dtype``.

  Low-precision floats (bfloat16, float16) keep the state in float32 so the
  cell state does not drift over long sequences; float32 and float64 keep
  their own dtype. With x64 off, JAX computes float64 arrays (NumPy's
  default) in float32, so their state is float32 too.

  Example:
    >>> import jax.numpy as jnp, jlstm
    >>> jlstm.state_dtype(jnp.bfloat16)
    dtype('float32')
  """
  # Canonicalising keeps NumPy float64 parameters from asking JAX for a
  # float64 it does not have (a warning per call) when x64 is off.
  return np.dtype(
    jax.dtypes.canonicalize_dtype(jnp.promote_types(dtype, jnp.float32))
  )


def compute_dtype(array: Any) -> np.dtype:
  """The dtype JAX computes ``array`` in: float64 becomes float32 with x64
  off, so casting to it never asks JAX for a dtype it does not have."""
  return np.dtype(jax.dtypes.canonicalize_dtype(array.dtype))


def zero_state(
  hidden_size: int,
  batch_shape: tuple[int, ...] = (),
  dtype: Any = jnp.float32,
  *,
  output_size: int | None = None,
) -> LSTMState:
  """Returns the all-zero state.

  Args:
    hidden_size: H.
    batch_shape: the leading batch dims ``...``; ``()`` for one example.
    dtype: dtype of ``h`` and ``c``.
    output_size: the size P of ``h`` for a cell with a projection
      (``params.output_size``); H when None.

  Returns:
    :class:`LSTMState` with ``h`` [..., P or H] and ``c`` [..., H].

  Example:
    >>> import jlstm
    >>> s = jlstm.zero_state(256, batch_shape=(32,))
    >>> s.h.shape, s.c.shape
    ((32, 256), (32, 256))
  """
  _checks.positive_int('hidden_size', hidden_size)
  batch_shape = _checks.shape_tuple('batch_shape', batch_shape)
  zeros = jnp.zeros((*batch_shape, hidden_size), dtype)
  if output_size is None or output_size == hidden_size:
    return LSTMState(h=zeros, c=zeros)
  _checks.positive_int('output_size', output_size)
  return LSTMState(h=jnp.zeros((*batch_shape, output_size), dtype), c=zeros)


def gate_preactivations(params: LSTMParams, h: Array, x: Array) -> Array:
  """Returns ``x @ w_x + h @ w_h + b``, [..., 4H], accumulated in float32+.

  Matmuls run in the parameters' dtype (bfloat16 parameters give bfloat16
  matmuls) and accumulate in the state dtype.
  """
  acc = state_dtype(params.w_h.dtype)
  gx = jnp.matmul(
    x.astype(compute_dtype(params.w_x)), params.w_x, preferred_element_type=acc
  )
  gh = jnp.matmul(
    h.astype(compute_dtype(params.w_h)), params.w_h, preferred_element_type=acc
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


#: Epsilon added to the variance in the layer-normalised cell.
LN_EPSILON = 1e-5


def _layer_norm(z: Array, scale: Array, offset: Array | None = None):
  """Normalises the last axis of ``z`` to zero mean, unit variance."""
  mean = jnp.mean(z, axis=-1, keepdims=True)
  centred = z - mean
  var = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)
  out = centred * jax.lax.rsqrt(var + LN_EPSILON) * scale.astype(z.dtype)
  return out if offset is None else out + offset.astype(z.dtype)


def _is_zero(value: Any) -> bool:
  return isinstance(value, int | float) and value == 0


def check_options(
  params: LSTMParams,
  *,
  cell_clip: float | None,
  proj_clip: float | None,
) -> None:
  """Checks the run-time options of the cell against its parameters."""
  for name, clip in (('cell_clip', cell_clip), ('proj_clip', proj_clip)):
    if clip is not None and not clip > 0:
      raise ValueError(f'{name} must be positive or None; got {name}={clip}')
  if proj_clip is not None and params.w_proj is None:
    raise ValueError(
      'proj_clip needs a projection (params.w_proj); got params without one'
    )


def is_plain_step(
  params: LSTMParams,
  *,
  forget_bias: float = 0.0,
  cell_clip: float | None = None,
  proj_clip: float | None = None,
  coupled: bool = False,
) -> bool:
  """True when a step is the plain cell: basic params and no options."""
  return (
    is_basic(params)
    and _is_zero(forget_bias)
    and cell_clip is None
    and proj_clip is None
    and not coupled
  )


def cell_update(
  params: LSTMParams,
  h: Array,
  c: Array,
  x: Array,
  *,
  forget_bias: float = 0.0,
  cell_clip: float | None = None,
  proj_clip: float | None = None,
  coupled: bool = False,
) -> LSTMState:
  """The cell with every variant, without argument checks or dropout.

  ``h`` and ``c`` must already be in the state dtype; see :func:`lstm_cell`
  for the equations.
  """
  if is_plain_step(
    params,
    forget_bias=forget_bias,
    cell_clip=cell_clip,
    proj_clip=proj_clip,
    coupled=coupled,
  ):
    return apply_gates(gate_preactivations(params, h, x), c)
  acc = state_dtype(params.w_h.dtype)

  if params.ln is None:
    gates = gate_preactivations(params, h, x)
  else:
    gx = jnp.matmul(
      x.astype(compute_dtype(params.w_x)),
      params.w_x,
      preferred_element_type=acc,
    )
    gh = jnp.matmul(
      h.astype(compute_dtype(params.w_h)),
      params.w_h,
      preferred_element_type=acc,
    )
    gates = (
      _layer_norm(gx, params.ln.scale_x)
      + _layer_norm(gh, params.ln.scale_h)
      + params.b.astype(acc)
    )
  i, f, g, o = jnp.split(gates, 4, axis=-1)

  if params.w_peep is not None:
    w_peep = params.w_peep.astype(acc)
    i = i + w_peep[0] * c
    f = f + w_peep[1] * c
  f = f + forget_bias
  forget = jax.nn.sigmoid(f)
  # sigmoid(-f) is 1 - sigmoid(f) without the cancellation near f >> 0.
  write = jax.nn.sigmoid(-f) if coupled else jax.nn.sigmoid(i)
  c = forget * c + write * jnp.tanh(g)
  if cell_clip is not None:
    c = jnp.clip(c, -cell_clip, cell_clip)

  if params.w_peep is not None:
    o = o + w_peep[2] * c
  c_out = c
  if params.ln is not None:
    c_out = _layer_norm(c, params.ln.scale_c, params.ln.offset_c)
  h = jax.nn.sigmoid(o) * jnp.tanh(c_out)
  if params.w_proj is not None:
    h = jnp.matmul(
      h.astype(compute_dtype(params.w_proj)),
      params.w_proj,
      preferred_element_type=acc,
    )
    if proj_clip is not None:
      h = jnp.clip(h, -proj_clip, proj_clip)
  return LSTMState(h=h, c=c)


def check_rate(name: str, rate: Any) -> None:
  """Raises ValueError unless ``rate`` is a number in [0, 1)."""
  if not isinstance(rate, int | float) or not 0.0 <= rate < 1.0:
    raise ValueError(f'{name} must be a number in [0, 1); got {name}={rate}')


def dropout_mask(
  key: Array, rate: float, shape: tuple[int, ...], dtype: Any = jnp.float32
) -> Array:
  """Draws an inverted-dropout mask: 0 with probability ``rate``, else
  ``1 / (1 - rate)``.

  Multiplying by the mask keeps each element's expectation. Drawing one mask
  per sequence and reusing it at every step gives variational dropout (Gal
  and Ghahramani 2016).

  Args:
    key: a PRNG key.
    rate: drop probability in [0, 1).
    shape: the mask's shape, e.g. [..., I] for the inputs of a batch.
    dtype: the mask's dtype.

  Returns:
    The mask, ``shape``, in ``dtype``.

  Example:
    >>> import jax, jlstm
    >>> m = jlstm.dropout_mask(jax.random.key(0), 0.5, (1000,))
    >>> sorted(set(m.tolist()))
    [0.0, 2.0]
  """
  check_rate('rate', rate)
  keep = jax.random.bernoulli(key, 1.0 - rate, shape)
  return keep.astype(dtype) / jnp.asarray(1.0 - rate, dtype)


def zoneout(
  previous: LSTMState,
  new: LSTMState,
  *,
  cell_rate: float = 0.0,
  hidden_rate: float = 0.0,
  key: Array | None = None,
  training: bool = True,
) -> LSTMState:
  """Zoneout (Krueger et al. 2016): each unit keeps its previous value.

  In training each unit of ``c`` keeps its previous value with probability
  ``cell_rate`` (``h``: ``hidden_rate``), drawn afresh at every step; out
  of training the update is the expectation,
  ``rate * previous + (1 - rate) * new``.

  Args:
    previous: the state before the step, ``h`` [..., H or P], ``c``
      [..., H].
    new: the cell's new state, same shapes.
    cell_rate: zoneout probability of ``c``, in [0, 1).
    hidden_rate: zoneout probability of ``h``, in [0, 1).
    key: PRNG key; needed in training with a rate > 0.
    training: draw the units at random; else take the expectation.

  Returns:
    The :class:`LSTMState` after zoneout.

  Raises:
    ValueError: a rate outside [0, 1), or a rate > 0 in training without a
      key.

  Example:
    >>> import jax, jax.numpy as jnp, jlstm
    >>> old = jlstm.LSTMState(h=jnp.zeros(3), c=jnp.zeros(3))
    >>> new = jlstm.LSTMState(h=jnp.ones(3), c=jnp.ones(3))
    >>> s = jlstm.zoneout(old, new, cell_rate=0.25, training=False)
    >>> s.c.tolist(), s.h.tolist()
    ([0.75, 0.75, 0.75], [1.0, 1.0, 1.0])
    >>> s = jlstm.zoneout(old, new, cell_rate=0.5, key=jax.random.key(0))
    >>> set(s.c.tolist()) <= {0.0, 1.0}
    True
  """
  check_rate('zoneout_cell', cell_rate)
  check_rate('zoneout_hidden', hidden_rate)
  if cell_rate == 0 and hidden_rate == 0:
    return new
  if training and key is None:
    raise ValueError(
      'zoneout in training needs a PRNG key; pass key=... or training=False'
    )
  key_c, key_h = jax.random.split(key) if training else (None, None)

  def mix(prev, value, rate, k):
    if rate == 0:
      return value
    if training:
      keep = jax.random.bernoulli(k, rate, value.shape)
      return jnp.where(keep, prev.astype(value.dtype), value)
    return rate * prev.astype(value.dtype) + (1.0 - rate) * value

  return LSTMState(
    h=mix(previous.h, new.h, hidden_rate, key_h),
    c=mix(previous.c, new.c, cell_rate, key_c),
  )


def lstm_cell(
  params: LSTMParams,
  state: LSTMState,
  x: Array,
  *,
  forget_bias: float = 0.0,
  cell_clip: float | None = None,
  proj_clip: float | None = None,
  coupled: bool = False,
  input_mask: Array | None = None,
  recurrent_mask: Array | None = None,
  zoneout_cell: float = 0.0,
  zoneout_hidden: float = 0.0,
  key: Array | None = None,
  training: bool = True,
) -> LSTMState:
  """One step of the LSTM: a pure function ``(params, state, x) -> state``.

  Computes, with the gate blocks of :data:`GATE_ORDER`::

    gates = x @ w_x + h @ w_h + b          # [..., 4H]
    i, f, g, o = split(gates, 4)
    c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
    h' = sigmoid(o) * tanh(c')

  Each variant field of ``params`` and each option changes one line:

  * ``x * input_mask`` and ``h * recurrent_mask`` replace ``x`` and ``h``
    (masks from :func:`dropout_mask`, drawn once per sequence for
    variational dropout, Gal and Ghahramani 2016).
  * ``params.ln`` (Ba et al. 2016): ``gates = LN(x @ w_x) * scale_x +
    LN(h @ w_h) * scale_h + b`` and ``h' = sigmoid(o) * tanh(LN(c') *
    scale_c + offset_c)``; the state keeps the unnormalised ``c'``.
  * ``params.w_peep`` (Gers and Schmidhuber 2000): ``i += w_peep[0] * c``,
    ``f += w_peep[1] * c`` and ``o += w_peep[2] * c'``.
  * ``forget_bias`` (Jozefowicz et al. 2015; TF1's ``forget_bias``, Haiku's
    +1): ``f += forget_bias`` at run time, the stored ``b`` unchanged.
  * ``coupled`` (CIFG, Greff et al. 2017): ``sigmoid(i)`` becomes
    ``1 - sigmoid(f)``; the i block of the weights is unused.
  * ``cell_clip``: ``c' = clip(c', -cell_clip, cell_clip)``, before the
    output gate's peephole reads it (as TF1's ``LSTMCell``).
  * ``params.w_proj`` (LSTMP, Sak et al. 2014): ``h' = (sigmoid(o) *
    tanh(c')) @ w_proj``, then clipped to ``proj_clip``.
  * ``zoneout_cell``, ``zoneout_hidden`` (Krueger et al. 2016): see
    :func:`zoneout`.

  Args:
    params: :class:`LSTMParams` with ``w_x`` [I, 4H], ``w_h`` [H, 4H],
      ``b`` [4H] and optional variant fields.
    state: :class:`LSTMState`, ``h`` [..., H] (or [..., P] with a
      projection) and ``c`` [..., H]; its batch dims broadcast against
      those of ``x``.
    x: [I] or [..., I] floating input.
    forget_bias: number added to the forget gate's pre-activation.
    cell_clip: positive bound on the cell state, or None.
    proj_clip: positive bound on the projected output, or None.
    coupled: couple the input gate to the forget gate (CIFG).
    input_mask: optional [..., I] multiplier of ``x``.
    recurrent_mask: optional [..., H] (or [..., P]) multiplier of ``h`` on
      its way into the gates.
    zoneout_cell: zoneout probability of ``c``, in [0, 1).
    zoneout_hidden: zoneout probability of ``h``, in [0, 1).
    key: PRNG key for zoneout in training.
    training: draw zoneout at random; else use its expectation.

  Returns:
    The new :class:`LSTMState` in :func:`state_dtype` of the parameters
    (float32 for bfloat16 parameters).

  Raises:
    ValueError: if shapes do not match, options are out of range, or
      zoneout is set in training without a key; TypeError: for
      non-floating input.

  Example:
    >>> import jax, jax.numpy as jnp, jlstm
    >>> p = jlstm.init_params(jax.random.key(0), 3, 4)
    >>> s = jlstm.lstm_cell(p, jlstm.zero_state(4, (2,)), jnp.ones((2, 3)))
    >>> s.h.shape
    (2, 4)
    >>> p = jlstm.init_params(
    ...   jax.random.key(0), 3, 4, peepholes=True, layer_norm=True, proj_size=2
    ... )
    >>> s = jlstm.zero_state(4, (2,), output_size=2)
    >>> s = jlstm.lstm_cell(p, s, jnp.ones((2, 3)), forget_bias=1.0)
    >>> s.h.shape, s.c.shape
    ((2, 2), (2, 4))

  References:
    Hochreiter and Schmidhuber, Long short-term memory, 1997.
  """
  _checks.check_params('params', params)
  input_size, hidden_size = params.input_size, params.hidden_size
  _checks.check_input('x', x, input_size, min_rank=1)
  _checks.check_state(
    'state', state, hidden_size, output_size=params.output_size
  )
  _checks.broadcast_batch(
    'x', tuple(x.shape[:-1]), tuple(state.h.shape[:-1]), 'state'
  )
  check_options(params, cell_clip=cell_clip, proj_clip=proj_clip)
  for name, mask, size in (
    ('input_mask', input_mask, input_size),
    ('recurrent_mask', recurrent_mask, params.output_size),
  ):
    if mask is not None and (mask.ndim < 1 or mask.shape[-1] != size):
      raise ValueError(
        f'{name} must be [..., {size}]; got shape {tuple(mask.shape)}'
      )

  with jax.named_scope('lstm_cell'):
    acc = state_dtype(params.w_h.dtype)
    h, c = state.h.astype(acc), state.c.astype(acc)
    if input_mask is not None:
      x = x * input_mask.astype(x.dtype)
    h_in = h if recurrent_mask is None else h * recurrent_mask.astype(acc)
    new = cell_update(
      params,
      h_in,
      c,
      x,
      forget_bias=forget_bias,
      cell_clip=cell_clip,
      proj_clip=proj_clip,
      coupled=coupled,
    )
    return zoneout(
      LSTMState(h=h, c=c),
      new,
      cell_rate=zoneout_cell,
      hidden_rate=zoneout_hidden,
      key=key,
      training=training,
    )
