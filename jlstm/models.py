"""Task models on top of the LSTM stack: an input layer, the stack, a readout.

A :class:`SequenceModel` holds only hyperparameters; its parameters are a
pytree that :meth:`SequenceModel.init` draws and :meth:`SequenceModel.apply`
reads::

  params = {
    'embed': [V, E],  # token inputs with embed_size > 0
    'lstm': params[layer][direction],  # see jlstm.init_stack
    'head': {'w': [D * H_out, O], 'b': [O]},
  }

Token inputs are either looked up in ``embed`` or fed one-hot (then the
LSTM's ``w_x`` is the embedding, as in the TF1 notebook). The readout is a
linear map of every step's output: logits for a softmax over the vocabulary
in a language model, one number per step for regression.

The stack takes every option of :func:`jlstm.init_stack` and
:func:`jlstm.unroll_stack`: bidirectional layers, projection, peepholes,
layer normalisation, cell clipping, coupled gates, variational dropout and
zoneout.

Axis legend: T time, B batch, I input features, V vocabulary, E embedding,
H hidden, H_out the LSTM's output size (``proj_size`` or H), D directions,
O outputs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

import jlstm
from jlstm.cell import check_rate

Array = jax.Array
Params = dict[str, Any]


def _dropout(key: Array, rate: float, x: Array) -> Array:
  """Inverted dropout: zeroes with probability ``rate``, scales the rest."""
  return x * jlstm.dropout_mask(key, rate, x.shape, x.dtype)


#: The per-step regularisers of the LSTM stack, passed to unroll_stack.
_CELL_RATES = (
  'input_dropout',
  'recurrent_dropout',
  'zoneout_cell',
  'zoneout_hidden',
)


@dataclasses.dataclass(frozen=True)
class SequenceModel:
  """An LSTM stack between an input layer and a linear readout.

  Attributes:
    input_size: V, the vocabulary size, for token inputs; I, the number of
      features, otherwise.
    hidden_size: H.
    output_size: O, outputs per step (the vocabulary size for a language
      model).
    num_layers: layers in the LSTM stack.
    token_inputs: inputs are int ids [T, B] (True) or features [T, B, I].
    embed_size: E for token inputs; 0 feeds them one-hot.
    dropout: drop rate on the embeddings, between LSTM layers and before
      the readout (never on the recurrent connections; Zaremba et al.
      2014), when training.
    init_scheme: the LSTM's init scheme, one of ``jlstm.INIT_SCHEMES``.
    init_scale: the scheme's scale (None for its default).
    forget_bias: if given, the stored forget-gate bias at init.
    unroll: time steps per scan iteration, see :func:`jlstm.unroll`.
    dtype: the parameters' floating dtype.
    bidirectional: every layer also runs backwards (PyTorch semantics, see
      :func:`jlstm.unroll_stack`). A model that predicts what comes next
      (a language model) must not see it, so only tasks that read a whole
      input first use this.
    proj_size: P, project every layer's output to P units (LSTMP); 0 for
      none.
    peepholes: peephole connections from the cell state to the gates.
    layer_norm: layer-normalised gates and cell output (Ba et al. 2016).
    cell_clip: bound on the cell state; 0 for none.
    proj_clip: bound on the projected output; 0 for none.
    coupled: coupled input and forget gates (CIFG, ``i = 1 - f``).
    input_dropout: variational dropout rate on every layer's inputs (one
      mask per sequence), when training.
    recurrent_dropout: variational dropout rate on the recurrent ``h``.
    zoneout_cell: zoneout probability of the cell state.
    zoneout_hidden: zoneout probability of ``h``.
    remat: recompute each step in the backward pass instead of storing it
      (memory for long sequences), see :func:`jlstm.unroll`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jlstm import models
    >>> model = models.SequenceModel(input_size=2, hidden_size=8, output_size=1)
    >>> params = model.init(jax.random.key(0))
    >>> outputs, states = model.apply(params, jnp.ones((5, 3, 2)))
    >>> outputs.shape, outputs.dtype, model.stochastic
    ((5, 3, 1), dtype('float32'), False)
  """

  input_size: int
  hidden_size: int
  output_size: int
  num_layers: int = 1
  token_inputs: bool = False
  embed_size: int = 0
  dropout: float = 0.0
  init_scheme: str = 'uniform'
  init_scale: float | None = None
  forget_bias: float | None = None
  unroll: int = 1
  dtype: Any = jnp.float32
  bidirectional: bool = False
  proj_size: int = 0
  peepholes: bool = False
  layer_norm: bool = False
  cell_clip: float = 0.0
  proj_clip: float = 0.0
  coupled: bool = False
  input_dropout: float = 0.0
  recurrent_dropout: float = 0.0
  zoneout_cell: float = 0.0
  zoneout_hidden: float = 0.0
  remat: bool = False

  def __post_init__(self):
    for name in ('input_size', 'hidden_size', 'output_size', 'num_layers'):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 1:
        raise ValueError(f'{name} must be a positive int; got {value!r}')
    if not isinstance(self.proj_size, int) or self.proj_size < 0:
      raise ValueError(
        f'proj_size must be 0 (no projection) or a positive int; got '
        f'{self.proj_size!r}'
      )
    for name in ('cell_clip', 'proj_clip'):
      value = getattr(self, name)
      if not isinstance(value, int | float) or value < 0:
        raise ValueError(f'{name} must be 0 (off) or positive; got {value!r}')
    if self.proj_clip and not self.proj_size:
      raise ValueError(
        f'proj_clip={self.proj_clip} bounds a projection, but proj_size is 0'
      )
    for name in _CELL_RATES:
      check_rate(name, getattr(self, name))
    if self.embed_size < 0 or (self.embed_size and not self.token_inputs):
      raise ValueError(
        'embed_size must be 0, or positive with token_inputs=True; got '
        f'embed_size={self.embed_size}, token_inputs={self.token_inputs}'
      )
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f'dropout must lie in [0, 1); got {self.dropout}')

  @property
  def lstm_input_size(self) -> int:
    """The width of the LSTM's input: E, V (one-hot) or I."""
    return self.embed_size or self.input_size

  @property
  def lstm_output_size(self) -> int:
    """The width of the LSTM's output that the readout reads: D * H_out."""
    directions = 2 if self.bidirectional else 1
    return directions * (self.proj_size or self.hidden_size)

  @property
  def stochastic(self) -> bool:
    """True when training draws random numbers (dropout or zoneout)."""
    rates = [self.dropout] + [getattr(self, name) for name in _CELL_RATES]
    return any(rate > 0 for rate in rates)

  def init(self, key: Array) -> Params:
    """Draws the parameters.

    Embeddings come from N(0, 1); the readout from U(-s, s) with s =
    1/sqrt(D * H_out), its bias zero; the LSTM from ``init_scheme``.

    Args:
      key: a PRNG key.

    Returns:
      The parameter pytree described in the module docstring.

    Example:
      >>> import jax
      >>> from jlstm import models
      >>> model = models.language_model(100, 32, embed_size=16)
      >>> params = model.init(jax.random.key(0))
      >>> params['embed'].shape, params['head']['w'].shape
      ((100, 16), (32, 100))
    """
    k_embed, k_lstm, k_head = jax.random.split(key, 3)
    params: Params = {}
    if self.embed_size:
      params['embed'] = jax.random.normal(
        k_embed, (self.input_size, self.embed_size), self.dtype
      )
    params['lstm'] = jlstm.init_stack(
      k_lstm,
      self.lstm_input_size,
      self.hidden_size,
      num_layers=self.num_layers,
      bidirectional=self.bidirectional,
      proj_size=self.proj_size or None,
      scheme=self.init_scheme,
      scale=self.init_scale,
      forget_bias=self.forget_bias,
      peepholes=self.peepholes,
      layer_norm=self.layer_norm,
      dtype=self.dtype,
    )
    bound = 1.0 / math.sqrt(self.lstm_output_size)
    params['head'] = {
      'w': jax.random.uniform(
        k_head,
        (self.lstm_output_size, self.output_size),
        self.dtype,
        -bound,
        bound,
      ),
      'b': jnp.zeros((self.output_size,), self.dtype),
    }
    return params

  def zero_state(self, params: Params, batch_size: int):
    """The all-zero LSTM state for ``batch_size`` sequences.

    Returns:
      ``states[layer][direction]`` of :class:`jlstm.LSTMState`: ``h``
      [B, H_out], ``c`` [B, H].
    """
    return jlstm.zero_stack_state(params['lstm'], (batch_size,))

  def apply(
    self,
    params: Params,
    inputs: Array,
    states=None,
    *,
    key: Array | None = None,
    training: bool = False,
  ):
    """Runs the model over a time-major batch.

    Args:
      params: from :meth:`init`.
      inputs: [T, B] int ids (token inputs) or [T, B, I] features.
      states: the LSTM states to start from, nested as
        ``states[layer][direction]`` [B, H]; zeros when None.
      key: PRNG key for dropout and zoneout; needed when training with a
        rate > 0.
      training: apply dropout and random zoneout (out of training zoneout
        takes its expectation).

    Returns:
      ``(outputs, states)``: the readout of every step [T, B, O] in float32
      and the final LSTM states.

    Raises:
      ValueError: inputs of the wrong rank or width, or dropout in training
        without a key.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jlstm import models
      >>> model = models.language_model(10, 8, num_layers=2)
      >>> params = model.init(jax.random.key(0))
      >>> logits, states = model.apply(params, jnp.zeros((5, 3), jnp.int32))
      >>> logits.shape, states[1][0].h.shape
      ((5, 3, 10), (3, 8))
    """
    rank = 2 if self.token_inputs else 3
    if inputs.ndim != rank:
      layout = '[T, B] int ids' if self.token_inputs else '[T, B, I]'
      raise ValueError(
        f'inputs must be {layout}; got shape {tuple(inputs.shape)}'
      )
    use_dropout = training and self.dropout > 0.0
    if training and self.stochastic and key is None:
      raise ValueError(
        'training with dropout or zoneout > 0 needs a PRNG key; pass key=... '
        'or training=False'
      )
    keys = (
      jax.random.split(key, 3) if training and self.stochastic else [None] * 3
    )

    if not self.token_inputs:
      xs = inputs.astype(self.dtype)
    elif self.embed_size:
      xs = params['embed'][inputs]
    else:
      xs = jax.nn.one_hot(inputs, self.input_size, dtype=self.dtype)
    if use_dropout and self.embed_size:
      xs = _dropout(keys[0], self.dropout, xs)

    states, hs = jlstm.unroll_stack(
      params['lstm'],
      xs,
      states,
      dropout=self.dropout,
      key=keys[1],
      training=training,
      cell_clip=self.cell_clip or None,
      proj_clip=self.proj_clip or None,
      coupled=self.coupled,
      unroll=self.unroll,
      remat=self.remat,
      **{name: getattr(self, name) for name in _CELL_RATES},
    )
    if use_dropout:
      hs = _dropout(keys[2], self.dropout, hs)
    head = params['head']
    outputs = jnp.matmul(
      hs.astype(head['w'].dtype), head['w'], preferred_element_type=jnp.float32
    )
    return outputs + head['b'].astype(jnp.float32), states


