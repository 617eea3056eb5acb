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
from ml_collections import config_dict


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

  config.data = ml_collections.ConfigDict()
  config.data.tokenizer = 'word'
  config.data.path = ''  # '' is the built-in pydoc_data text
  config.data.train_path = ''
  config.data.val_path = ''
  config.data.test_path = ''
  config.data.val_fraction = 0.1
  config.data.test_fraction = 0.0
  config.data.vocab_size = 300  # 299 words + the unknown token

  config.model = ml_collections.ConfigDict()
  config.model.hidden_size = 256
  config.model.num_layers = 1
  config.model.embed_size = 0  # one-hot: 300 classes are 300 features
  config.model.dropout = 0.0
  config.model.init = 'seed'  # truncated normal, stddev init_scale
  config.model.init_scale = 0.1
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

  config.sample = ml_collections.ConfigDict()
  config.sample.prompt = 'The '
  config.sample.length = 60  # words
  config.sample.temperature = 0.8
  return config
