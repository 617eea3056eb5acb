"""Keras 3 interchange, checked against keras.layers.LSTM on the JAX backend.

Random float32 weights with a non-zero bias and a non-zero initial state
run through Keras (``stateless_call``, so JAX differentiates it) and
through jlstm; outputs, final states and gradients agree within ``TOL`` =
1e-5. jlstm's gradients are taken through
:func:`jlstm.interop.from_keras`, so they come out in Keras' layout.
"""

import os

os.environ['KERAS_BACKEND'] = 'jax'

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from interop_reference import PROBE  # noqa: E402
from interop_reference import PROBE_C0  # noqa: E402
from interop_reference import assert_close  # noqa: E402
from interop_reference import assert_probe_state  # noqa: E402

import jlstm  # noqa: E402
from jlstm import interop  # noqa: E402

keras = pytest.importorskip('keras')
if keras.backend.backend() != 'jax':
  pytest.skip(
    'keras was imported with another backend before this module',
    allow_module_level=True,
  )

TIME, BATCH, INPUT, HIDDEN = 5, 3, 4, 6


def _layer(**kwargs):
  layer = keras.layers.LSTM(
    HIDDEN, return_sequences=True, return_state=True, **kwargs
  )
  layer.build((BATCH, TIME, INPUT))
  return layer


def _random_weights(rng, use_bias=True):
  weights = [
    rng.uniform(-0.5, 0.5, (INPUT, 4 * HIDDEN)),
    rng.uniform(-0.5, 0.5, (HIDDEN, 4 * HIDDEN)),
  ]
  if use_bias:
    weights.append(rng.uniform(-0.5, 0.5, 4 * HIDDEN))
  return [w.astype(np.float32) for w in weights]


def _keras_loss(layer, weights, xs, h0, c0, loss_weights):
  """Loss of the Keras layer, as a function of its weight values."""
  non_trainable = [v.value for v in layer.non_trainable_variables]
  (ys, h, c), _ = layer.stateless_call(
    list(weights), non_trainable, xs, initial_state=[h0, c0]
  )
  w_y, w_h, w_c = loss_weights
  return (ys * w_y).sum() + (h * w_h).sum() + (c * w_c).sum(), (ys, h, c)


def _jlstm_loss(weights, xs, h0, c0, loss_weights):
  """The same loss through jlstm; xs batch-major like Keras."""
  params = interop.from_keras(list(weights))
  state = interop.from_keras_state([h0, c0])
  final, ys = jlstm.unroll(params, jnp.swapaxes(xs, 0, 1), state)
  ys = jnp.swapaxes(ys, 0, 1)
  w_y, w_h, w_c = loss_weights
  loss = (ys * w_y).sum() + (final.h * w_h).sum() + (final.c * w_c).sum()
  return loss, (ys, final)


@pytest.mark.parametrize('use_bias', [True, False])
def test_from_keras_matches_keras_lstm(use_bias):
  """Imported weights give Keras' outputs, final state and gradients."""
  rng = np.random.default_rng(0)
  layer = _layer(use_bias=use_bias)
  weights = [jnp.asarray(w) for w in _random_weights(rng, use_bias)]
  xs, h0, c0 = (
    jnp.asarray(rng.normal(size=shape).astype(np.float32))
    for shape in ((BATCH, TIME, INPUT), (BATCH, HIDDEN), (BATCH, HIDDEN))
  )
  loss_weights = tuple(
    jnp.asarray(rng.normal(size=shape).astype(np.float32))
    for shape in ((BATCH, TIME, HIDDEN), (BATCH, HIDDEN), (BATCH, HIDDEN))
  )

  argnums = (0, 1, 2, 3)
  with jax.default_matmul_precision('highest'):
    want_grads, (want_y, want_h, want_c) = jax.jit(
      jax.grad(lambda *a: _keras_loss(layer, *a), argnums, has_aux=True)
    )(weights, xs, h0, c0, loss_weights)
    got_grads, (got_y, final) = jax.jit(
      jax.grad(_jlstm_loss, argnums, has_aux=True)
    )(weights, xs, h0, c0, loss_weights)

  assert_close(got_y, want_y, 'outputs')
  got_h, got_c = interop.to_keras_state(final)
  assert_close(got_h, want_h, 'h')
  assert_close(got_c, want_c, 'c')
  names = ['kernel', 'recurrent_kernel', 'bias']
  for name, got, want in zip(names, got_grads[0], want_grads[0], strict=False):
    assert_close(got, want, f'gradient of {name}')
  for name, got, want in zip(
    ('xs', 'h0', 'c0'), got_grads[1:], want_grads[1:], strict=True
  ):
    assert_close(got, want, f'gradient of {name}')


def test_to_keras_set_weights_matches_jlstm():
  """Exported weights load with set_weights and reproduce jlstm."""
  rng = np.random.default_rng(1)
  kernel, recurrent, bias = _random_weights(rng)
  params = jlstm.LSTMParams(
    jnp.asarray(kernel), jnp.asarray(recurrent), jnp.asarray(bias)
  )
  layer = _layer()
  layer.set_weights(interop.to_keras(params))
  xs = rng.normal(size=(BATCH, TIME, INPUT)).astype(np.float32)
  h0, c0 = rng.normal(size=(2, BATCH, HIDDEN)).astype(np.float32)
  with jax.default_matmul_precision('highest'):
    want_y, want_h, want_c = layer(xs, initial_state=[h0, c0])
    final, ys = jlstm.unroll(
      params, jnp.swapaxes(xs, 0, 1), interop.from_keras_state([h0, c0])
    )
  assert_close(jnp.swapaxes(ys, 0, 1), want_y, 'outputs')
  assert_close(final.h, want_h, 'h')
  assert_close(final.c, want_c, 'c')


