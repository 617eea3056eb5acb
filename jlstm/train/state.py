"""The train state: everything a run needs to continue, as one pytree."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import optax

from jlstm.train import sharding


class TrainState(NamedTuple):
  """The state a train step maps to the next one.

  Attributes:
    step: int32 scalar, steps taken so far.
    params: the model's parameter pytree.
    opt_state: the optimizer's state.
    key: uint32 key data of the run's PRNG key; each step draws from
      ``fold_in(key, step)``, so the stream of keys needs no state.
    carry: the LSTM state carried between batches for truncated BPTT,
      ``carry[layer][direction]`` [B, H]; None when batches are independent.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from jlstm import train
    >>> params = {'w': jnp.zeros(3)}
    >>> state = train.TrainState(
    ...   step=jnp.zeros((), jnp.int32),
    ...   params=params,
    ...   opt_state=optax.sgd(0.1).init(params),
    ...   key=jax.random.key_data(jax.random.key(0)),
    ...   carry=None,
    ... )
    >>> int(state.step), state.key.dtype, len(jax.tree.leaves(state))
    (0, dtype('uint32'), 3)
  """

  step: jax.Array
  params: Any
  opt_state: Any
  key: jax.Array
  carry: Any


def create_train_state(
  task,
  optimizer: optax.GradientTransformation,
  seed: int,
  batch_size: int,
  mesh,
) -> TrainState:
  """The state at step 0, placed on the mesh.

  Parameters, optimizer state, step and key are replicated; the carried
  LSTM state is split by rows like the batches.

  Args:
    task: from :func:`jlstm.train.tasks.build_task`.
    optimizer: the optax transformation.
    seed: the run's seed; parameters come from ``fold_in(key(seed), 0)``.
    batch_size: B, the rows of the carried state.
    mesh: from :func:`jlstm.train.sharding.make_mesh`.

  Returns:
    A :class:`TrainState`.

  Example:
    >>> import optax
    >>> from jlstm import train
    >>> config = train.load_config_file('configs/adding.py')
    >>> config.model.hidden_size = 8
    >>> task = train.build_task(config)
    >>> state = train.create_train_state(
    ...   task, optax.adam(1e-3), seed=0, batch_size=4, mesh=train.make_mesh()
    ... )
    >>> int(state.step), state.params['lstm'][0][0].w_h.shape, state.carry
    (0, (8, 32), None)
  """
  root = jax.random.key(seed)
  params = task.model.init(jax.random.fold_in(root, 0))
  state = TrainState(
    step=jax.numpy.zeros((), jax.numpy.int32),
    params=params,
    opt_state=optimizer.init(params),
    key=jax.random.key_data(jax.random.fold_in(root, 1)),
    carry=None,
  )
  state = sharding.replicate(state, mesh)
  carry = task.init_carry(params, batch_size)
  if carry is not None:
    # One buffer per leaf: zero states may share an array between h and
    # c, and a donated argument must not hold the same buffer twice.
    carry = jax.tree.map(jax.numpy.zeros_like, carry)
    state = state._replace(carry=sharding.shard_rows(carry, mesh))
  return state
