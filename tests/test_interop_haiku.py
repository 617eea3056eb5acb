"""Haiku interchange, checked against hk.LSTM run by hk.dynamic_unroll.

Random float32 weights with a non-zero bias and a non-zero initial state
run through Haiku and through jlstm; outputs, final states and gradients
agree within ``TOL`` = 1e-5. jlstm's gradients are taken through
:func:`jlstm.interop.from_haiku`, so they come out in Haiku's layout (the
+1 Haiku adds to the forget gate is a constant and does not change them).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from interop_reference import PROBE
from interop_reference import PROBE_C0
from interop_reference import assert_close
from interop_reference import assert_probe_state

import jlstm
from jlstm import interop

hk = pytest.importorskip('haiku')

TIME, BATCH, INPUT, HIDDEN = 5, 3, 4, 6


def _unroll(xs, state):
  return hk.dynamic_unroll(hk.LSTM(HIDDEN), xs, state)


haiku_unroll = hk.without_apply_rng(hk.transform(_unroll))


def _random_params(rng, scale=0.5):
  """Random ``hk.LSTM`` parameters, shaped by Haiku's own init."""
  shapes = jax.eval_shape(
    haiku_unroll.init,
    jax.random.key(0),
    jax.ShapeDtypeStruct((TIME, BATCH, INPUT), jnp.float32),
    hk.LSTMState(*[jax.ShapeDtypeStruct((BATCH, HIDDEN), jnp.float32)] * 2),
  )
  return jax.tree.map(
    lambda s: jnp.asarray(
      rng.uniform(-scale, scale, s.shape).astype(np.float32)
    ),
    shapes,
  )


def _data(rng):
  def draw(*shape):
    return jnp.asarray(rng.normal(size=shape).astype(np.float32))

  xs = draw(TIME, BATCH, INPUT)
  state = hk.LSTMState(hidden=draw(BATCH, HIDDEN), cell=draw(BATCH, HIDDEN))
  loss_weights = (draw(TIME, BATCH, HIDDEN), draw(BATCH, HIDDEN))
  return xs, state, loss_weights


def _loss(ys, cell, loss_weights):
  return (ys * loss_weights[0]).sum() + (cell * loss_weights[1]).sum()


@jax.jit
def _haiku_grads(params, xs, state, loss_weights):
  def loss_fn(params, xs, state):
    ys, final = haiku_unroll.apply(params, xs, state)
    return _loss(ys, final.cell, loss_weights), (ys, final)

  with jax.default_matmul_precision('highest'):
    return jax.grad(loss_fn, (0, 1, 2), has_aux=True)(params, xs, state)


@jax.jit
def _jlstm_grads(params, xs, state, loss_weights):
  def loss_fn(params, xs, state):
    final, ys = jlstm.unroll(
      interop.from_haiku(params), xs, interop.from_haiku_state(state)
    )
    final = interop.to_haiku_state(final)
    return _loss(ys, final.cell, loss_weights), (ys, final)

  with jax.default_matmul_precision('highest'):
    return jax.grad(loss_fn, (0, 1, 2), has_aux=True)(params, xs, state)


def test_from_haiku_matches_hk_lstm():
  """Imported params give Haiku's outputs, final state and gradients."""
  rng = np.random.default_rng(0)
  params = _random_params(rng)
  xs, state, loss_weights = _data(rng)
  want_grads, (want_y, want_final) = _haiku_grads(
    params, xs, state, loss_weights
  )
  got_grads, (got_y, got_final) = _jlstm_grads(params, xs, state, loss_weights)

  assert_close(got_y, want_y, 'outputs')
  assert_close(got_final.hidden, want_final.hidden, 'final hidden')
  assert_close(got_final.cell, want_final.cell, 'final cell')
  assert jax.tree.structure(got_grads) == jax.tree.structure(want_grads)
  for (path, got), want in zip(
    jax.tree_util.tree_leaves_with_path(got_grads),
    jax.tree.leaves(want_grads),
    strict=True,
  ):
    assert_close(got, want, f'gradient of {jax.tree_util.keystr(path)}')


def test_to_haiku_matches_jlstm():
  """Exported params, run by Haiku, reproduce plain jlstm.unroll."""
  rng = np.random.default_rng(1)
  params = jlstm.LSTMParams(
    *(
      jnp.asarray(rng.uniform(-0.5, 0.5, shape).astype(np.float32))
      for shape in ((INPUT, 4 * HIDDEN), (HIDDEN, 4 * HIDDEN), (4 * HIDDEN,))
    )
  )
  xs, state, loss_weights = _data(rng)
  with jax.default_matmul_precision('highest'):
    final, ys = jax.jit(jlstm.unroll)(
      params, xs, interop.from_haiku_state(state)
    )
  _, (got_y, got_final) = _haiku_grads(
    interop.to_haiku(params), xs, state, loss_weights
  )
  assert_close(got_y, ys, 'outputs')
  assert_close(got_final.hidden, final.h, 'final hidden')
  assert_close(got_final.cell, final.c, 'final cell')


