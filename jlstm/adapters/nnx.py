"""``flax.nnx`` modules over jlstm's functional core.

``LSTM`` is a drop-in for ``nnx.RNN(nnx.OptimizedLSTMCell(in_features,
hidden_features, rngs=rngs))``: the same call arguments, the same
``(c, h)`` carry and, for the same weights, the same outputs; its
``w_x``, ``w_h`` and ``b`` are exactly that cell's ``dense_i.kernel``,
``dense_h.kernel`` and ``dense_h.bias``. ``StackedLSTM`` runs
:func:`jlstm.unroll_stack` (PyTorch ``nn.LSTM`` semantics).

Both follow NNX's conventions for randomness: a ``deterministic``
attribute (set by ``module.eval()`` and ``module.train()``), and the
``'dropout'`` stream of the ``rngs`` given at construction or at the call.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jlstm.adapters import _common

Array = jax.Array

# Flax's defaults for its LSTM cells.
_KERNEL_INIT = nnx.initializers.lecun_normal()
_RECURRENT_KERNEL_INIT = nnx.initializers.orthogonal()
_BIAS_INIT = nnx.initializers.zeros_init()


class _Cell(nnx.Module):
  """One cell's parameters, as :class:`nnx.Param` attributes."""

  def __init__(self, input_size, hidden_size, *, settings, rngs):
    shapes = _common.cell_shapes(
      input_size,
      hidden_size,
      proj_size=settings['proj_size'],
      peepholes=settings['peepholes'],
      layer_norm=settings['layer_norm'],
    )
    self.fields = tuple(shapes)
    for field, (shape, kind) in shapes.items():
      init = _common.initializer(
        kind,
        kernel_init=settings['kernel_init'],
        recurrent_kernel_init=settings['recurrent_kernel_init'],
        bias_init=settings['bias_init'],
      )
      value = init(rngs.params(), shape, settings['param_dtype'])
      setattr(self, field, nnx.Param(value))

  def params(self):
    return _common.to_params(
      {field: getattr(self, field)[...] for field in self.fields}
    )


def _settings(kwargs: dict[str, Any]) -> dict[str, Any]:
  keys = (
    'proj_size',
    'peepholes',
    'layer_norm',
    'kernel_init',
    'recurrent_kernel_init',
    'bias_init',
    'param_dtype',
  )
  return {k: kwargs[k] for k in keys}


def _draw_key(module, rngs, training: bool, rates) -> Array | None:
  """A key from the call's ``rngs`` or the stored ones, when one is needed."""
  if not training or not any(rate > 0 for rate in rates.values()):
    return None
  source = module.rngs if rngs is None else rngs
  if source is None:
    named = ', '.join(f'{k}={v}' for k, v in rates.items() if v > 0)
    raise ValueError(
      f'{named} in training needs randomness: pass rngs=nnx.Rngs(...) to the '
      'constructor or the call, or set deterministic=True'
    )
  if isinstance(source, nnx.Rngs):
    return source.dropout()
  return source


