"""Task models on top of the LSTM stack: an input layer, the stack, a readout.

A :class:`SequenceModel` holds only hyperparameters; its parameters are a
pytree that :meth:`SequenceModel.init` draws and :meth:`SequenceModel.apply`
reads::

  params = {
    'embed': [V, E],  # token inputs with embed_size > 0
    'lstm': params[layer][direction],  # see jlstm.init_stack
    'head': {'w': [D * H, O], 'b': [O]},
  }

Token inputs are either looked up in ``embed`` or fed one-hot (then the
LSTM's ``w_x`` is the embedding, as in the TF1 notebook). The readout is a
linear map of every step's output: logits for a softmax over the vocabulary
in a language model, one number per step for regression.

Axis legend: T time, B batch, I input features, V vocabulary, E embedding,
H hidden, D directions, O outputs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

import jlstm

Array = jax.Array
Params = dict[str, Any]


def _dropout(key: Array, rate: float, x: Array) -> Array:
  """Inverted dropout: zeroes with probability ``rate``, scales the rest."""
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype))


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

  def __post_init__(self):
    for name in ('input_size', 'hidden_size', 'output_size', 'num_layers'):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 1:
        raise ValueError(f'{name} must be a positive int; got {value!r}')
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

  def init(self, key: Array) -> Params:
    """Draws the parameters.

    Embeddings come from N(0, 1); the readout from U(-s, s) with s =
    1/sqrt(H), its bias zero; the LSTM from ``init_scheme``.

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
      scheme=self.init_scheme,
      scale=self.init_scale,
      forget_bias=self.forget_bias,
      dtype=self.dtype,
    )
    bound = 1.0 / math.sqrt(self.hidden_size)
    params['head'] = {
      'w': jax.random.uniform(
        k_head,
        (self.hidden_size, self.output_size),
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
      ``states[layer][direction]`` of :class:`jlstm.LSTMState`, [B, H].
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
      key: PRNG key for dropout; needed when training with dropout > 0.
      training: apply dropout.

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
    if use_dropout and key is None:
      raise ValueError('training with dropout > 0 needs a PRNG key')
    keys = jax.random.split(key, 3) if use_dropout else [None] * 3

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
      unroll=self.unroll,
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

  Example:
    >>> from jlstm import models
    >>> models.language_model(300, 256).lstm_input_size
    300
  """
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
