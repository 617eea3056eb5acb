"""Multi-host runs: starting ``jax.distributed`` and who writes what.

One program runs on every host (one process per host, or several on one
machine). A run asks for it with the config key ``distributed=True`` or the
environment variable ``JLSTM_DISTRIBUTED=1``; :func:`initialize` then calls
:func:`jax.distributed.initialize` before anything touches a device, and
every process sees every device of the job in ``jax.devices()``.

With no further settings JAX finds the job's coordinator itself on Cloud
TPU pods, Slurm, Open MPI and Kubernetes. Elsewhere, for example several
processes on one machine, set on every process::

  JLSTM_COORDINATOR_ADDRESS=host:port  # process 0's address, any free port
  JLSTM_NUM_PROCESSES=2
  JLSTM_PROCESS_ID=0                   # 0, 1, ... one per process

Each process builds the same global batch from the run's seed and feeds
only its own rows (:func:`jlstm.train.sharding.place_batch`); parameters
are replicated, so every process holds the same model. Only process 0
writes metrics, plots, samples and the resolved config; every process
takes part in checkpoints, which orbax coordinates.
"""

from __future__ import annotations

import os

import jax

#: Environment variable that turns multi-host start-up on (1, true, yes).
ENV_FLAG = 'JLSTM_DISTRIBUTED'

#: Environment variables passed on to :func:`jax.distributed.initialize`.
ENV_SETTINGS = {
  'coordinator_address': 'JLSTM_COORDINATOR_ADDRESS',
  'num_processes': 'JLSTM_NUM_PROCESSES',
  'process_id': 'JLSTM_PROCESS_ID',
}


def requested(config=None) -> bool:
  """True when the config or the environment asks for a multi-host run.

  Example:
    >>> import ml_collections
    >>> from jlstm.train import distributed
    >>> distributed.requested(ml_collections.ConfigDict({'distributed': True}))
    True
  """
  if config is not None and bool(config.get('distributed', False)):
    return True
  flag = os.environ.get(ENV_FLAG, '').strip().lower()
  return flag in ('1', 'true', 'yes')


def _settings_from_env() -> dict:
  """The ``jax.distributed.initialize`` arguments set in the environment."""
  settings = {}
  for name, variable in ENV_SETTINGS.items():
    text = os.environ.get(variable, '').strip()
    if not text:
      continue
    if name == 'coordinator_address':
      settings[name] = text
      continue
    try:
      settings[name] = int(text)
    except ValueError:
      raise ValueError(
        f'{variable} must be an integer; got {variable}={text!r}'
      ) from None
  return settings


def initialize(config=None) -> bool:
  """Starts ``jax.distributed`` if the run asks for it and it is not started.

  Call it before anything touches a device; :func:`jlstm.train.
  train_and_evaluate` does so first thing.

  Args:
    config: the run's config (key ``distributed``); None reads only the
      environment variable ``JLSTM_DISTRIBUTED``.

  Returns:
    True when this process is part of a multi-process job (already started
    or started now).

  Raises:
    ValueError: a malformed ``JLSTM_*`` setting, or a multi-host run asked
      for after this process already used its devices.
  """
  if jax.distributed.is_initialized():
    return True
  if not requested(config):
    return False
  settings = _settings_from_env()
  try:
    jax.distributed.initialize(**settings)
  except RuntimeError as e:
    if 'before' not in str(e):
      raise
    raise ValueError(
      'a multi-host run (distributed=True or JLSTM_DISTRIBUTED=1) must '
      'start jax.distributed before any JAX computation, but this process '
      'already used its devices; start the run in a fresh process'
    ) from None
  return True


def is_main_process() -> bool:
  """True on the process that writes files: process 0 (the only one alone).

  Example:
    >>> from jlstm.train import distributed
    >>> distributed.is_main_process()
    True
  """
  return jax.process_index() == 0
