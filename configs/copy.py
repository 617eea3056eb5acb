"""The copy-memory task (Arjovsky, Shah and Bengio 2016).

Ten symbols from an alphabet of 8, then ``seq_len - 1`` blanks, a
delimiter and ten more blanks; after the delimiter the model must output
the ten symbols in order. Metrics: cross-entropy per step and the accuracy
of the recalled symbols, next to the trivial baseline's (blanks, then
uniform guesses: 10 log 8 / (seq_len + 20) nats and 1/8).

  jlstm train --config configs/copy.py --workdir runs/copy

Longer delays take many more steps (the LSTM first learns to output blanks
and sits at the baseline for a while):

  jlstm train --config configs/copy.py --workdir runs/copy50 \\
    --config.seq_len=50 --config.num_train_steps=20000
"""

import ml_collections

from jlstm.train import config as config_lib


def get_config() -> ml_collections.ConfigDict:
  """The copy task with a delay of 10 steps and a 128-unit LSTM."""
  config = ml_collections.ConfigDict()
  config.task = 'copy'
  config.seed = 0
  config.dtype = 'float32'

  config.batch_size = 64
  config.seq_len = 10  # the delay T; sequences have T + 20 steps
  config.num_train_steps = 3000
  config.learning_rate = 1e-2

  config.log_every = 100
  config.eval_every = 500
  config.checkpoint_every = 500

  config.data = ml_collections.ConfigDict()
  config.data.num_symbols = 8
  config.data.copy_length = 10
  config.data.steps_per_epoch = 1000  # batches per "epoch" (step schedule)
  config.data.eval_batches = 20  # fixed validation/test batches

  config.model = config_lib.model_group(
    hidden_size=128,
    num_layers=1,
    init='glorot',
  )

  config.optimizer = config_lib.optimizer_group(name='adam', grad_clip=1.0)
  config.on_nonfinite = 'stop'  # or 'skip' (see configs/charlm.py)

  config.schedule = config_lib.schedule_group(name='warmup_cosine')
  return config
