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

from jlstm.train import config as config_lib


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

  config.model = config_lib.model_group(
    hidden_size=128,
    num_layers=1,
    init='glorot',  # orthogonal recurrent weights, forget bias 1
  )

  config.optimizer = config_lib.optimizer_group(name='adam', grad_clip=1.0)
  config.on_nonfinite = 'stop'  # or 'skip' (see configs/charlm.py)

  config.schedule = config_lib.schedule_group(name='warmup_cosine')
  return config
