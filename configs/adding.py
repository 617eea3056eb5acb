"""The adding problem (Hochreiter and Schmidhuber 1997).

Each sequence has ``seq_len`` steps of (value, marker) with values from
U(0, 1) and two markers, one in each half; the model reads the whole
sequence and regresses the sum of the two marked values from its last
output. Metric: mean squared error, next to the trivial baseline's 1/6
(always predicting 1).

  jlstm train --config configs/adding.py --workdir runs/adding
  jlstm train --config configs/adding.py --workdir runs/adding200 \\
    --config.seq_len=200
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  """The adding problem with 50 steps and a 128-unit LSTM."""
  config = ml_collections.ConfigDict()
  config.task = 'adding'
  config.seed = 0
  config.dtype = 'float32'

  config.batch_size = 64
  config.seq_len = 50  # steps per sequence
  config.num_train_steps = 3000
  config.learning_rate = 2e-3

  config.log_every = 100
  config.eval_every = 500
  config.checkpoint_every = 500

  config.data = ml_collections.ConfigDict()
  config.data.steps_per_epoch = 1000  # batches per "epoch" (step schedule)
  config.data.eval_batches = 20  # fixed validation/test batches

  config.model = ml_collections.ConfigDict()
  config.model.hidden_size = 128
  config.model.num_layers = 1
  config.model.dropout = 0.0
  config.model.init = 'glorot'  # orthogonal recurrent weights, forget bias 1
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
