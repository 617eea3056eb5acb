"""Sampling text from a trained language model."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jlstm import data
from jlstm.models import SequenceModel


@functools.partial(jax.jit, static_argnames=('model', 'length'))
def sample_ids(
  model: SequenceModel,
  params,
  prompt: jax.Array,
  key: jax.Array,
  temperature: jax.Array,
  *,
  length: int,
) -> jax.Array:
  """Continues ``prompt`` by ``length`` tokens drawn from the model.

  The prompt runs through the model in one unroll; then each step feeds the
  last token back in and draws the next from ``softmax(logits /
  temperature)``, or takes the most likely one when ``temperature`` is 0.
  Token 0 (the unknown token) is never drawn.

  Args:
    model: a language model (token inputs, logits over the vocabulary).
    params: its parameters.
    prompt: [P] int ids, P >= 1.
    key: a PRNG key.
    temperature: float scalar >= 0.
    length: N, tokens to generate.

  Returns:
    [N] int32 ids of the continuation.
  """
  logits, states = model.apply(params, prompt[:, None])
  banned = jnp.arange(model.output_size) == 0

  def draw(logits, key):
    logits = jnp.where(banned, -jnp.inf, logits)
    scaled = logits / jnp.maximum(temperature, 1e-6)
    drawn = jax.random.categorical(key, scaled)
    return jnp.where(temperature > 0, drawn, jnp.argmax(logits)).astype(
      jnp.int32
    )

  def step(carry, key):
    logits, states = carry
    token = draw(logits, key)
    logits, states = model.apply(params, token[None, None], states)
    return (logits[0, 0], states), token

  keys = jax.random.split(key, length)
  _, tokens = jax.lax.scan(step, (logits[-1, 0], states), keys)
  return tokens


def sample_text(
  model: SequenceModel,
  params,
  tokenizer: data.Tokenizer,
  prompt: str,
  length: int,
  *,
  temperature: float = 1.0,
  seed: int = 0,
) -> str:
  """Returns ``prompt`` continued by ``length`` sampled tokens.

  An empty prompt starts from a line break (the end-of-line token for a
  word model).

  Args:
    model: a language model.
    params: its parameters.
    tokenizer: the run's tokenizer.
    prompt: text to continue.
    length: tokens (characters or words) to generate.
    temperature: softmax temperature; 0 takes the most likely token.
    seed: seeds the draws.

  Returns:
    The prompt followed by the generated text.

  Raises:
    ValueError: a negative length or temperature.

  Example:
    >>> import jax
    >>> from jlstm import data, models
    >>> from jlstm.train import sample_text
    >>> tokenizer = data.Tokenizer.fit('char', 'abcabc')
    >>> model = models.language_model(tokenizer.vocab_size, 8)
    >>> params = model.init(jax.random.key(0))
    >>> len(sample_text(model, params, tokenizer, 'ab', 5, temperature=0))
    7
  """
  if length < 0:
    raise ValueError(f'length must be >= 0; got {length}')
  if temperature < 0:
    raise ValueError(f'temperature must be >= 0; got {temperature}')
  ids = tokenizer.encode(prompt) if prompt else np.zeros((0,), np.int32)
  if ids.size == 0:
    ids = tokenizer.encode('\n')[:1]
  if length == 0:
    return prompt
  params = jax.device_get(params)
  tokens = sample_ids(
    model,
    params,
    jnp.asarray(ids),
    jax.random.key(seed),
    jnp.float32(temperature),
    length=length,
  )
  sep = ' ' if tokenizer.kind == 'word' and prompt.strip() else ''
  text = tokenizer.decode(np.asarray(tokens))
  if tokenizer.kind == 'word' and prompt.endswith('\n'):
    sep = ''
  return prompt + sep + text
