"""Deep and bidirectional LSTM networks: stacks of cells over time.

A stack's parameters are nested tuples ``params[layer][direction]`` of
:class:`~jlstm.LSTMParams`, direction 0 running forward in time and
direction 1 (bidirectional stacks only) backward. Its states have the same
nesting of :class:`~jlstm.LSTMState`. The semantics are those of PyTorch's
``nn.LSTM``: each layer reads the concatenated outputs of both directions of
the layer below, the backward direction's output for step t sits at
position t, and dropout acts between layers only.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jlstm import _checks
from jlstm.cell import LSTMParams
from jlstm.cell import LSTMState
from jlstm.cell import check_rate
from jlstm.cell import dropout_mask
from jlstm.cell import init_params
from jlstm.cell import state_dtype
from jlstm.cell import zero_state
from jlstm.unroll import unroll as unroll_sequence

Array = jax.Array

#: Stack parameters: ``params[layer][direction]``.
StackParams = tuple[tuple[LSTMParams, ...], ...]
#: Stack states: ``states[layer][direction]``.
StackState = tuple[tuple[LSTMState, ...], ...]


def init_stack(
  key: Array,
  input_size: int,
  hidden_size: int,
  *,
  num_layers: int = 1,
  bidirectional: bool = False,
  proj_size: int | None = None,
  scheme: str = 'seed',
  scale: float | None = None,
  forget_bias: float | None = None,
  peepholes: bool = False,
  layer_norm: bool = False,
  dtype: Any = jnp.float32,
) -> StackParams:
  """Draws the parameters of a stack of LSTM layers.

  Layer 0 reads inputs of size I; every later layer reads the outputs of
  the layer below, of size D * H_out, where D is 2 for a bidirectional
  stack and 1 otherwise, and H_out is ``proj_size`` or H.

  Args:
    key: a PRNG key; each layer and direction gets its own split of it.
    input_size: I.
    hidden_size: H.
    num_layers: number of stacked layers.
    bidirectional: add a backward-running direction to every layer.
    proj_size: P < H to project each cell's output with ``w_proj`` [H, P]
      (LSTMP, Sak et al. 2014), as PyTorch's ``proj_size`` does.
    scheme: the initialisation scheme of :func:`~jlstm.init_params`.
    scale: the scheme's scale, see :func:`~jlstm.init_params`.
    forget_bias: if given, the stored forget-gate bias.
    peepholes: give every cell peephole weights ``w_peep`` [3, H].
    layer_norm: give every cell layer-normalisation parameters.
    dtype: floating dtype of the parameters.

  Returns:
    ``params[layer][direction]``, a tuple of ``num_layers`` tuples of D
    :class:`~jlstm.LSTMParams`.

  Raises:
    ValueError: for non-positive sizes or ``proj_size`` not in (0, H).

  Example:
    >>> import jax, jlstm
    >>> params = jlstm.init_stack(
    ...   jax.random.key(0), 8, 16, num_layers=2, bidirectional=True
    ... )
    >>> len(params), len(params[0]), params[1][0].w_x.shape
    (2, 2, (32, 64))
  """
  _checks.positive_int('input_size', input_size)
  _checks.positive_int('hidden_size', hidden_size)
  _checks.positive_int('num_layers', num_layers)
  if proj_size is not None:
    _checks.positive_int('proj_size', proj_size)
    if proj_size >= hidden_size:
      raise ValueError(
        f'proj_size must be smaller than hidden_size={hidden_size}; got '
        f'proj_size={proj_size}'
      )
  directions = 2 if bidirectional else 1
  output_size = hidden_size if proj_size is None else proj_size
  keys = jax.random.split(key, (num_layers, directions))

  layers = []
  for layer in range(num_layers):
    layer_input = input_size if layer == 0 else directions * output_size
    layers.append(
      tuple(
        init_params(
          keys[layer, direction],
          layer_input,
          hidden_size,
          scheme=scheme,
          scale=scale,
          forget_bias=forget_bias,
          peepholes=peepholes,
          layer_norm=layer_norm,
          proj_size=proj_size,
          dtype=dtype,
        )
        for direction in range(directions)
      )
    )
  return tuple(layers)


def check_stack(params: Any) -> tuple[int, int]:
  """Checks the nesting of stack parameters.

  Returns:
    ``(num_layers, directions)``.

  Raises:
    TypeError or ValueError naming what is wrong.
  """
  if isinstance(params, LSTMParams) or not isinstance(params, tuple | list):
    raise TypeError(
      'params must be stack parameters params[layer][direction] of '
      f'LSTMParams (see init_stack); got {type(params).__name__}'
    )
  if not params:
    raise ValueError('params must hold at least one layer; got ()')
  directions = None
  for layer, layer_params in enumerate(params):
    if isinstance(layer_params, LSTMParams) or not isinstance(
      layer_params, tuple | list
    ):
      raise TypeError(
        f'params[{layer}] must be a tuple of 1 or 2 LSTMParams (one per '
        f'direction); got {type(layer_params).__name__}'
      )
    if len(layer_params) not in (1, 2):
      raise ValueError(
        f'params[{layer}] must hold 1 (forward) or 2 (forward, backward) '
        f'directions; got {len(layer_params)}'
      )
    if directions is None:
      directions = len(layer_params)
    elif len(layer_params) != directions:
      raise ValueError(
        f'every layer must have the same number of directions; params[0] '
        f'has {directions}, params[{layer}] has {len(layer_params)}'
      )
    for direction, cell_params in enumerate(layer_params):
      _checks.check_params(f'params[{layer}][{direction}]', cell_params)
  return len(params), directions


def _check_states(states: Any, params: StackParams) -> None:
  """Checks that ``states`` nests like ``params``, naming the first error."""
  num_layers, directions = len(params), len(params[0])
  if not isinstance(states, tuple | list) or isinstance(states, LSTMState):
    raise TypeError(
      f'states must be states[layer][direction] of LSTMState, nested like '
      f'params ({num_layers} layers x {directions} directions); got '
      f'{type(states).__name__}'
    )
  if len(states) != num_layers:
    raise ValueError(
      f'states must hold one entry per layer, {num_layers}; got {len(states)}'
    )
  for layer, layer_states in enumerate(states):
    if not isinstance(layer_states, tuple | list) or isinstance(
      layer_states, LSTMState
    ):
      raise TypeError(
        f'states[{layer}] must be a tuple of {directions} LSTMState (one '
        f'per direction); got {type(layer_states).__name__}'
      )
    if len(layer_states) != directions:
      raise ValueError(
        f'states[{layer}] must hold {directions} direction(s) to match '
        f'params; got {len(layer_states)}'
      )
    for direction, state in enumerate(layer_states):
      cell_params = params[layer][direction]
      _checks.check_state(
        f'states[{layer}][{direction}]',
        state,
        cell_params.hidden_size,
        output_size=cell_params.output_size,
      )


def zero_stack_state(
  params: StackParams, batch_shape: tuple[int, ...] = ()
) -> StackState:
  """Returns the all-zero state of a stack, nested like ``params``.

  Args:
    params: stack parameters, ``params[layer][direction]``.
    batch_shape: the leading batch dims ``...``.

  Returns:
    ``states[layer][direction]`` of :class:`~jlstm.LSTMState` with ``h``
    [..., H_out] and ``c`` [..., H], in the state dtype of the parameters.

  Example:
    >>> import jax, jlstm
    >>> params = jlstm.init_stack(jax.random.key(0), 3, 4, num_layers=2)
    >>> states = jlstm.zero_stack_state(params, (5,))
    >>> states[1][0].h.shape
    (5, 4)
  """
  check_stack(params)
  batch_shape = _checks.shape_tuple('batch_shape', batch_shape)
  return tuple(
    tuple(
      zero_state(
        p.hidden_size,
        batch_shape,
        state_dtype(p.w_h.dtype),
        output_size=p.output_size,
      )
      for p in layer_params
    )
    for layer_params in params
  )


def unroll_stack(
  params: StackParams,
  xs: Array,
  states: StackState | None = None,
  *,
  lengths: Array | None = None,
  dropout: float = 0.0,
  key: Array | None = None,
  training: bool = True,
  resets: Array | None = None,
  forget_bias: float = 0.0,
  cell_clip: float | None = None,
  proj_clip: float | None = None,
  coupled: bool = False,
  input_dropout: float = 0.0,
  recurrent_dropout: float = 0.0,
  zoneout_cell: float = 0.0,
  zoneout_hidden: float = 0.0,
  unroll: int | bool = 1,
  remat: bool = False,
) -> tuple[StackState, Array]:
  """Runs a stack of (optionally bidirectional) LSTM layers over time.

  Roughly equivalent Python, with PyTorch ``nn.LSTM`` semantics::

    inputs = xs
    for layer in range(num_layers):
      fwd_state, fwd = unroll(params[layer][0], inputs, states[layer][0])
      bwd_state, bwd = unroll(
        params[layer][1], inputs, states[layer][1], reverse=True
      )  # bidirectional only
      outputs = concatenate([fwd, bwd], axis=-1)  # [T, ..., D * H_out]
      if layer < num_layers - 1:
        inputs = dropout(outputs)  # training only
    return states_out, outputs

  With ``lengths``, every direction ignores each sequence's padding: the
  backward direction starts at the last valid step, and outputs at or past
  a sequence's length are zero, in every layer.

  Args:
    params: stack parameters ``params[layer][direction]``, see
      :func:`init_stack`.
    xs: [T, ..., I] time-major inputs.
    states: initial states nested like ``params``; zeros when None.
    lengths: optional int [...] valid lengths per sequence, in [0, T].
    dropout: drop rate on the outputs of every layer but the last (each
      element and step drawn independently), when ``training``.
    key: PRNG key for dropout and zoneout; needed when training with a
      rate > 0. Each layer and direction draws from its own split.
    training: apply dropout and random zoneout; with ``training=False``
      the stack is deterministic and ``key`` is not needed.
    resets: optional bool [T, ...]: where true, every layer's state returns
      to its initial value before that step (see :func:`~jlstm.unroll` for
      the backward direction).
    forget_bias: number added to every forget gate at run time.
    cell_clip: positive bound on every cell state, or None.
    proj_clip: positive bound on every projected output, or None.
    coupled: couple input and forget gates (CIFG) in every cell.
    input_dropout: variational dropout rate on every layer's inputs, one
      mask per sequence, layer and direction.
    recurrent_dropout: variational dropout rate on every recurrent ``h``.
    zoneout_cell: zoneout probability of every ``c``.
    zoneout_hidden: zoneout probability of every ``h``.
    unroll: steps per ``lax.scan`` iteration, see :func:`~jlstm.unroll`.
    remat: recompute each step in the backward pass, see
      :func:`~jlstm.unroll`.

  Returns:
    ``(final_states, outputs)``: the states after each layer and direction
    has run, nested like ``params`` (the backward direction's state is the
    one after step 0), and the last layer's outputs [T, ..., D * H_out].

  Raises:
    TypeError or ValueError: params or states not nested as a stack, sizes
      that do not chain from layer to layer, a rate outside [0, 1), or a
      rate > 0 in training without a key.

  Example:
    >>> import jax, jax.numpy as jnp, jlstm
    >>> params = jlstm.init_stack(
    ...   jax.random.key(0), 8, 16, num_layers=2, bidirectional=True
    ... )
    >>> states, outputs = jlstm.unroll_stack(params, jnp.ones((5, 3, 8)))
    >>> outputs.shape, states[1][1].h.shape
    ((5, 3, 32), (3, 16))
  """
  num_layers, directions = check_stack(params)
  if states is not None:
    _check_states(states, params)
  rates = dict(
    dropout=dropout,
    input_dropout=input_dropout,
    recurrent_dropout=recurrent_dropout,
    zoneout_cell=zoneout_cell,
    zoneout_hidden=zoneout_hidden,
  )
  for name, rate in rates.items():
    check_rate(name, rate)
  use_dropout = training and dropout > 0.0 and num_layers > 1
  if training and any(rate > 0 for rate in rates.values()) and key is None:
    named = ', '.join(f'{k}={v}' for k, v in rates.items() if v > 0)
    raise ValueError(
      f'{named} in training needs a PRNG key; pass key=... or training=False'
    )
  # One key per layer for the dropout after it, then one per direction.
  keys = (
    None if key is None else jax.random.split(key, (num_layers, directions + 1))
  )

  inputs = xs
  final_states = []
  for layer in range(num_layers):
    layer_finals, layer_outputs = [], []
    for direction in range(directions):
      name = f'params[{layer}][{direction}]'
      cell_params = params[layer][direction]
      if inputs.shape[-1:] != (cell_params.input_size,):
        raise ValueError(
          f'{name}.w_x expects inputs of size {cell_params.input_size}, but '
          f'layer {layer} reads inputs of size {inputs.shape[-1]} '
          f'(xs for layer 0, D * H_out of the layer below otherwise)'
        )
      state = None if states is None else states[layer][direction]
      final, hs = unroll_sequence(
        cell_params,
        inputs,
        state,
        lengths=lengths,
        reverse=direction == 1,
        unroll=unroll,
        remat=remat,
        resets=resets,
        forget_bias=forget_bias,
        cell_clip=cell_clip,
        proj_clip=proj_clip,
        coupled=coupled,
        input_dropout=input_dropout,
        recurrent_dropout=recurrent_dropout,
        zoneout_cell=zoneout_cell,
        zoneout_hidden=zoneout_hidden,
        key=None if keys is None else keys[layer, direction + 1],
        training=training,
      )
      layer_finals.append(final)
      layer_outputs.append(hs)
    final_states.append(tuple(layer_finals))
    outputs = (
      layer_outputs[0]
      if directions == 1
      else jnp.concatenate(layer_outputs, axis=-1)
    )
    if use_dropout and layer < num_layers - 1:
      outputs = outputs * dropout_mask(
        keys[layer, 0], dropout, outputs.shape, outputs.dtype
      )
    inputs = outputs
  return tuple(final_states), outputs