class LSTM(nnx.Module):
  """One LSTM layer over a sequence, a drop-in for ``nnx.RNN`` of an LSTM.

  Args:
    in_features: I.
    hidden_features: H.
    proj_size: P < H for a projected cell (LSTMP); ``h`` is then [..., P].
    peepholes: add peephole weights ``w_peep`` (zeros at init).
    layer_norm: layer-normalise the gates and the cell (Ba et al. 2016).
    forget_bias: added to the forget gate at run time.
    cell_clip, proj_clip: bounds on ``c`` and on the projected ``h``.
    coupled: couple the input gate to the forget gate (CIFG).
    input_dropout, recurrent_dropout: variational dropout rates.
    zoneout_cell, zoneout_hidden: zoneout probabilities.
    deterministic: turns dropout and random zoneout off.
    time_major, return_carry, reverse, keep_order, unroll: as ``nnx.RNN``.
    remat: recompute each step in the backward pass.
    kernel_init, recurrent_kernel_init, bias_init: initialisers of
      ``w_x`` (per gate block), ``w_h`` (per gate block) and ``b``; Flax's
      defaults.
    param_dtype: dtype of the parameters.
    rngs: draws the parameters; its ``'dropout'`` stream (or its default
      one) is kept for dropout and zoneout when a rate is set.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jlstm.adapters import nnx as jnnx
    >>> layer = jnnx.LSTM(8, 16, rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((4, 10, 8))).shape  # [B, T, I] -> [B, T, H]
    (4, 10, 16)
  """

  def __init__(
    self,
    in_features: int,
    hidden_features: int,
    *,
    proj_size: int | None = None,
    peepholes: bool = False,
    layer_norm: bool = False,
    forget_bias: float = 0.0,
    cell_clip: float | None = None,
    proj_clip: float | None = None,
    coupled: bool = False,
    input_dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    zoneout_cell: float = 0.0,
    zoneout_hidden: float = 0.0,
    deterministic: bool = False,
    time_major: bool = False,
    return_carry: bool = False,
    reverse: bool = False,
    keep_order: bool = False,
    unroll: int = 1,
    remat: bool = False,
    kernel_init: Any = _KERNEL_INIT,
    recurrent_kernel_init: Any = _RECURRENT_KERNEL_INIT,
    bias_init: Any = _BIAS_INIT,
    param_dtype: Any = jnp.float32,
    rngs: nnx.Rngs,
  ):
    args = locals()
    settings = _settings(args)
    self.in_features = in_features
    self.hidden_features = hidden_features
    self.options = {name: args[name] for name in _common.OPTION_NAMES}
    self.rates = {name: args[name] for name in _common.RATE_NAMES}
    self.deterministic = deterministic
    self.time_major = time_major
    self.return_carry = return_carry
    self.reverse = reverse
    self.keep_order = keep_order
    self.unroll = unroll
    self.remat = remat
    self.cell = _Cell(
      in_features, hidden_features, settings=settings, rngs=rngs
    )
    self.rngs = rngs if any(r > 0 for r in self.rates.values()) else None

  def __call__(
    self,
    inputs: Array,
    *,
    initial_carry: Any = None,
    seq_lengths: Array | None = None,
    resets: Array | None = None,
    return_carry: bool | None = None,
    time_major: bool | None = None,
    reverse: bool | None = None,
    keep_order: bool | None = None,
    deterministic: bool | None = None,
    rngs: nnx.Rngs | Array | None = None,
  ):
    """Runs the layer.

    Args:
      inputs: [..., T, I] ([T, ..., I] when time-major).
      initial_carry: ``(c, h)`` like Flax cells carry (or an
        :class:`jlstm.LSTMState`); zeros when None.
      seq_lengths: optional int [...] valid lengths per sequence.
      resets: optional bool [..., T] ([T, ...] when time-major) reset mask;
        see :func:`jlstm.unroll`.
      return_carry, time_major, reverse, keep_order, deterministic:
        override the attributes for this call.
      rngs: an ``nnx.Rngs`` or a key for this call's dropout and zoneout.

    Returns:
      outputs [..., T, H or P], or ``((c, h), outputs)`` with
      ``return_carry``.
    """
    pick = lambda arg, attr: attr if arg is None else arg
    training = not pick(deterministic, self.deterministic)
    key = _draw_key(self, rngs, training, self.rates)
    carry, outputs = _common.run_layer(
      self.cell.params(),
      inputs,
      initial_carry,
      seq_lengths=seq_lengths,
      resets=resets,
      time_major=pick(time_major, self.time_major),
      reverse=pick(reverse, self.reverse),
      keep_order=pick(keep_order, self.keep_order),
      unroll_factor=self.unroll,
      remat=self.remat,
      options=self.options,
      rates=self.rates,
      key=key,
      training=training,
    )
    if pick(return_carry, self.return_carry):
      return carry, outputs
    return outputs


