"""The TF1 notebook's twelve variables, by their own names.

The notebook keeps four gates, each with an input matrix ``W_<g>_x``
[I, H], a recurrent matrix ``W_<g>_hprev`` [H, H] and a bias ``W_<g>_b``
[H], for the gates ``f``, ``i``, ``o`` and the candidate ``ci``, and
computes ``x @ W + h @ W_hprev + b`` per gate.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from jlstm.cell import LSTMParams
from jlstm.cell import gate_slice

#: The notebook's gate names, mapped to jlstm's gate letters.
SEED_GATES = {'f': 'f', 'i': 'i', 'o': 'o', 'ci': 'g'}

_PARTS = ('x', 'hprev', 'b')


def _get(variables: Mapping, name: str, shape: tuple[int, ...]):
  if name not in variables:
    raise KeyError(
      f'variables is missing {name!r}; expected the 12 names '
      f'W_<gate>_<x|hprev|b> for gates {tuple(SEED_GATES)}'
    )
  value = jnp.asarray(variables[name])
  # The notebook may keep biases as [1, H] rows; accept them as [H].
  if len(shape) == 1 and value.ndim == 2 and value.shape[0] == 1:
    value = value[0]
  if tuple(value.shape) != shape:
    raise ValueError(
      f'variables[{name!r}] must have shape {shape}; got {tuple(value.shape)}'
    )
  return value


def from_seed(variables: Mapping[str, jax.Array]) -> LSTMParams:
  """Builds :class:`~jlstm.LSTMParams` from the notebook's 12 variables.

  Args:
    variables: mapping with ``W_<g>_x`` [I, H], ``W_<g>_hprev`` [H, H] and
      ``W_<g>_b`` [H] (or [1, H]) for ``g`` in ``f``, ``i``, ``o``, ``ci``.

  Returns:
    :class:`~jlstm.LSTMParams` with ``w_x`` [I, 4H], ``w_h`` [H, 4H],
    ``b`` [4H], gate blocks in ``GATE_ORDER`` (i, f, g, o). Values are
    copied exactly.

  Raises:
    KeyError: a variable is missing. ValueError: a shape does not match.

  Example:
    >>> import numpy as np, jlstm
    >>> v = {
    ...   f'W_{g}_{p}': np.zeros(s, np.float32)
    ...   for g in ('f', 'i', 'o', 'ci')
    ...   for p, s in (('x', (300, 256)), ('hprev', (256, 256)), ('b', (256,)))
    ... }
    >>> jlstm.interop.from_seed(v).w_x.shape
    (300, 1024)
  """
  if 'W_f_x' not in variables or 'W_f_hprev' not in variables:
    _get(variables, 'W_f_x', ())
    _get(variables, 'W_f_hprev', ())
  input_size, hidden_size = jnp.shape(variables['W_f_x'])
  shapes = {
    'x': (input_size, hidden_size),
    'hprev': (hidden_size, hidden_size),
    'b': (hidden_size,),
  }
  blocks = {part: [None] * 4 for part in _PARTS}
  for name, letter in SEED_GATES.items():
    k = gate_slice(letter, hidden_size).start // hidden_size
    for part in _PARTS:
      blocks[part][k] = _get(variables, f'W_{name}_{part}', shapes[part])
  return LSTMParams(
    w_x=jnp.concatenate(blocks['x'], axis=-1),
    w_h=jnp.concatenate(blocks['hprev'], axis=-1),
    b=jnp.concatenate(blocks['b'], axis=-1),
  )


def to_seed(params: LSTMParams) -> dict[str, jax.Array]:
  """Splits :class:`~jlstm.LSTMParams` into the notebook's 12 variables.

  Args:
    params: ``w_x`` [I, 4H], ``w_h`` [H, 4H], ``b`` [4H].

  Returns:
    dict of ``W_<g>_x`` [I, H], ``W_<g>_hprev`` [H, H], ``W_<g>_b`` [H]
    for ``g`` in ``f``, ``i``, ``o``, ``ci``.

  Example:
    >>> import jax, jlstm
    >>> p = jlstm.init_params(jax.random.key(0), 300, 256)
    >>> sorted(jlstm.interop.to_seed(p))[:3]
    ['W_ci_b', 'W_ci_hprev', 'W_ci_x']
  """
  hidden_size = params.hidden_size
  out = {}
  for name, letter in SEED_GATES.items():
    cols = gate_slice(letter, hidden_size)
    out[f'W_{name}_x'] = params.w_x[:, cols]
    out[f'W_{name}_hprev'] = params.w_h[:, cols]
    out[f'W_{name}_b'] = params.b[cols]
  return out
