"""``flax.linen`` modules over jlstm's functional core.

``LSTM`` is a drop-in for ``nn.RNN(nn.OptimizedLSTMCell(features))``: the
same call arguments, the same ``(c, h)`` carry and, for the same weights,
the same outputs; it adds jlstm's cell variants, resets and regularisation.
``StackedLSTM`` runs :func:`jlstm.unroll_stack` (PyTorch ``nn.LSTM``
semantics: layers, both directions, dropout between layers).

Weights: each cell's parameters are ``w_x`` [I, 4H], ``w_h`` [H, 4H] and
``b`` [4H] with gate blocks i, f, g, o, plus the variant fields
(``w_peep``, ``ln_*``, ``w_proj``); see :class:`jlstm.LSTMParams`. Flax's
per-gate kernels ``ii``..``io`` and ``hi``..``ho`` concatenate into
``w_x`` and ``w_h``, and the ``h*`` biases into ``b``
(:func:`jlstm.interop.from_flax` does this).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jlstm.adapters import _common

Array = jax.Array


def _rates(module) -> dict[str, float]:
  return {name: getattr(module, name) for name in _common.RATE_NAMES}


def _options(module) -> dict[str, Any]:
  return {name: getattr(module, name) for name in _common.OPTION_NAMES}


def _cell_tree(module, name: str | None, input_size: int) -> dict[str, Array]:
  """Declares one cell's parameters and returns them by their flat names.

  With a ``name`` the cell's parameters sit in one mapping under it (a
  stack); without, each is a parameter of the module.
  """
  shapes = _common.cell_shapes(
    input_size,
    module.hidden_size,
    proj_size=module.proj_size,
    peepholes=module.peepholes,
    layer_norm=module.layer_norm,
  )
  inits = {
    field: _common.initializer(
      kind,
      kernel_init=module.kernel_init,
      recurrent_kernel_init=module.recurrent_kernel_init,
      bias_init=module.bias_init,
    )
    for field, (_, kind) in shapes.items()
  }
  dtype = module.param_dtype
  if name is None:
    return {
      field: module.param(field, inits[field], shape, dtype)
      for field, (shape, _) in shapes.items()
    }

  def init_cell(key):
    keys = jax.random.split(key, len(shapes))
    return {
      field: inits[field](k, shape, dtype)
      for k, (field, (shape, _)) in zip(keys, shapes.items(), strict=True)
    }

  return module.param(name, init_cell)


class LSTM(nn.Module):
  """One LSTM layer over a sequence, a drop-in for ``nn.RNN`` of an LSTM.

  Same call as ``nn.RNN(nn.OptimizedLSTMCell(features))``: inputs
  [..., T, I] (or [T, ..., I] with ``time_major``), ``(c, h)`` carry,
  ``seq_lengths``, ``reverse`` and ``keep_order``; for the same weights the
  same outputs at every valid step. Unlike ``nn.RNN``, outputs past a
  sequence's length are zero. The cell is :func:`jlstm.lstm_cell` with the
  variants and options of the attributes below.

  Attributes:
    features: H, the number of units (``hidden_size`` is an alias).
    proj_size: P < H for a projected cell (LSTMP); ``h`` is then [..., P].
    peepholes: add peephole weights ``w_peep`` (zeros at init).
    layer_norm: layer-normalise the gates and the cell (Ba et al. 2016).
    forget_bias: added to the forget gate at run time.
    cell_clip, proj_clip: bounds on ``c`` and on the projected ``h``.
    coupled: couple the input gate to the forget gate (CIFG).
    input_dropout, recurrent_dropout: variational dropout rates (one mask
      per sequence, reused at every step).
    zoneout_cell, zoneout_hidden: zoneout probabilities.
    deterministic: turns dropout and random zoneout off; needed (here or
      at the call) when a rate is set. Draws use the ``'dropout'`` RNG.
    time_major, return_carry, reverse, keep_order, unroll: as ``nn.RNN``.
    remat: recompute each step in the backward pass.
    kernel_init, recurrent_kernel_init, bias_init: Flax's defaults,
      applied per gate block as Flax does.
    param_dtype: dtype of the parameters (bfloat16 keeps a float32 state).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jlstm.adapters import linen
    >>> layer = linen.LSTM(features=16)
    >>> x = jnp.ones((4, 10, 8))  # [B, T, I]
    >>> variables = layer.init(jax.random.key(0), x)
    >>> layer.apply(variables, x).shape
    (4, 10, 16)
  """

  features: int
  proj_size: int | None = None
  peepholes: bool = False
  layer_norm: bool = False
  forget_bias: float = 0.0
  cell_clip: float | None = None
  proj_clip: float | None = None
  coupled: bool = False
  input_dropout: float = 0.0
  recurrent_dropout: float = 0.0
  zoneout_cell: float = 0.0
  zoneout_hidden: float = 0.0
  deterministic: bool | None = None
  time_major: bool = False
  return_carry: bool = False
  reverse: bool = False
  keep_order: bool = False
  unroll: int = 1
  remat: bool = False
  kernel_init: Any = nn.initializers.lecun_normal()
  recurrent_kernel_init: Any = nn.initializers.orthogonal()
  bias_init: Any = nn.initializers.zeros_init()
  param_dtype: Any = jnp.float32

  @property
  def hidden_size(self) -> int:
    """H, the number of units."""
    return self.features

  @nn.compact
  def __call__(
    self,
    inputs: Array,
    *,
    initial_carry: Any = None,
    init_key: Array | None = None,
    seq_lengths: Array | None = None,
    resets: Array | None = None,
    return_carry: bool | None = None,
    time_major: bool | None = None,
    reverse: bool | None = None,
    keep_order: bool | None = None,
    deterministic: bool | None = None,
  ):
    """Runs the layer.

    Args:
      inputs: [..., T, I] ([T, ..., I] when time-major).
      initial_carry: ``(c, h)`` like Flax cells carry (or an
        :class:`jlstm.LSTMState`); zeros when None.
      init_key: accepted for ``nn.RNN`` compatibility; the zero carry needs
        no key.
      seq_lengths: optional int [...] valid lengths per sequence.
      resets: optional bool [..., T] ([T, ...] when time-major) reset mask;
        see :func:`jlstm.unroll`.
      return_carry, time_major, reverse, keep_order: override the
        attributes for this call.
      deterministic: overrides the attribute.

    Returns:
      outputs [..., T, H or P], or ``((c, h), outputs)`` with
      ``return_carry``.
    """
    del init_key
    pick = lambda arg, attr: attr if arg is None else arg
    time_major = pick(time_major, self.time_major)
    rates = _rates(self)
    deterministic = _common.check_deterministic(
      rates, pick(deterministic, self.deterministic)
    )
    training = not deterministic
    key = None
    if training and any(rate > 0 for rate in rates.values()):
      key = self.make_rng('dropout')

    input_size = inputs.shape[-1]
    params = _common.to_params(_cell_tree(self, None, input_size))
    carry, outputs = _common.run_layer(
      params,
      inputs,
      initial_carry,
      seq_lengths=seq_lengths,
      resets=resets,
      time_major=time_major,
      reverse=pick(reverse, self.reverse),
      keep_order=pick(keep_order, self.keep_order),
      unroll_factor=self.unroll,
      remat=self.remat,
      options=_options(self),
      rates=rates,
      key=key,
      training=training,
    )
    if pick(return_carry, self.return_carry):
      return carry, outputs
    return outputs


class StackedLSTM(nn.Module):
  """A stack of LSTM layers with PyTorch ``nn.LSTM`` semantics.

  Wraps :func:`jlstm.unroll_stack`. Parameters live under
  ``layer{l}_fwd`` and ``layer{l}_bwd``, one mapping of
  :class:`jlstm.LSTMParams` fields per cell; the carry is jlstm's
  ``states[layer][direction]`` of :class:`jlstm.LSTMState`.

  Attributes:
    hidden_size: H.
    num_layers: number of stacked layers.
    bidirectional: add a backward direction to every layer.
    dropout: rate on the outputs of every layer but the last.
    The cell attributes, ``deterministic``, ``time_major``,
    ``return_carry``, ``unroll``, ``remat``, the initialisers and
    ``param_dtype`` are as in :class:`LSTM`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jlstm.adapters import linen
    >>> model = linen.StackedLSTM(16, num_layers=2, bidirectional=True)
    >>> x = jnp.ones((4, 10, 8))  # [B, T, I]
    >>> variables = model.init(jax.random.key(0), x)
    >>> model.apply(variables, x, seq_lengths=jnp.array([10, 7, 3, 1])).shape
    (4, 10, 32)
  """

  hidden_size: int
  num_layers: int = 1
  bidirectional: bool = False
  dropout: float = 0.0
  proj_size: int | None = None
  peepholes: bool = False
  layer_norm: bool = False
  forget_bias: float = 0.0
  cell_clip: float | None = None
  proj_clip: float | None = None
  coupled: bool = False
  input_dropout: float = 0.0
  recurrent_dropout: float = 0.0
  zoneout_cell: float = 0.0
  zoneout_hidden: float = 0.0
  deterministic: bool | None = None
  time_major: bool = False
  return_carry: bool = False
  unroll: int = 1
  remat: bool = False
  kernel_init: Any = nn.initializers.lecun_normal()
  recurrent_kernel_init: Any = nn.initializers.orthogonal()
  bias_init: Any = nn.initializers.zeros_init()
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(
    self,
    inputs: Array,
    *,
    initial_states: Any = None,
    seq_lengths: Array | None = None,
    resets: Array | None = None,
    return_carry: bool | None = None,
    time_major: bool | None = None,
    deterministic: bool | None = None,
  ):
    """Runs the stack.

    Args:
      inputs: [..., T, I] ([T, ..., I] when time-major).
      initial_states: ``states[layer][direction]`` of
        :class:`jlstm.LSTMState`; zeros when None.
      seq_lengths: optional int [...] valid lengths per sequence.
      resets: optional bool [..., T] ([T, ...] when time-major) reset mask.
      return_carry, time_major, deterministic: override the attributes.

    Returns:
      outputs [..., T, D * H_out], or ``(final_states, outputs)`` with
      ``return_carry``.
    """
    pick = lambda arg, attr: attr if arg is None else arg
    rates = _rates(self)
    all_rates = {'dropout': self.dropout, **rates}
    deterministic = _common.check_deterministic(
      all_rates, pick(deterministic, self.deterministic)
    )
    training = not deterministic
    key = None
    if training and any(rate > 0 for rate in all_rates.values()):
      key = self.make_rng('dropout')

    directions = 2 if self.bidirectional else 1
    output_size = self.proj_size or self.hidden_size
    params = []
    for layer in range(self.num_layers):
      input_size = inputs.shape[-1] if layer == 0 else directions * output_size
      params.append(
        tuple(
          _common.to_params(
            _cell_tree(self, f'layer{layer}_{suffix}', input_size)
          )
          for suffix in ('fwd', 'bwd')[:directions]
        )
      )
    finals, outputs = _common.run_stack(
      tuple(params),
      inputs,
      initial_states,
      seq_lengths=seq_lengths,
      resets=resets,
      time_major=pick(time_major, self.time_major),
      dropout=self.dropout,
      unroll_factor=self.unroll,
      remat=self.remat,
      options=_options(self),
      rates=rates,
      key=key,
      training=training,
    )
    if pick(return_carry, self.return_carry):
      return finals, outputs
    return outputs
