"""What a run does when training or its storage goes wrong.

* Divergence: a step whose loss, gradients or update are not finite leaves
  the parameters and optimizer state as they were (:func:`keep_if_finite`,
  inside the jitted step). The config key ``on_nonfinite`` then decides:
  ``'stop'`` ends the run with :class:`Diverged`, naming the step, and keeps
  the last checkpoint; ``'skip'`` goes on and counts the skipped steps.
  No checkpoint is written from a state that is not finite.
* Storage: :func:`check_workdir` refuses a workdir that cannot be written
  before the run touches anything.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import jax
import jax.numpy as jnp

#: Values of the config key ``on_nonfinite``.
NONFINITE_POLICIES = ('stop', 'skip')


class Diverged(RuntimeError):
  """Training met a non-finite loss or gradient under ``on_nonfinite='stop'``.

  Attributes:
    step: the first step whose loss, gradients or update were not finite.
    checkpoint_step: the step of the last checkpoint, kept as it was (None
      when there is none).
  """

  def __init__(self, step: int, checkpoint_step: int | None, where: str):
    self.step = step
    self.checkpoint_step = checkpoint_step
    kept = (
      f'the checkpoint of step {checkpoint_step} in {where} is kept'
      if checkpoint_step is not None
      else 'no checkpoint was written'
    )
    super().__init__(
      f'non-finite loss or gradient at step {step}; stopped and {kept}. '
      'Lower the learning rate, or set on_nonfinite=skip to skip such steps'
    )


def all_finite(tree: Any) -> jax.Array:
  """True (a bool scalar) when every floating leaf of ``tree`` is finite.

  Integer leaves (step counters) are ignored; an empty tree is finite.

  Example:
    >>> import jax.numpy as jnp
    >>> from jlstm.train.faults import all_finite
    >>> bool(all_finite({'w': jnp.ones(2), 'step': jnp.int32(3)}))
    True
    >>> bool(all_finite([jnp.array([1.0, jnp.nan])]))
    False
  """
  leaves = [
    jnp.all(jnp.isfinite(x))
    for x in jax.tree.leaves(tree)
    if jnp.issubdtype(jnp.result_type(x), jnp.inexact)
  ]
  if not leaves:
    return jnp.asarray(True)
  return jnp.all(jnp.stack(leaves))


def keep_if_finite(finite: jax.Array, new: Any, old: Any) -> Any:
  """``new`` where ``finite`` is True, else ``old``, leaf by leaf.

  Args:
    finite: a bool scalar, e.g. from :func:`all_finite`.
    new: the candidate pytree.
    old: a pytree of the same structure, shapes and dtypes.

  Returns:
    A pytree like ``new``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jlstm.train.faults import keep_if_finite
    >>> keep_if_finite(jnp.bool_(False), {'w': jnp.nan}, {'w': 1.0})
    {'w': Array(1., dtype=float32, weak_type=True)}
  """
  return jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)


def check_workdir(workdir: str) -> None:
  """Creates ``workdir`` if needed and checks that files can be made in it.

  Args:
    workdir: the run's folder.

  Raises:
    OSError: with the reason, when the folder cannot be created or written
      (a file in the way, no permission, a read-only or full disk).
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise NotADirectoryError(f'workdir is a file, not a folder: {workdir}')
  try:
    os.makedirs(workdir, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix='.write-test-', dir=workdir)
    os.close(fd)
    os.remove(probe)
  except OSError as e:
    reason = e.strerror or type(e).__name__
    raise type(e)(f'cannot write to workdir {workdir}: {reason}') from None
