"""The TF1 notebook's shapes as a word-level language model.

300 one-hot input features that are also the 300 output classes (the
corpus's 299 most frequent words plus an unknown token), one LSTM layer of
256 units, batch 32, 10 unrollings, and the notebook's init: every weight
from a truncated normal of standard deviation 0.1. The corpus is the
built-in ``pydoc_data.topics`` text, split into words at whitespace with
line ends as an end-of-sentence token.

  jlstm train --config configs/seed.py --workdir runs/seed
"""

import ml_collections

from jlstm.train import config as config_lib


def get_config() -> ml_collections.ConfigDict:
  """The notebook's LSTM (300 -> 256, batch 32, 10 steps) on words."""
  config = ml_collections.ConfigDict()
  config.task = 'lm'
  config.seed = 0
  config.dtype = 'float32'

  config.batch_size = 32
  config.seq_len = 10  # the notebook's num_unrollings
  config.num_train_steps = 3000
  config.learning_rate = 2e-3

  config.log_every = 100
  config.eval_every = 500
  config.checkpoint_every = 500

  config.data = config_lib.text_data_group(
    tokenizer='word',  # line ends are an end-of-sentence token
    path='',  # '' is the built-in pydoc_data text
    vocab_size=300,  # 299 words + the unknown token
  )

  config.model = config_lib.model_group(
    hidden_size=256,
    num_layers=1,
    embed_size=0,  # one-hot: 300 classes are 300 features
    init='seed',  # truncated normal, stddev init_scale
    init_scale=0.1,
  )

  config.optimizer = config_lib.optimizer_group(name='adam', grad_clip=1.0)
  config.on_nonfinite = 'stop'  # or 'skip' (see configs/charlm.py)

  config.schedule = config_lib.schedule_group(name='warmup_cosine')

  config.sample = ml_collections.ConfigDict()
  config.sample.prompt = 'The '
  config.sample.length = 60  # words
  config.sample.temperature = 0.8
  return config
