"""Largest deviation of jlstm from an independent float64 NumPy LSTM.

At the seed's shapes (T=10, B=32, I=300, H=256, weights of stddev 0.1),
compares the float32 (and float64) forward pass and the gradients of
sum(hs * w) (for a random w) with a float64 NumPy loop written from the
equations with four separate gates, and a hand-written float64 backprop
through time.

Run:
  python experiments/reference_check.py
"""

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jlstm

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / 'tests'))
import reference  # noqa: E402


def main():
  rng = np.random.default_rng(0)
  v = reference.random_seed_variables(rng, 300, 256, scale=0.1)
  xs = rng.normal(size=(10, 32, 300))
  h0 = rng.normal(size=(32, 256)) * 0.5
  c0 = rng.normal(size=(32, 256)) * 0.5
  weights = rng.normal(size=(10, 32, 256))
  _, want_c, want_hs = reference.seed_unroll(v, xs, h0, c0)
  want = reference.seed_unroll_grads(v, xs, h0, c0, weights)

  def loss(v, xs, h0, c0):
    final, hs = jlstm.unroll(
      jlstm.interop.from_seed(v), xs, jlstm.LSTMState(h0, c0)
    )
    return jnp.sum(hs * jnp.asarray(weights, hs.dtype)), (final, hs)

  runs = [('float32', 'default'), ('float32', 'highest'), ('float64', '')]
  for dtype, precision in runs:
    cast = lambda a, dtype=dtype: jnp.asarray(a, dtype)
    with (
      jax.enable_x64(dtype == 'float64'),
      jax.default_matmul_precision(precision or 'highest'),
    ):
      (_, (final, hs)), grads = jax.value_and_grad(
        loss, argnums=(0, 1, 2, 3), has_aux=True
      )(jax.tree.map(cast, v), cast(xs), cast(h0), cast(c0))
    forward = max(
      np.abs(np.asarray(hs) - want_hs).max(),
      np.abs(np.asarray(final.c) - want_c).max(),
    )
    got = [*(grads[0][k] for k in want[0]), *grads[1:]]
    ref = [*want[0].values(), *want[1:]]
    rel = max(
      np.abs(np.asarray(g) - r).max() / np.abs(r).max()
      for g, r in zip(got, ref, strict=True)
    )
    print(
      f'{dtype} matmul precision {precision or "-":8s} '
      f'forward max |diff| {forward:.2e}   '
      f'gradient max |diff| / max |grad| {rel:.2e}'
    )


if __name__ == '__main__':
  main()
