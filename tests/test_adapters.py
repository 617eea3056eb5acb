"""Tests of the Flax linen and NNX adapters.

References: Flax's own ``nn.RNN(nn.OptimizedLSTMCell)``, ``nn.Bidirectional``
and ``nnx.RNN(nnx.OptimizedLSTMCell)`` with the same weights, and the
float64 NumPy loops of variant_reference.py. Float32 throughout, compared
to 2e-5 (a few float32 roundings per step over T = 7 steps).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import variant_reference as ref
from flax import nnx

import jlstm
from jlstm.adapters import linen as jlinen
from jlstm.adapters import nnx as jnnx

TOL = dict(rtol=2e-5, atol=2e-5)
GATES = ('i', 'f', 'g', 'o')


def flax_to_fused(cell_params):
  """linen OptimizedLSTMCell parameters as w_x, w_h, b (gates i, f, g, o)."""
  return {
    'w_x': jnp.concatenate(
      [cell_params[f'i{g}']['kernel'] for g in GATES], axis=-1
    ),
    'w_h': jnp.concatenate(
      [cell_params[f'h{g}']['kernel'] for g in GATES], axis=-1
    ),
    'b': jnp.concatenate([cell_params[f'h{g}']['bias'] for g in GATES]),
  }


def random_variables(key, module, *args, scale=0.5):
  """Random normal values in the shapes ``module.init`` would give.

  Flax initialises biases to zero; random ones also test the bias mapping.
  Tracing ``init`` abstractly also spares a compile.
  """
  shapes = jax.eval_shape(module.init, key, *args)
  leaves, tree = jax.tree.flatten(shapes)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(
    tree,
    [
      scale * jax.random.normal(k, a.shape)
      for k, a in zip(keys, leaves, strict=True)
    ],
  )


def random_flax_rnn(key, xs, hidden, **rnn_kwargs):
  """A Flax nn.RNN of OptimizedLSTMCell and random parameters for it."""
  rnn = nn.RNN(nn.OptimizedLSTMCell(hidden), **rnn_kwargs)
  return rnn, random_variables(key, rnn, xs)


def valid(outputs, lengths):
  """Zeroes outputs at or past each sequence's length ([B, T, F])."""
  t = np.arange(outputs.shape[1])[None, :, None]
  return np.where(t < np.asarray(lengths)[:, None, None], outputs, 0.0)


# reverse with keep_order=True is what nn.Bidirectional runs, covered by
# the stacked test below.
@pytest.mark.parametrize('reverse, keep_order', [(False, False), (True, False)])
def test_linen_lstm_matches_flax_rnn(reverse, keep_order):
  """Same outputs and (c, h) carry as nn.RNN(nn.OptimizedLSTMCell)."""
  xs = jax.random.normal(jax.random.key(0), (3, 7, 5))  # [B, T, I]
  lengths = jnp.array([7, 4, 1])
  carry0 = tuple(jax.random.normal(jax.random.key(k), (3, 6)) for k in (1, 2))
  kw = dict(return_carry=True, reverse=reverse, keep_order=keep_order)
  flax_rnn, flax_vars = random_flax_rnn(jax.random.key(3), xs, 6, **kw)
  want_carry, want = jax.jit(flax_rnn.apply)(
    flax_vars, xs, initial_carry=carry0, seq_lengths=lengths
  )

  layer = jlinen.LSTM(6, **kw)
  ours = {'params': flax_to_fused(flax_vars['params']['cell'])}
  assert jax.tree.structure(ours) == jax.tree.structure(
    jax.eval_shape(layer.init, jax.random.key(0), xs)
  )
  got_carry, got = jax.jit(layer.apply)(
    ours, xs, initial_carry=carry0, seq_lengths=lengths
  )
  # nn.RNN leaves whatever the cell computes in the padding; jlstm writes
  # zeros there, so only valid steps are compared.
  np.testing.assert_allclose(got, valid(want, lengths), **TOL)
  for g, w in zip(got_carry, want_carry, strict=True):
    np.testing.assert_allclose(g, w, **TOL)


