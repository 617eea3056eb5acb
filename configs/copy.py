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
from ml_collections import config_dict


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

  config.model = ml_collections.ConfigDict()
  config.model.hidden_size = 128
  config.model.num_layers = 1
  config.model.dropout = 0.0
  config.model.init = 'glorot'
  config.model.init_scale = config_dict.placeholder(float)
  config.model.forget_bias = config_dict.placeholder(float)
  config.model.unroll = 1

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'adam'
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8
  config.optimizer.weight_decay = 0.0
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.grad_clip = 1.0
  config.on_nonfinite = 'stop'  # or 'skip' (see configs/charlm.py)

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = 'warmup_cosine'
  config.schedule.warmup_steps = 100
  config.schedule.end_factor = 0.05
  config.schedule.decay_factor = 0.5
  config.schedule.decay_after = 4
  return config
