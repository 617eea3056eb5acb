"""Optimizers and learning-rate schedules from a config, built with optax."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import optax

from jlstm.train.config import OPTIMIZERS
from jlstm.train.config import SCHEDULES
from jlstm.train.config import ConfigError


def make_schedule(
  config: ml_collections.ConfigDict, steps_per_epoch: int
) -> optax.Schedule:
  """The learning rate as a function of the step.

  ``config.schedule.name`` picks one of:

  * ``'constant'``: ``learning_rate``, after an optional linear warmup over
    the first ``schedule.warmup_steps`` steps (``lr * (step + 1) /
    warmup_steps``).
  * ``'warmup_cosine'``: the same warmup, then a cosine decay that reaches
    ``learning_rate * schedule.end_factor`` at the last step,
    ``num_train_steps - 1``.
  * ``'step'``: ``learning_rate`` for the first ``schedule.decay_after``
    epochs, then multiplied by ``schedule.decay_factor`` at the start of
    every further epoch (Zaremba et al. 2014):
    ``lr * factor ** max(0, epoch + 1 - decay_after)`` with ``epoch`` the
    0-based epoch of the step.

  Args:
    config: the run's config.
    steps_per_epoch: batches in one pass over the training data.

  Returns:
    An optax schedule, step -> learning rate.

  Raises:
    ConfigError: an unknown schedule name.

  Example:
    >>> from jlstm import train
    >>> from jlstm.train import optim
    >>> config = train.load_config_file('configs/charlm.py')
    >>> lr = optim.make_schedule(config, steps_per_epoch=100)
    >>> f'{float(lr(0)):.2e} {float(lr(99)):.2e}'  # lr * (step + 1) / warmup
    '3.00e-05 3.00e-03'
  """
  lr = float(config.learning_rate)
  sched = config.schedule
  warmup = int(sched.get('warmup_steps', 0))
  name = sched.name
  if name == 'warmup_cosine':
    base = optax.warmup_cosine_decay_schedule(
      init_value=0.0,
      peak_value=lr,
      warmup_steps=warmup,
      decay_steps=max(config.num_train_steps, warmup + 1),
      end_value=lr * float(sched.get('end_factor', 0.0)),
    )
  elif name == 'constant':
    base = optax.join_schedules(
      [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)],
      [warmup],
    )
  if name in ('warmup_cosine', 'constant'):
    # Count from 1 so the first update has a non-zero rate (lr / warmup)
    # and the last one lands on the final rate.
    return lambda step: base(step + 1)
  if name == 'step':
    factor = float(sched.get('decay_factor', 0.5))
    after = int(sched.get('decay_after', 1))

    def step_decay(step):
      epoch = step // steps_per_epoch
      return lr * factor ** jnp.maximum(0, epoch + 1 - after)

    return step_decay
  raise ConfigError(
    f'config key schedule.name must be one of {SCHEDULES}; got {name!r}'
  )


def make_optimizer(
  config: ml_collections.ConfigDict, schedule: optax.Schedule
) -> optax.GradientTransformation:
  """The optimizer, with gradient clipping by global norm in front.

  ``config.optimizer.name`` picks ``'adam'``, ``'adamw'`` (with
  ``optimizer.weight_decay``), ``'sgd'`` or ``'momentum'`` (SGD with
  ``optimizer.momentum``, Nesterov if ``optimizer.nesterov``).
  ``optimizer.grad_clip`` > 0 rescales every gradient whose global norm
  exceeds it (Pascanu et al. 2013).

  Args:
    config: the run's config.
    schedule: the learning-rate schedule.

  Returns:
    An ``optax.GradientTransformation``.

  Raises:
    ConfigError: an unknown optimizer name.

  Example:
    >>> import jax.numpy as jnp
    >>> from jlstm import train
    >>> from jlstm.train import optim
    >>> config = train.load_config_file('configs/charlm.py')
    >>> tx = optim.make_optimizer(config, optim.make_schedule(config, 100))
    >>> params = {'w': jnp.ones(3)}
    >>> updates, _ = tx.update({'w': jnp.ones(3)}, tx.init(params), params)
    >>> updates['w'].shape
    (3,)
  """
  opt = config.optimizer
  name = opt.name
  if name == 'adam':
    tx = optax.adam(
      schedule,
      b1=opt.get('b1', 0.9),
      b2=opt.get('b2', 0.999),
      eps=opt.get('eps', 1e-8),
    )
  elif name == 'adamw':
    tx = optax.adamw(
      schedule,
      b1=opt.get('b1', 0.9),
      b2=opt.get('b2', 0.999),
      eps=opt.get('eps', 1e-8),
      weight_decay=opt.get('weight_decay', 0.0),
    )
  elif name == 'sgd':
    tx = optax.sgd(schedule)
  elif name == 'momentum':
    tx = optax.sgd(
      schedule,
      momentum=opt.get('momentum', 0.9),
      nesterov=bool(opt.get('nesterov', False)),
    )
  else:
    raise ConfigError(
      f'config key optimizer.name must be one of {OPTIMIZERS}; got {name!r}'
    )
  if opt.grad_clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip), tx)
  return tx
