"""Character-level language model on the Python reference documentation.

The text is ``pydoc_data.topics`` from the standard library (about 465,000
characters, no download), its first 90% for training and the rest for
validation. A 2-layer LSTM reads it in 32 parallel streams, 100 characters
at a time, carrying its state from batch to batch (truncated BPTT).

  jlstm train --config configs/charlm.py --workdir runs/charlm

Train on any UTF-8 text instead, or change the model, from the command line:

  jlstm train --config configs/charlm.py --workdir runs/mytext \\
    --config.data.path=mytext.txt --config.model.hidden_size=512

Then:

  jlstm eval --workdir runs/charlm
  jlstm sample --workdir runs/charlm --prompt 'The ' --length 500
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  """The default experiment: a character LM on pydoc_data.topics."""
  config = ml_collections.ConfigDict()
  config.task = 'lm'
  config.seed = 0
  config.dtype = 'float32'  # parameter dtype; the LSTM state stays float32
  # Mixed precision: 'bfloat16' runs the matmuls in bfloat16 while the
  # parameters and optimizer stay in dtype; '' computes in dtype.
  config.compute_dtype = ''
  # How float32 matmuls run on TPU/GPU: 'default' (one bfloat16 pass on
  # TPU), 'high' or 'highest' (full float32).
  config.matmul_precision = 'default'
  # Multi-host: call jax.distributed.initialize() first (as does the
  # environment variable JLSTM_DISTRIBUTED=1).
  config.distributed = False

  # Training length and batches: batch_size parallel streams, seq_len steps
  # of backprop through time per batch.
  config.batch_size = 32
  config.seq_len = 100
  config.num_train_steps = 1500
  config.learning_rate = 3e-3

  # Reporting and checkpoints, in steps.
  config.log_every = 50
  config.eval_every = 250
  config.checkpoint_every = 500

  config.data = ml_collections.ConfigDict()
  config.data.tokenizer = 'char'  # 'char' or 'word'
  config.data.path = ''  # a UTF-8 file; '' is the built-in pydoc_data text
  # Pre-split corpora: set these instead of path (test_path is optional).
  config.data.train_path = ''
  config.data.val_path = ''
  config.data.test_path = ''
  config.data.val_fraction = 0.1
  config.data.test_fraction = 0.0
  config.data.vocab_size = 0  # with the unknown token; 0 keeps every token

  config.model = ml_collections.ConfigDict()
  config.model.hidden_size = 256
  config.model.num_layers = 2
  config.model.embed_size = 64  # 0 feeds characters one-hot
  config.model.dropout = 0.0
  config.model.init = 'uniform'  # 'uniform', 'glorot' or 'seed'
  config.model.init_scale = config_dict.placeholder(float)  # None: default
  config.model.forget_bias = config_dict.placeholder(float)
  config.model.unroll = 1  # time steps per scan iteration

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'adam'  # 'adam', 'adamw', 'sgd' or 'momentum'
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8
  config.optimizer.weight_decay = 0.0  # adamw only
  config.optimizer.momentum = 0.9  # momentum only
  config.optimizer.nesterov = False
  config.optimizer.grad_clip = 1.0  # global-norm clipping; 0 turns it off
  # A step with a non-finite loss or gradient changes nothing; then
  # 'stop' ends the run naming the step, 'skip' goes on and counts it.
  config.on_nonfinite = 'stop'

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = 'warmup_cosine'  # 'constant', 'warmup_cosine', 'step'
  config.schedule.warmup_steps = 100
  config.schedule.end_factor = 0.05  # final lr / peak lr (warmup_cosine)
  config.schedule.decay_factor = 0.5  # per epoch after decay_after (step)
  config.schedule.decay_after = 4

  # Text generated at every evaluation, into samples.txt.
  config.sample = ml_collections.ConfigDict()
  config.sample.prompt = 'The '
  config.sample.length = 300
  config.sample.temperature = 0.8
  return config
