"""What the linen and NNX adapters share: parameter trees and the run."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jlstm.cell import LayerNormParams
from jlstm.cell import LSTMParams
from jlstm.cell import LSTMState
from jlstm.layers import unroll_stack
from jlstm.unroll import reverse_index
from jlstm.unroll import take_time
from jlstm.unroll import unroll

Array = jax.Array
Initializer = Callable[..., Array]

#: Flat parameter names the modules use, one per array of LSTMParams.
LN_NAMES = ('ln_scale_x', 'ln_scale_h', 'ln_scale_c', 'ln_offset_c')

#: The cell's run-time options, forwarded to the functional core.
OPTION_NAMES = ('forget_bias', 'cell_clip', 'proj_clip', 'coupled')
#: The regularisation rates of one layer.
RATE_NAMES = (
  'input_dropout',
  'recurrent_dropout',
  'zoneout_cell',
  'zoneout_hidden',
)


def per_gate(init: Initializer) -> Initializer:
  """Applies ``init`` to each [in, H] gate block of an [in, 4H] matrix.

  Flax draws each gate's kernel on its own (an orthogonal recurrent kernel
  is orthogonal per gate), so the fused matrix does the same.
  """

  def init_fused(key, shape, dtype=jnp.float32):
    rows, gates = shape
    keys = jax.random.split(key, 4)
    blocks = [init(k, (rows, gates // 4), dtype) for k in keys]
    return jnp.concatenate(blocks, axis=-1)

  return init_fused


def cell_shapes(
  input_size: int,
  hidden_size: int,
  *,
  proj_size: int | None,
  peepholes: bool,
  layer_norm: bool,
) -> dict[str, tuple[tuple[int, ...], str]]:
  """Name -> (shape, kind) of each parameter of one cell.

  ``kind`` says which initialiser draws it: ``'kernel'``, ``'recurrent'``,
  ``'bias'``, ``'zeros'`` or ``'ones'``.
  """
  if proj_size is not None and not 0 < proj_size < hidden_size:
    raise ValueError(
      f'proj_size must be in (0, hidden_size={hidden_size}); got '
      f'proj_size={proj_size}'
    )
  gates = 4 * hidden_size
  recurrent = hidden_size if proj_size is None else proj_size
  shapes = {
    'w_x': ((input_size, gates), 'kernel'),
    'w_h': ((recurrent, gates), 'recurrent'),
    'b': ((gates,), 'bias'),
  }
  if peepholes:
    # Zero peepholes start the cell as the plain one.
    shapes['w_peep'] = ((3, hidden_size), 'zeros')
  if layer_norm:
    shapes['ln_scale_x'] = ((gates,), 'ones')
    shapes['ln_scale_h'] = ((gates,), 'ones')
    shapes['ln_scale_c'] = ((hidden_size,), 'ones')
    shapes['ln_offset_c'] = ((hidden_size,), 'zeros')
  if proj_size is not None:
    shapes['w_proj'] = ((hidden_size, proj_size), 'projection')
  return shapes


def initializer(
  kind: str,
  *,
  kernel_init: Initializer,
  recurrent_kernel_init: Initializer,
  bias_init: Initializer,
) -> Initializer:
  """The initialiser for one ``kind`` of :func:`cell_shapes`."""
  return {
    'kernel': per_gate(kernel_init),
    'recurrent': per_gate(recurrent_kernel_init),
    'bias': bias_init,
    'projection': kernel_init,
    'zeros': jax.nn.initializers.zeros,
    'ones': jax.nn.initializers.ones,
  }[kind]


def to_params(tree: Mapping[str, Array]) -> LSTMParams:
  """Builds :class:`~jlstm.LSTMParams` from a flat parameter mapping."""
  ln = None
  if 'ln_scale_x' in tree:
    ln = LayerNormParams(*(tree[name] for name in LN_NAMES))
  return LSTMParams(
    w_x=tree['w_x'],
    w_h=tree['w_h'],
    b=tree['b'],
    w_peep=tree.get('w_peep'),
    ln=ln,
    w_proj=tree.get('w_proj'),
  )


def to_time_major(x: Array | None, time_major: bool, feature_axes: int):
  """Moves the time axis of a batch-major array to the front."""
  if x is None or time_major:
    return x
  return jnp.moveaxis(x, x.ndim - 1 - feature_axes, 0)


def from_time_major(x: Array, time_major: bool) -> Array:
  """Moves the leading time axis back before the feature axis."""
  return x if time_major else jnp.moveaxis(x, 0, x.ndim - 2)


def to_state(carry: Any) -> LSTMState | None:
  """Reads a Flax ``(c, h)`` carry (or an LSTMState) as an LSTMState."""
  if carry is None or isinstance(carry, LSTMState):
    return carry
  if not isinstance(carry, tuple | list) or len(carry) != 2:
    raise TypeError(
      'initial_carry must be a (c, h) pair as Flax LSTM cells carry it, or '
      f'an LSTMState; got {type(carry).__name__}'
    )
  c, h = carry
  return LSTMState(h=h, c=c)


def check_deterministic(rates: Mapping[str, float], deterministic) -> bool:
  """Resolves ``deterministic``: needed only when a rate is set."""
  if any(rate > 0 for rate in rates.values()) and deterministic is None:
    named = ', '.join(f'{k}={v}' for k, v in rates.items() if v > 0)
    raise ValueError(
      f'{named} needs deterministic=True or False, as a module attribute '
      'or a call argument'
    )
  return bool(deterministic)


def run_layer(
  params: LSTMParams,
  inputs: Array,
  carry: Any,
  *,
  seq_lengths: Array | None,
  resets: Array | None,
  time_major: bool,
  reverse: bool,
  keep_order: bool,
  unroll_factor: int | bool,
  remat: bool,
  options: Mapping[str, Any],
  rates: Mapping[str, float],
  key: Array | None,
  training: bool,
) -> tuple[tuple[Array, Array], Array]:
  """Runs one layer with ``nn.RNN``'s argument conventions.

  Returns ``((c, h), outputs)`` with outputs [..., T, H] (time-major when
  ``time_major``); with ``reverse`` and not ``keep_order`` the outputs come
  in processing order, as ``nn.RNN`` returns them.
  """
  xs = to_time_major(inputs, time_major, 1)
  resets = to_time_major(resets, time_major, 0)
  final, hs = unroll(
    params,
    xs,
    to_state(carry),
    lengths=seq_lengths,
    reverse=reverse,
    unroll=unroll_factor,
    remat=remat,
    resets=resets,
    key=key,
    training=training,
    **options,
    **rates,
  )
  if reverse and not keep_order:
    if seq_lengths is None:
      hs = jnp.flip(hs, axis=0)
    else:
      lengths = jnp.broadcast_to(
        jnp.asarray(seq_lengths, jnp.int32), hs.shape[1:-1]
      )
      hs = take_time(hs, reverse_index(lengths, hs.shape[0]))
  return (final.c, final.h), from_time_major(hs, time_major)


def run_stack(
  params,
  inputs: Array,
  states,
  *,
  seq_lengths: Array | None,
  resets: Array | None,
  time_major: bool,
  dropout: float,
  unroll_factor: int | bool,
  remat: bool,
  options: Mapping[str, Any],
  rates: Mapping[str, float],
  key: Array | None,
  training: bool,
):
  """Runs :func:`~jlstm.unroll_stack` on batch- or time-major inputs."""
  xs = to_time_major(inputs, time_major, 1)
  resets = to_time_major(resets, time_major, 0)
  finals, outputs = unroll_stack(
    params,
    xs,
    states,
    lengths=seq_lengths,
    dropout=dropout,
    key=key,
    training=training,
    resets=resets,
    unroll=unroll_factor,
    remat=remat,
    **options,
    **rates,
  )
  return finals, from_time_major(outputs, time_major)
