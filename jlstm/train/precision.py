"""The dtype policy of a run: which floating type parameters are kept in.

The LSTM keeps its state and accumulates its matmuls in float32 whatever
the parameters' dtype (see :func:`jlstm.state_dtype`), and the loss is
always computed in float32.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def param_dtype(name: str) -> np.dtype:
  """The parameter dtype for a config's ``dtype`` string.

  Args:
    name: ``'float32'``, ``'bfloat16'`` or ``'float16'``.

  Returns:
    The NumPy dtype.

  Raises:
    ValueError: an unknown name.

  Example:
    >>> from jlstm.train import precision
    >>> precision.param_dtype('bfloat16')
    dtype(bfloat16)
  """
  dtypes = {
    'float32': jnp.float32,
    'bfloat16': jnp.bfloat16,
    'float16': jnp.float16,
  }
  if name not in dtypes:
    raise ValueError(f'dtype must be one of {tuple(dtypes)}; got {name!r}')
  return np.dtype(dtypes[name])
