"""The jitted train and evaluation steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jlstm.train import faults
from jlstm.train import sharding
from jlstm.train.precision import Policy
from jlstm.train.state import TrainState


def _compute_loss(task, policy: Policy | None, params, *args):
  """The task's loss with the parameters cast to the policy's compute dtype."""
  if policy is None:
    return task.loss(params, *args)
  with policy.matmul_scope():
    return task.loss(policy.cast_to_compute(params), *args)


def make_train_step(
  task,
  optimizer: optax.GradientTransformation,
  schedule,
  policy: Policy | None = None,
  mesh=None,
):
  """Builds ``train_step(state, batch) -> (state, metrics)``, jitted.

  One step: draw the step's key, take the gradient of the task's loss,
  apply the optimizer, carry the LSTM state on. The state argument is
  donated, so its buffers are reused for the new state; do not read a state
  after passing it in.

  Args:
    task: from :func:`jlstm.train.tasks.build_task`.
    optimizer: the optax transformation.
    schedule: the learning-rate schedule, for the metrics.
    policy: the dtype policy (:mod:`jlstm.train.precision`); the loss runs
      in its compute dtype and matmul precision, the gradients and the
      update in the parameters' dtype. None runs in the parameters' dtype.
    mesh: the device mesh; keeps the carried state split by rows, so the
      step's output state has its input's sharding and the next call does
      not compile again.

  Returns:
    The jitted step. ``metrics`` holds device scalars: ``loss`` (the batch
    mean), ``grad_norm`` (global norm before clipping), ``learning_rate``
    (used by this step), ``nonfinite`` (1.0 when the loss, gradients or
    update were not finite: the step then left parameters, optimizer
    state and carry as they were, and its statistics are zero) and the
    task's summed statistics.

  Example:
    >>> import optax
    >>> from jlstm import train
    >>> config = train.load_config_file('configs/adding.py')
    >>> config.model.hidden_size = 8
    >>> task = train.build_task(config)
    >>> optimizer, mesh = optax.adam(1e-3), train.make_mesh()
    >>> state = train.create_train_state(task, optimizer, 0, 64, mesh)
    >>> train_step = train.make_train_step(
    ...   task, optimizer, optax.constant_schedule(1e-3), mesh=mesh
    ... )
    >>> batch = train.place_batch(next(task.train_stream), mesh)
    >>> state, metrics = train_step(state, batch)
    >>> int(state.step), float(metrics['nonfinite']), sorted(metrics)
    (1, 0.0, ['count', 'grad_norm', 'learning_rate', 'loss', 'loss_sum',
              'nonfinite'])
  """

  def train_step(state: TrainState, batch):
    key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)

    def loss_fn(params):
      return _compute_loss(task, policy, params, batch, state.carry, key, True)

    (loss, (stats, carry)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params
    )
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # A step whose loss, gradients or update are not finite changes
    # nothing and adds nothing to the statistics; the loop then applies the
    # run's on_nonfinite policy.
    finite = faults.all_finite((loss, grads, params, opt_state))
    params = faults.keep_if_finite(finite, params, state.params)
    opt_state = faults.keep_if_finite(finite, opt_state, state.opt_state)
    carry = faults.keep_if_finite(finite, carry, state.carry)
    stats = faults.keep_if_finite(
      finite, stats, jax.tree.map(jnp.zeros_like, stats)
    )
    metrics = {
      'loss': loss,
      'grad_norm': optax.tree.norm(grads),
      'learning_rate': schedule(state.step),
      'nonfinite': jnp.logical_not(finite).astype(jnp.float32),
      **stats,
    }
    new_state = TrainState(
      step=state.step + 1,
      params=params,
      opt_state=opt_state,
      key=state.key,
      carry=carry,
    )
    return new_state, metrics

  if mesh is None:
    return jax.jit(train_step, donate_argnums=0)
  # Pin the output shardings to the input's: XLA may otherwise return the
  # carried state replicated, and the next call would compile again.
  rep = sharding.replicated_sharding(mesh)
  return jax.jit(
    train_step,
    donate_argnums=0,
    out_shardings=(_state_sharding(task, mesh), rep),
  )


def _state_sharding(task, mesh) -> TrainState:
  """Output shardings of a train state: replicated, carry split by rows."""
  rep = sharding.replicated_sharding(mesh)
  rows = sharding.rows_sharding(mesh) if task.carries_state else None
  return TrainState(step=rep, params=rep, opt_state=rep, key=rep, carry=rows)


def make_eval_step(task, policy: Policy | None = None, mesh=None):
  """Builds ``eval_step(params, carry, batch) -> (stats, carry)``, jitted.

  No dropout, no gradient; ``stats`` are the task's summed statistics.

  Example:
    >>> import jax
    >>> from jlstm import train
    >>> config = train.load_config_file('configs/adding.py')
    >>> config.model.hidden_size = 8
    >>> task = train.build_task(config)
    >>> params = task.model.init(jax.random.key(0))
    >>> eval_step = train.make_eval_step(task)
    >>> stats, carry = eval_step(params, None, task.eval_batches('val')[0])
    >>> sorted(stats), float(stats['count']), carry
    (['count', 'loss_sum'], 64.0, None)
  """

  def eval_step(params, carry, batch):
    _, (stats, carry) = _compute_loss(
      task, policy, params, batch, carry, None, False
    )
    return stats, carry

  if mesh is None:
    return jax.jit(eval_step)
  rows = sharding.rows_sharding(mesh) if task.carries_state else None
  return jax.jit(
    eval_step, out_shardings=(sharding.replicated_sharding(mesh), rows)
  )