def test_from_keras_reads_layers_cells_lists_and_paths():
  """A layer, an LSTMCell, a weight list and a path mapping all agree."""
  rng = np.random.default_rng(2)
  weights = _random_weights(rng)
  layer = _layer()
  layer.set_weights(weights)
  cell = keras.layers.LSTMCell(HIDDEN)
  cell.build((BATCH, INPUT))
  cell.set_weights(weights)
  by_path = {v.path: v for v in layer.weights}
  assert sorted(p.split('/', 1)[1] for p in by_path) == [
    'lstm_cell/bias',
    'lstm_cell/kernel',
    'lstm_cell/recurrent_kernel',
  ]
  for source in (layer, cell, weights, by_path):
    params = interop.from_keras(source)
    assert jlstm.is_basic(params)
    for got, want in zip(jax.tree.leaves(params), weights, strict=True):
      np.testing.assert_array_equal(got, want)


def test_to_keras_from_keras_round_trip_is_identity():
  """from_keras(to_keras(p)) returns every array bit for bit."""
  rng = np.random.default_rng(3)
  params = jlstm.LSTMParams(*map(jnp.asarray, _random_weights(rng)))
  back = interop.from_keras(interop.to_keras(params))
  assert jax.tree.structure(back) == jax.tree.structure(params)
  for got, want in zip(
    jax.tree.leaves(back), jax.tree.leaves(params), strict=True
  ):
    np.testing.assert_array_equal(got, want)
  zero_b = params._replace(b=jnp.zeros_like(params.b))
  two = interop.to_keras(zero_b, use_bias=False)
  assert len(two) == 2
  np.testing.assert_array_equal(interop.from_keras(two).b, zero_b.b)


def test_keras_gate_probe_catches_any_permutation():
  """Bias-only weights: each gate's constant lands in its own gate."""
  layer = _layer()
  # Keras' documented order is i, f, c, o; its c is jlstm's g.
  bias = np.concatenate(
    [np.full(HIDDEN, PROBE[g], np.float32) for g in ('i', 'f', 'g', 'o')]
  )
  zeros = [np.zeros(w.shape, np.float32) for w in layer.weights[:2]]
  layer.set_weights([*zeros, bias])
  xs = np.ones((BATCH, 1, INPUT), np.float32)
  h0 = np.ones((BATCH, HIDDEN), np.float32)
  c0 = np.full((BATCH, HIDDEN), PROBE_C0, np.float32)
  _, h, c = layer(xs, initial_state=[h0, c0])
  assert_probe_state(h, c, 'keras itself')

  params = interop.from_keras(layer)
  state = jlstm.lstm_cell(params, interop.from_keras_state([h0, c0]), xs[:, 0])
  assert_probe_state(state.h, state.c, 'from_keras')

  b = jnp.zeros(4 * HIDDEN)
  for gate, value in PROBE.items():
    b = b.at[jlstm.gate_slice(gate, HIDDEN)].set(value)
  layer.set_weights(interop.to_keras(params._replace(b=b)))
  _, h, c = layer(xs, initial_state=[h0, c0])
  assert_probe_state(h, c, 'to_keras')


def test_from_keras_errors_name_the_problem():
  """Missing weights, wrong shapes and other activations raise clearly."""
  rng = np.random.default_rng(4)
  kernel, recurrent, bias = _random_weights(rng)
  with pytest.raises(KeyError, match="'recurrent_kernel'"):
    interop.from_keras({'kernel': kernel, 'bias': bias})
  with pytest.raises(ValueError, match=r"unexpected key\(s\) \['gamma'\]"):
    interop.from_keras(
      {'kernel': kernel, 'recurrent_kernel': recurrent, 'gamma': bias}
    )
  with pytest.raises(ValueError, match='got 1 arrays'):
    interop.from_keras([kernel])
  with pytest.raises(ValueError, match=r'kernel must have shape \(4, 24\)'):
    interop.from_keras([kernel[:, :-1], recurrent, bias])
  with pytest.raises(ValueError, match=r'bias must have shape \(24,\)'):
    interop.from_keras([kernel, recurrent, bias[:-1]])
  with pytest.raises(ValueError, match='recurrent_kernel must be'):
    interop.from_keras([kernel, recurrent[:-1], bias])
  hard = _layer(recurrent_activation='hard_sigmoid')
  with pytest.raises(ValueError, match="recurrent_activation='hard_sigmoid'"):
    interop.from_keras(hard)
  with pytest.raises(TypeError, match='Keras LSTM or LSTMCell'):
    interop.from_keras(keras.layers.Dense(3))


def test_to_keras_rejects_what_keras_cannot_hold():
  """Variant fields and a bias without use_bias raise."""
  rng = np.random.default_rng(5)
  params = jlstm.LSTMParams(*map(jnp.asarray, _random_weights(rng)))
  with pytest.raises(ValueError, match=r'params\.b must be all zeros'):
    interop.to_keras(params, use_bias=False)
  with pytest.raises(ValueError, match=r'Keras LSTM has no peepholes'):
    interop.to_keras(params._replace(w_peep=jnp.zeros((3, HIDDEN))))
