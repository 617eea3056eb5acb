"""The original TF1 notebook's program, written with jlstm.

The notebook built one LSTM cell with 300 input features and 256 units,
unrolled it for 10 steps over a batch of 32 from a zero state, with every
weight drawn from a truncated normal of stddev 0.1, and printed the shapes
of the final output and state. The second part feeds one-hot inputs: 300
classes as the 300 features.

Run:
  python experiments/seed_example.py
"""

import jax
import jax.numpy as jnp

import jlstm

INPUT_SIZE = 300  # features, and classes in the one-hot part
HIDDEN_SIZE = 256
BATCH_SIZE = 32
NUM_UNROLLINGS = 10


def main():
  key_params, key_inputs, key_ids = jax.random.split(jax.random.key(0), 3)
  params = jlstm.init_params(key_params, INPUT_SIZE, HIDDEN_SIZE, scheme='seed')
  state = jlstm.zero_state(HIDDEN_SIZE, batch_shape=(BATCH_SIZE,))
  print('variables:')
  for name, value in sorted(jlstm.interop.to_seed(params).items()):
    print(f'  {name:12s} {tuple(value.shape)}')

  # Part 1: dense inputs, [T, B, I] time-major.
  xs = jax.random.normal(key_inputs, (NUM_UNROLLINGS, BATCH_SIZE, INPUT_SIZE))
  run = jax.jit(jlstm.unroll)
  final, outputs = run(params, xs, state)
  print('dense inputs:')
  print('  output shape:', tuple(outputs[-1].shape))
  print('  state shape: h', tuple(final.h.shape), 'c', tuple(final.c.shape))

  # Part 2: one-hot inputs, 300 classes = 300 features.
  ids = jax.random.randint(key_ids, (NUM_UNROLLINGS, BATCH_SIZE), 0, INPUT_SIZE)
  one_hot = jax.nn.one_hot(ids, INPUT_SIZE, dtype=jnp.float32)
  final, outputs = run(params, one_hot, state)
  print('one-hot inputs:')
  print('  inputs shape:', tuple(one_hot.shape))
  print('  output shape:', tuple(outputs[-1].shape))
  print('  state shape: h', tuple(final.h.shape), 'c', tuple(final.c.shape))
  print('  mean |h|:', float(jnp.abs(final.h).mean()))


if __name__ == '__main__':
  main()