def test_to_haiku_from_haiku_round_trip():
  """Round trips are exact, bar one rounding of the forget bias."""
  rng = np.random.default_rng(2)
  hk_params = _random_params(rng, scale=3.0)
  params = interop.from_haiku(hk_params)
  back = interop.to_haiku(params)
  np.testing.assert_array_equal(
    back['lstm/linear']['w'], hk_params['lstm/linear']['w']
  )
  # b + 1 - 1 rounds at most once at the scale of max(|b|, 1) in float32.
  np.testing.assert_allclose(
    back['lstm/linear']['b'], hk_params['lstm/linear']['b'], rtol=0, atol=5e-7
  )
  again = interop.from_haiku(interop.to_haiku(params))
  np.testing.assert_array_equal(again.w_x, params.w_x)
  np.testing.assert_array_equal(again.w_h, params.w_h)
  f = jlstm.gate_slice('f', HIDDEN)
  others = np.ones(4 * HIDDEN, bool)
  others[f] = False
  np.testing.assert_array_equal(again.b[others], params.b[others])
  np.testing.assert_allclose(again.b[f], params.b[f], rtol=0, atol=5e-7)


def test_haiku_gate_probe_catches_any_permutation():
  """Bias-only weights: each gate's constant lands in its own gate."""
  # Haiku's documented order is i, g, f, o, and it adds 1 to f at run time.
  b = np.concatenate(
    [
      np.full(3, PROBE[g] - (1.0 if g == 'f' else 0.0), np.float32)
      for g in ('i', 'g', 'f', 'o')
    ]
  )
  hk_params = {'lstm/linear': {'w': np.zeros((2 + 3, 12), np.float32), 'b': b}}
  core = hk.without_apply_rng(hk.transform(lambda x, s: hk.LSTM(3)(x, s)))
  x = jnp.ones((4, 2))
  state = hk.LSTMState(hidden=jnp.ones((4, 3)), cell=jnp.full((4, 3), PROBE_C0))
  _, new = jax.jit(core.apply)(hk_params, x, state)
  assert_probe_state(new.hidden, new.cell, 'haiku itself')

  params = interop.from_haiku(hk_params)
  new = jax.jit(jlstm.lstm_cell)(params, interop.from_haiku_state(state), x)
  assert_probe_state(new.h, new.c, 'from_haiku')

  b = np.zeros(12, np.float32)
  for gate, value in PROBE.items():
    b[jlstm.gate_slice(gate, 3)] = value
  _, new = jax.jit(core.apply)(interop.to_haiku(params._replace(b=b)), x, state)
  assert_probe_state(new.hidden, new.cell, 'to_haiku')


def test_from_haiku_finds_the_module_by_name():
  """Custom and nested module names resolve; ambiguity asks for name=."""
  rng = np.random.default_rng(3)
  inner = _random_params(rng)['lstm/linear']
  nested = {'encoder/lstm/linear': inner, 'head/linear': inner}
  with pytest.raises(ValueError, match='pass name='):
    interop.from_haiku(nested)
  by_name = interop.from_haiku(nested, name='encoder/lstm')
  bare = interop.from_haiku(inner)
  for got, want in zip(
    jax.tree.leaves(by_name), jax.tree.leaves(bare), strict=True
  ):
    np.testing.assert_array_equal(got, want)
  assert set(interop.to_haiku(bare, name='encoder/lstm')) == {
    'encoder/lstm/linear'
  }


def test_from_haiku_errors_name_the_key():
  """Missing or extra parameters and wrong shapes raise naming them."""
  w, b = np.zeros((4 + 6, 24), np.float32), np.zeros(24, np.float32)
  with pytest.raises(KeyError, match="'b'"):
    interop.from_haiku({'lstm/linear': {'w': w}})
  with pytest.raises(ValueError, match=r"unexpected key\(s\) \['w_h'\]"):
    interop.from_haiku({'lstm/linear': {'w': w, 'b': b, 'w_h': w}})
  with pytest.raises(ValueError, match=r'\["b"\] must have shape \(24,\)'):
    interop.from_haiku({'lstm/linear': {'w': w, 'b': b[:-1]}})
  with pytest.raises(ValueError, match=r'must be \[I \+ H, 4H\]'):
    interop.from_haiku({'lstm/linear': {'w': w[:, :-1], 'b': b}})
  with pytest.raises(KeyError, match="'rnn/linear'"):
    interop.from_haiku({'lstm/linear': {'w': w, 'b': b}}, name='rnn')
  params = interop.from_haiku({'w': w, 'b': b})
  with pytest.raises(ValueError, match='hk.LSTM has no peepholes'):
    interop.to_haiku(params._replace(w_peep=np.zeros((3, 6))))
