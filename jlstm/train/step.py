"""The jitted train and evaluation steps."""

from __future__ import annotations

import jax
import optax

from jlstm.train.state import TrainState


def make_train_step(task, optimizer: optax.GradientTransformation, schedule):
  """Builds ``train_step(state, batch) -> (state, metrics)``, jitted.

  One step: draw the step's key, take the gradient of the task's loss,
  apply the optimizer, carry the LSTM state on. The state argument is
  donated, so its buffers are reused for the new state; do not read a state
  after passing it in.

  Args:
    task: from :func:`jlstm.train.tasks.build_task`.
    optimizer: the optax transformation.
    schedule: the learning-rate schedule, for the metrics.

  Returns:
    The jitted step. ``metrics`` holds device scalars: ``loss`` (the batch
    mean), ``grad_norm`` (global norm before clipping), ``learning_rate``
    (used by this step) and the task's summed statistics.
  """

  def train_step(state: TrainState, batch):
    key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)

    def loss_fn(params):
      return task.loss(params, batch, state.carry, key, True)

    (loss, (stats, carry)), grads = jax.value_and_grad(
      loss_fn, has_aux=True
    )(state.params)
    updates, opt_state = optimizer.update(
      grads, state.opt_state, state.params
    )
    params = optax.apply_updates(state.params, updates)
    metrics = {
      'loss': loss,
      'grad_norm': optax.global_norm(grads),
      'learning_rate': schedule(state.step),
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

  return jax.jit(train_step, donate_argnums=0)


def make_eval_step(task):
  """Builds ``eval_step(params, carry, batch) -> (stats, carry)``, jitted.

  No dropout, no gradient; ``stats`` are the task's summed statistics.
  """

  def eval_step(params, carry, batch):
    _, (stats, carry) = task.loss(params, batch, carry, None, False)
    return stats, carry

  return jax.jit(eval_step)