def language_model(
  vocab_size: int,
  hidden_size: int,
  *,
  num_layers: int = 1,
  embed_size: int = 0,
  **kwargs,
) -> SequenceModel:
  """A language model: tokens in, next-token logits [T, B, V] out.

  Args:
    vocab_size: V.
    hidden_size: H.
    num_layers: layers in the LSTM stack.
    embed_size: E; 0 feeds the tokens one-hot.
    **kwargs: further :class:`SequenceModel` fields (dropout, init, ...).

  Returns:
    A :class:`SequenceModel`.

  Raises:
    ValueError: ``bidirectional=True``: the backward direction would read
      the very token the model is asked to predict.

  Example:
    >>> from jlstm import models
    >>> models.language_model(300, 256).lstm_input_size
    300
  """
  if kwargs.get('bidirectional'):
    raise ValueError(
      'bidirectional must be False for a language model: its backward '
      'direction would read the next token, the one it predicts'
    )
  return SequenceModel(
    input_size=vocab_size,
    hidden_size=hidden_size,
    output_size=vocab_size,
    num_layers=num_layers,
    token_inputs=True,
    embed_size=embed_size,
    **kwargs,
  )


def regression_model(
  input_size: int, hidden_size: int, *, num_layers: int = 1, **kwargs
) -> SequenceModel:
  """Features [T, B, I] in, one number per step [T, B, 1] out.

  The adding problem reads the last step's output.

  Example:
    >>> from jlstm import models
    >>> models.regression_model(2, 64).output_size
    1
  """
  return SequenceModel(
    input_size=input_size,
    hidden_size=hidden_size,
    output_size=1,
    num_layers=num_layers,
    **kwargs,
  )


def tagging_model(
  num_classes: int, hidden_size: int, *, num_layers: int = 1, **kwargs
) -> SequenceModel:
  """Symbols [T, B] in (one-hot), per-step class logits [T, B, C] out.

  The copy task uses it with input and output alphabets of the same size.

  Example:
    >>> from jlstm import models
    >>> models.tagging_model(10, 64).output_size
    10
  """
  return SequenceModel(
    input_size=num_classes,
    hidden_size=hidden_size,
    output_size=num_classes,
    num_layers=num_layers,
    token_inputs=True,
    **kwargs,
  )
