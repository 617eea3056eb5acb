"""One short training run on simulated CPU devices, for test_sharding.py.

Run as a script, in a fresh process, because JAX fixes its device count
(and its multi-process job) when it first touches a device::

  XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
    python tests/sharding_worker.py WORKDIR TEXT_FILE [KEY=VALUE ...]

With ``JLSTM_DISTRIBUTED=1`` and the ``JLSTM_COORDINATOR_ADDRESS``,
``JLSTM_NUM_PROCESSES`` and ``JLSTM_PROCESS_ID`` variables, several such
processes form one job. Each ``KEY=VALUE`` overrides a config key.
"""

import pathlib
import sys

import jax

ROOT = pathlib.Path(__file__).resolve().parent.parent


def tiny_config(text_file: str):
  """The default language model, shrunk to a few seconds of training."""
  from jlstm import train

  config = train.load_config_file(ROOT / 'configs' / 'charlm.py')
  config.batch_size = 8
  config.seq_len = 16
  config.num_train_steps = 6
  config.log_every = 3
  config.eval_every = 6
  config.checkpoint_every = 6
  config.model.hidden_size = 16
  config.model.num_layers = 2
  config.model.embed_size = 8
  # A constant rate from the first step, so six steps move the weights
  # by far more than the tolerance the runs are compared with.
  config.schedule.name = 'constant'
  config.schedule.warmup_steps = 0
  config.data.path = text_file
  config.sample.length = 8
  return config


def main(argv: list[str]) -> int:
  workdir, text_file, *overrides = argv
  # Gloo carries the cross-process collectives of CPU devices; set it
  # before the backend starts (older JAX had no default).
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  from jlstm import train

  config = tiny_config(text_file)
  for item in overrides:
    key, value = item.split('=', 1)
    train.apply_override(config, key, value)
  train.train_and_evaluate(config, workdir, verbose=False)
  print(
    f'process {jax.process_index()} of {jax.process_count()}: '
    f'{jax.device_count()} devices, {jax.local_device_count()} local'
  )
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
