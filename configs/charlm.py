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

from jlstm.train import config as config_lib


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

  # Any UTF-8 file instead: data.path, or data.train_path / val_path /
  # test_path for pre-split corpora (jlstm.train.config.text_data_group).
  config.data = config_lib.text_data_group(
    tokenizer='char',  # 'char' or 'word'
    path='',  # '' is the built-in pydoc_data text
    val_fraction=0.1,
    vocab_size=0,  # with the unknown token; 0 keeps every token
  )

  # Every model key and what it sets: jlstm.train.config.model_group.
  # Variants (layer_norm, peepholes, proj_size, ...) leave the fused fast
  # path for the generic scan.
  config.model = config_lib.model_group(
    hidden_size=256,
    num_layers=2,
    embed_size=64,  # 0 feeds characters one-hot
    dropout=0.0,
    init='uniform',  # 'uniform', 'glorot' or 'seed'
  )

  config.optimizer = config_lib.optimizer_group(
    name='adam',  # 'adam', 'adamw', 'sgd' or 'momentum'
    grad_clip=1.0,  # global-norm clipping; 0 turns it off
  )
  # A step with a non-finite loss or gradient changes nothing; then
  # 'stop' ends the run naming the step, 'skip' goes on and counts it.
  config.on_nonfinite = 'stop'

  config.schedule = config_lib.schedule_group(
    name='warmup_cosine',  # 'constant', 'warmup_cosine' or 'step'
    warmup_steps=100,
    end_factor=0.05,  # final lr / peak lr
  )

  # Text generated at every evaluation, into samples.txt.
  config.sample = ml_collections.ConfigDict()
  config.sample.prompt = 'The '
  config.sample.length = 300
  config.sample.temperature = 0.8
  return config
