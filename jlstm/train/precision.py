"""The dtype policy of a run: parameter, compute and state dtypes.

A run keeps its parameters (and the optimizer's state) in the parameter
dtype, config key ``dtype``. With ``compute_dtype`` set narrower, the train
and eval steps cast the parameters to it inside the loss, so every matmul
runs in that dtype while the gradients come back in the parameter dtype for
the optimizer: float32 parameters with bfloat16 compute is mixed precision.

The LSTM keeps its state and accumulates its matmuls in float32 whatever
the compute dtype (see :func:`jlstm.state_dtype`), and the loss is always
computed in float32; bfloat16 has float32's exponent range, so it needs no
loss scaling. ``matmul_precision``
sets how float32 matmuls run on TPUs and recent GPUs (see
:func:`jax.default_matmul_precision`); CPUs always compute them in full.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jlstm
from jlstm.train.config import ConfigError


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


#: Compute dtypes a policy accepts: float16 would need loss scaling, which
#: jlstm does not do.
COMPUTE_DTYPES = ('float32', 'bfloat16')

#: Values of ``matmul_precision``: JAX's names for how float32 matmuls run.
#: 'default' leaves the backend's choice (one bfloat16 pass on TPU), 'high'
#: and 'highest' take three and six passes, 'float32' is the same as
#: 'highest'.
MATMUL_PRECISIONS = (
  'default',
  'high',
  'highest',
  'bfloat16',
  'tensorfloat32',
  'float32',
)


@dataclasses.dataclass(frozen=True)
class Policy:
  """The dtypes and matmul precision of a run; hashable, so jit-static.

  Attributes:
    param_dtype: dtype the parameters and optimizer state are kept in.
    compute_dtype: dtype the matmuls run in; the parameters are cast to it
      inside the loss.
    matmul_precision: one of :data:`MATMUL_PRECISIONS`.
  """

  param_dtype: np.dtype
  compute_dtype: np.dtype
  matmul_precision: str = 'default'

  @property
  def state_dtype(self) -> np.dtype:
    """The LSTM state's dtype: float32 for bfloat16 compute."""
    return jlstm.state_dtype(self.compute_dtype)

  @property
  def is_mixed(self) -> bool:
    """True when compute runs in a narrower dtype than the parameters."""
    return self.compute_dtype != self.param_dtype

  def cast_to_compute(self, tree: Any) -> Any:
    """Casts the floating arrays of ``tree`` to the compute dtype.

    Integer arrays (token ids) and PRNG keys pass through. Under
    ``jax.grad`` the cast's transpose brings gradients back to each leaf's
    own dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> from jlstm.train import precision
      >>> policy = precision.make_policy('float32', 'bfloat16')
      >>> policy.cast_to_compute({'w': jnp.ones(2), 'ids': jnp.ones(2, int)})
      {'ids': Array([1, 1], dtype=int32), 'w': Array([1, 1], dtype=bfloat16)}
    """
    return _cast_floating(tree, self.compute_dtype)

  def cast_to_param(self, tree: Any) -> Any:
    """Casts the floating arrays of ``tree`` to the parameter dtype."""
    return _cast_floating(tree, self.param_dtype)

  def matmul_scope(self) -> contextlib.AbstractContextManager:
    """A context in which traced matmuls get ``matmul_precision``.

    JAX reads the setting when it traces a matmul, so entering this inside
    a jitted function fixes the precision of that function's matmuls and
    their gradients.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jlstm.train import precision
      >>> policy = precision.make_policy(matmul_precision='highest')
      >>> def f(a):
      ...   with policy.matmul_scope():
      ...     return a @ a
      >>> 'HIGHEST' in str(jax.make_jaxpr(f)(jnp.ones((2, 2))))
      True
    """
    if self.matmul_precision == 'default':
      return contextlib.nullcontext()
    return jax.default_matmul_precision(self.matmul_precision)

  def describe(self) -> str:
    """One line for a run's start-up summary."""
    return (
      f'params {self.param_dtype}, compute {self.compute_dtype}, state '
      f'{self.state_dtype}, matmul precision {self.matmul_precision}'
    )


def _cast_floating(tree: Any, dtype: np.dtype) -> Any:
  def cast(x):
    if hasattr(x, 'dtype') and jnp.issubdtype(x.dtype, jnp.floating):
      return x.astype(dtype)
    return x

  return jax.tree.map(cast, tree)


def make_policy(
  param: str = 'float32',
  compute: str | None = None,
  *,
  matmul_precision: str = 'default',
) -> Policy:
  """Builds a :class:`Policy` from dtype names.

  Args:
    param: the parameter dtype, as :func:`param_dtype` accepts.
    compute: one of :data:`COMPUTE_DTYPES`; None or ``''`` computes in the
      parameter dtype.
    matmul_precision: one of :data:`MATMUL_PRECISIONS`.

  Returns:
    The policy.

  Raises:
    ValueError: an unknown dtype or precision name.

  Example:
    >>> from jlstm.train import precision
    >>> precision.make_policy('float32', 'bfloat16').describe()
    'params float32, compute bfloat16, state float32, matmul precision default'
  """
  params = param_dtype(param)
  if compute in (None, ''):
    computes = params
  elif compute in COMPUTE_DTYPES:
    computes = np.dtype(jnp.dtype(compute))
  else:
    raise ValueError(
      f'compute_dtype must be one of {COMPUTE_DTYPES} or empty (the '
      f'parameter dtype); got {compute!r}'
    )
  if matmul_precision not in MATMUL_PRECISIONS:
    raise ValueError(
      f'matmul_precision must be one of {MATMUL_PRECISIONS}; got '
      f'{matmul_precision!r}'
    )
  return Policy(params, computes, matmul_precision)


def policy_from_config(config) -> Policy:
  """The policy of a run's config.

  Reads ``dtype`` (parameters), and when present ``compute_dtype`` (empty:
  as the parameters) and ``matmul_precision`` (default ``'default'``).

  Raises:
    ConfigError: naming the key whose value is not allowed.

  Example:
    >>> import ml_collections
    >>> from jlstm.train import precision
    >>> config = ml_collections.ConfigDict(
    ...   {'dtype': 'float32', 'compute_dtype': 'bfloat16'}
    ... )
    >>> precision.policy_from_config(config).compute_dtype
    dtype(bfloat16)
  """
  try:
    return make_policy(
      config.get('dtype', 'float32'),
      config.get('compute_dtype', ''),
      matmul_precision=config.get('matmul_precision', 'default'),
    )
  except ValueError as e:
    raise ConfigError(f'config key {e}') from None