def test_linen_stacked_matches_flax_bidirectional_stack():
  """Two nn.Bidirectional layers of nn.RNN equal StackedLSTM, with lengths."""
  xs = jax.random.normal(jax.random.key(0), (3, 6, 4))
  lengths = jnp.array([6, 2, 5])
  hidden = 5

  class FlaxStack(nn.Module):
    @nn.compact
    def __call__(self, x, seq_lengths):
      for _ in range(2):
        x = nn.Bidirectional(
          nn.RNN(nn.OptimizedLSTMCell(hidden)),
          nn.RNN(nn.OptimizedLSTMCell(hidden)),
        )(x, seq_lengths=seq_lengths)
      return x

  flax_stack = FlaxStack()
  variables = random_variables(jax.random.key(1), flax_stack, xs, lengths)
  want = jax.jit(flax_stack.apply)(variables, xs, lengths)

  # Cells made inside the compact method belong to FlaxStack, numbered in
  # creation order: forward then backward, layer by layer.
  ours = {
    f'layer{layer}_{suffix}': flax_to_fused(
      variables['params'][f'OptimizedLSTMCell_{2 * layer + d}']
    )
    for layer in range(2)
    for d, suffix in enumerate(('fwd', 'bwd'))
  }
  model = jlinen.StackedLSTM(hidden, num_layers=2, bidirectional=True)
  got = jax.jit(model.apply)({'params': ours}, xs, seq_lengths=lengths)
  np.testing.assert_allclose(got, valid(want, lengths), **TOL)


def test_nnx_lstm_matches_nnx_rnn():
  """Same outputs and carry as nnx.RNN(nnx.OptimizedLSTMCell)."""
  xs = jax.random.normal(jax.random.key(0), (3, 7, 5))
  lengths = jnp.array([2, 7, 5])
  cell = nnx.OptimizedLSTMCell(5, 6, rngs=nnx.Rngs(0))
  cell.dense_h.bias[...] = jax.random.normal(jax.random.key(1), (24,))
  flax_rnn = nnx.RNN(cell, return_carry=True)
  run = nnx.jit(lambda rnn, x, n: rnn(x, seq_lengths=n))
  want_carry, want = run(flax_rnn, xs, lengths)

  layer = jnnx.LSTM(5, 6, return_carry=True, rngs=nnx.Rngs(1))
  layer.cell.w_x[...] = cell.dense_i.kernel[...]
  layer.cell.w_h[...] = cell.dense_h.kernel[...]
  layer.cell.b[...] = cell.dense_h.bias[...]
  got_carry, got = run(layer, xs, lengths)
  np.testing.assert_allclose(got, valid(want, lengths), **TOL)
  for g, w in zip(got_carry, want_carry, strict=True):
    np.testing.assert_allclose(g, w, **TOL)


def to_numpy(cell_module):
  """An NNX cell's parameters as a reference dict of float64 arrays."""
  names = {
    'ln_scale_x': 'scale_x',
    'ln_scale_h': 'scale_h',
    'ln_scale_c': 'scale_c',
    'ln_offset_c': 'offset_c',
  }
  return {
    names.get(field, field): np.asarray(getattr(cell_module, field)[...])
    for field in cell_module.fields
  }