class StackedLSTM(nnx.Module):
  """A stack of LSTM layers with PyTorch ``nn.LSTM`` semantics.

  Wraps :func:`jlstm.unroll_stack`. Each cell's parameters sit in a
  submodule ``layer{l}_fwd`` or ``layer{l}_bwd``; the carry is jlstm's
  ``states[layer][direction]`` of :class:`jlstm.LSTMState`.

  Args:
    in_features: I.
    hidden_size: H.
    num_layers: number of stacked layers.
    bidirectional: add a backward direction to every layer.
    dropout: rate on the outputs of every layer but the last.
    The other arguments are as in :class:`LSTM`.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jlstm.adapters import nnx as jnnx
    >>> model = jnnx.StackedLSTM(
    ...   8, 16, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0)
    ... )
    >>> model(jnp.ones((4, 10, 8))).shape
    (4, 10, 32)
  """

  def __init__(
    self,
    in_features: int,
    hidden_size: int,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    proj_size: int | None = None,
    peepholes: bool = False,
    layer_norm: bool = False,
    forget_bias: float = 0.0,
    cell_clip: float | None = None,
    proj_clip: float | None = None,
    coupled: bool = False,
    input_dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    zoneout_cell: float = 0.0,
    zoneout_hidden: float = 0.0,
    deterministic: bool = False,
    time_major: bool = False,
    return_carry: bool = False,
    unroll: int = 1,
    remat: bool = False,
    kernel_init: Any = _KERNEL_INIT,
    recurrent_kernel_init: Any = _RECURRENT_KERNEL_INIT,
    bias_init: Any = _BIAS_INIT,
    param_dtype: Any = jnp.float32,
    rngs: nnx.Rngs,
  ):
    args = locals()
    settings = _settings(args)
    self.options = {name: args[name] for name in _common.OPTION_NAMES}
    self.rates = {name: args[name] for name in _common.RATE_NAMES}
    self.dropout = dropout
    self.deterministic = deterministic
    self.time_major = time_major
    self.return_carry = return_carry
    self.unroll = unroll
    self.remat = remat
    self.num_layers = num_layers
    self.directions = 2 if bidirectional else 1
    output_size = proj_size or hidden_size
    for layer in range(num_layers):
      size = in_features if layer == 0 else self.directions * output_size
      for suffix in ('fwd', 'bwd')[: self.directions]:
        cell = _Cell(size, hidden_size, settings=settings, rngs=rngs)
        setattr(self, f'layer{layer}_{suffix}', cell)
    all_rates = {'dropout': dropout, **self.rates}
    self.rngs = rngs if any(r > 0 for r in all_rates.values()) else None

  def params(self):
    """The stack's parameters as jlstm's ``params[layer][direction]``."""
    return tuple(
      tuple(
        getattr(self, f'layer{layer}_{suffix}').params()
        for suffix in ('fwd', 'bwd')[: self.directions]
      )
      for layer in range(self.num_layers)
    )

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
    rngs: nnx.Rngs | Array | None = None,
  ):
    """Runs the stack.

    Args:
      inputs: [..., T, I] ([T, ..., I] when time-major).
      initial_states: ``states[layer][direction]`` of
        :class:`jlstm.LSTMState`; zeros when None.
      seq_lengths: optional int [...] valid lengths per sequence.
      resets: optional bool [..., T] ([T, ...] when time-major) reset mask.
      return_carry, time_major, deterministic: override the attributes.
      rngs: an ``nnx.Rngs`` or a key for this call's randomness.

    Returns:
      outputs [..., T, D * H_out], or ``(final_states, outputs)`` with
      ``return_carry``.
    """
    pick = lambda arg, attr: attr if arg is None else arg
    training = not pick(deterministic, self.deterministic)
    all_rates = {'dropout': self.dropout, **self.rates}
    key = _draw_key(self, rngs, training, all_rates)
    finals, outputs = _common.run_stack(
      self.params(),
      inputs,
      initial_states,
      seq_lengths=seq_lengths,
      resets=resets,
      time_major=pick(time_major, self.time_major),
      dropout=self.dropout,
      unroll_factor=self.unroll,
      remat=self.remat,
      options=self.options,
      rates=self.rates,
      key=key,
      training=training,
    )
    if pick(return_carry, self.return_carry):
      return finals, outputs
    return outputs