def test_nnx_stacked_variants_match_float64_reference():
  """An NNX 2-layer stack with projection, peepholes, layer norm, options.

  (Bidirectional stacks are checked against Flax in the linen test.)
  """
  options = dict(forget_bias=1.0, cell_clip=2.0)
  model = jnnx.StackedLSTM(
    4,
    6,
    num_layers=2,
    bidirectional=False,
    proj_size=3,
    peepholes=True,
    layer_norm=True,
    time_major=True,
    rngs=nnx.Rngs(0),
    **options,
  )
  for layer in range(2):
    cell = getattr(model, f'layer{layer}_fwd')
    # Non-trivial peepholes and norms, so every code path matters.
    cell.w_peep[...] = jax.random.normal(jax.random.key(layer), (3, 6))
    cell.ln_offset_c[...] = jnp.full((6,), 0.2)
  xs = jax.random.normal(jax.random.key(5), (5, 2, 4))
  lengths = np.array([5, 3])
  finals, got = model(xs, seq_lengths=jnp.asarray(lengths), return_carry=True)
  layers = [[to_numpy(getattr(model, f'layer{layer}_fwd'))] for layer in (0, 1)]
  want_finals, want = ref.unroll_stack(
    layers, np.asarray(xs, np.float64), lengths=lengths, **options
  )
  np.testing.assert_allclose(got, want, **TOL)
  np.testing.assert_allclose(finals[1][0].c, want_finals[1][0][1], **TOL)


def test_linen_regularisation_modes():
  """Rates need deterministic; True is exactly off, False draws 'dropout'."""
  xs = jax.random.normal(jax.random.key(0), (2, 5, 3))
  plain = jlinen.LSTM(4)
  variables = random_variables(jax.random.key(1), plain, xs)
  reg = jlinen.LSTM(
    4, input_dropout=0.3, recurrent_dropout=0.3, zoneout_cell=0.2
  )
  with pytest.raises(ValueError, match='needs deterministic=True or False'):
    reg.apply(variables, xs)
  np.testing.assert_array_equal(
    reg.apply(
      variables,
      xs,
      deterministic=True,
    ),
    jlstm.unroll(
      jlstm.LSTMParams(**variables['params']),
      jnp.swapaxes(xs, 0, 1),
      zoneout_cell=0.2,
      training=False,
    )[1].swapaxes(0, 1),
  )
  run = jax.jit(
    lambda k: reg.apply(
      variables, xs, deterministic=False, rngs={'dropout': jax.random.key(k)}
    )
  )
  first = run(2)
  np.testing.assert_array_equal(run(2), first)
  assert not np.allclose(run(3), first)


def test_nnx_regularisation_follows_eval_and_train():
  """nnx .eval() switches dropout off; .train() draws from the rngs."""
  xs = jax.random.normal(jax.random.key(0), (2, 5, 3))
  model = jnnx.StackedLSTM(3, 4, num_layers=2, dropout=0.5, rngs=nnx.Rngs(0))
  call = nnx.jit(lambda m, x: m(x))
  model.eval()
  off = call(model, xs)
  plain = jlstm.unroll_stack(model.params(), jnp.swapaxes(xs, 0, 1))[1]
  np.testing.assert_array_equal(off, jnp.swapaxes(plain, 0, 1))
  model.train()
  first, second = call(model, xs), call(model, xs)
  assert not np.allclose(first, off)
  assert not np.allclose(first, second)  # the stream advances per call
  keyed = nnx.jit(lambda m, x, k: m(x, rngs=k))
  np.testing.assert_array_equal(
    keyed(model, xs, jax.random.key(4)), keyed(model, xs, jax.random.key(4))
  )


def test_adapters_jit_and_grad():
  """The modules trace under jit and differentiate (linen and NNX)."""
  xs = jax.random.normal(jax.random.key(0), (2, 5, 3))
  layer = jlinen.LSTM(4, layer_norm=True)
  variables = layer.init(jax.random.key(1), xs)
  loss = lambda v: jnp.sum(layer.apply(v, xs) ** 2)
  grads = jax.jit(jax.grad(loss))(variables)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert np.abs(grads['params']['ln_scale_x']).max() > 0

  model = jnnx.LSTM(3, 4, proj_size=2, rngs=nnx.Rngs(0))

  @nnx.jit
  def nnx_loss_grad(model, xs):
    return nnx.grad(lambda m: jnp.sum(m(xs) ** 2))(model)

  grads = nnx_loss_grad(model, xs)
  assert np.abs(grads.cell.w_proj[...]).max() > 0
