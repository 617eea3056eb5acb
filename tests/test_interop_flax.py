"""Flax interchange, checked against Flax's own linen and NNX LSTM cells.

Random float32 weights with non-zero biases and a non-zero initial carry
run through Flax and through jlstm; outputs, final carries and gradients
agree within ``TOL`` = 1e-5. jlstm's gradients are taken through
:func:`jlstm.interop.from_flax`, so they come out in Flax's layout.
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

nn = pytest.importorskip('flax.linen')
nnx = pytest.importorskip('flax.nnx')

TIME, BATCH, INPUT, HIDDEN = 5, 3, 4, 6


def _randomise(tree, seed):
  """Fills every leaf (array or shape) with uniform noise.

  Biases become non-zero; NumPy draws them, so no JAX computation runs
  outside the jitted functions under test.
  """
  rng = np.random.default_rng(seed)
  return jax.tree.map(
    lambda leaf: jnp.asarray(
      rng.uniform(-0.5, 0.5, leaf.shape).astype(np.float32)
    ),
    tree,
  )


def _rngs():
  return nnx.Rngs(0)


def _nnx_shapes(cell_type, sizes=(INPUT, HIDDEN)):
  """The pure-dict shapes of an NNX cell, without running its init."""
  abstract = nnx.eval_shape(
    lambda: getattr(nnx, cell_type)(*sizes, rngs=_rngs())
  )
  return nnx.to_pure_dict(nnx.state(abstract, nnx.Param))


def _nnx_cell(cell_type, pure, sizes=(INPUT, HIDDEN)):
  """An NNX cell holding the arrays of the pure dict ``pure``."""
  abstract = nnx.eval_shape(
    lambda: getattr(nnx, cell_type)(*sizes, rngs=_rngs())
  )
  graphdef, state = nnx.split(abstract)
  nnx.replace_by_pure_dict(state, pure)
  return nnx.merge(graphdef, state)


def _data(seed):
  """Batch-major inputs, a non-zero (c, h) carry and loss weights."""
  rng = np.random.default_rng(seed)

  def draw(*shape):
    return jnp.asarray(rng.normal(size=shape).astype(np.float32))

  xs = draw(BATCH, TIME, INPUT)
  carry = (draw(BATCH, HIDDEN), draw(BATCH, HIDDEN))
  loss_weights = (draw(BATCH, TIME, HIDDEN), draw(BATCH, HIDDEN))
  return xs, carry, loss_weights


def _loss(ys, carry, loss_weights):
  c, _ = carry
  return (ys * loss_weights[0]).sum() + (c * loss_weights[1]).sum()


@jax.jit
def _jlstm_grads(tree, xs, carry, loss_weights):
  """Loss gradients through from_flax, in the layout of ``tree``."""

  def loss_fn(tree, xs, carry):
    state = interop.from_flax_carry(carry)
    final, ys = jlstm.unroll(
      interop.from_flax(tree), jnp.swapaxes(xs, 0, 1), state
    )
    ys = jnp.swapaxes(ys, 0, 1)
    carry = interop.to_flax_carry(final)
    return _loss(ys, carry, loss_weights), (ys, carry)

  with jax.default_matmul_precision('highest'):
    return jax.grad(loss_fn, (0, 1, 2), has_aux=True)(tree, xs, carry)


def _assert_matches(got, want):
  (got_grads, (got_y, got_carry)) = got
  (want_grads, (want_y, want_carry)) = want
  assert_close(got_y, want_y, 'outputs')
  assert_close(got_carry[0], want_carry[0], 'final c')
  assert_close(got_carry[1], want_carry[1], 'final h')
  for (path, g), w in zip(
    jax.tree_util.tree_leaves_with_path(got_grads),
    jax.tree.leaves(want_grads),
    strict=True,
  ):
    assert_close(g, w, f'gradient of {jax.tree_util.keystr(path)}')


def test_from_flax_matches_linen_rnn():
  """Imported linen params (in nn.RNN) give Flax's outputs and gradients.

  linen's OptimizedLSTMCell shares this parameter tree; the export test
  runs it.
  """
  xs, carry, loss_weights = _data(0)
  rnn = nn.RNN(nn.LSTMCell(HIDDEN), return_carry=True)
  variables = _randomise(
    jax.eval_shape(rnn.init, jax.random.key(0), xs), seed=1
  )
  assert set(variables['params']) == {'cell'}

  def flax_loss(variables, xs, carry):
    carry, ys = rnn.apply(variables, xs, initial_carry=carry)
    return _loss(ys, carry, loss_weights), (ys, carry)

  with jax.default_matmul_precision('highest'):
    want = jax.jit(jax.grad(flax_loss, (0, 1, 2), has_aux=True))(
      variables, xs, carry
    )
  _assert_matches(_jlstm_grads(variables, xs, carry, loss_weights), want)


def test_from_flax_matches_nnx_optimized_cell():
  """Imported NNX state gives the NNX cell's outputs and gradients.

  NNX's per-gate LSTMCell has linen's layout (bar ``if_``); the export
  and round-trip tests cover it.
  """
  xs, carry, loss_weights = _data(2)
  graphdef, state = nnx.split(
    nnx.eval_shape(lambda: nnx.OptimizedLSTMCell(INPUT, HIDDEN, rngs=_rngs()))
  )
  state = _randomise(state, seed=3)

  def flax_loss(state, xs, carry):
    cell = nnx.merge(graphdef, state)
    ys = []
    for t in range(TIME):
      carry, y = cell(carry, xs[:, t])
      ys.append(y)
    ys = jnp.stack(ys, axis=1)
    return _loss(ys, carry, loss_weights), (ys, carry)

  with jax.default_matmul_precision('highest'):
    want = jax.jit(jax.grad(flax_loss, (0, 1, 2), has_aux=True))(
      state, xs, carry
    )
  pure = nnx.to_pure_dict(state)
  _assert_matches(_jlstm_grads(pure, xs, carry, loss_weights), want)


def _run_cell(cell_fn, carry, xs):
  """Steps a Flax-style ``cell_fn(carry, x)`` over batch-major ``xs``."""
  ys = []
  with jax.default_matmul_precision('highest'):
    for t in range(xs.shape[1]):
      carry, y = cell_fn(carry, xs[:, t])
      ys.append(y)
  return jnp.stack(ys, axis=1), carry


@jax.jit
def _run_linen(variables, carry, xs):
  """Runs both linen cells on one parameter tree."""
  return [
    _run_cell(lambda c, x, m=module: m.apply(variables, c, x), carry, xs)
    for module in (nn.LSTMCell(HIDDEN), nn.OptimizedLSTMCell(HIDDEN))
  ]


@jax.jit
def _run_jlstm(params, carry, xs):
  with jax.default_matmul_precision('highest'):
    final, ys = jlstm.unroll(
      params, jnp.swapaxes(xs, 0, 1), interop.from_flax_carry(carry)
    )
  return jnp.swapaxes(ys, 0, 1), interop.to_flax_carry(final)


def test_to_flax_loads_into_every_cell_and_matches_jlstm():
  """Each exported layout loads into its Flax cell and reproduces jlstm."""
  rng = np.random.default_rng(4)
  params = jlstm.LSTMParams(
    *(
      jnp.asarray(rng.uniform(-0.5, 0.5, shape).astype(np.float32))
      for shape in ((INPUT, 4 * HIDDEN), (HIDDEN, 4 * HIDDEN), (4 * HIDDEN,))
    )
  )
  xs, carry, _ = _data(5)
  want_y, want_carry = _run_jlstm(params, carry, xs)

  results = _run_linen(interop.to_flax(params), carry, xs)
  for name, (got_y, got_carry) in zip(
    ('LSTMCell', 'OptimizedLSTMCell'), results, strict=True
  ):
    assert_close(got_y, want_y, f'linen {name} outputs')
    assert_close(got_carry[0], want_carry[0], f'linen {name} final c')
    assert_close(got_carry[1], want_carry[1], f'linen {name} final h')
  for cell_type, layout in (
    ('LSTMCell', 'nnx'),
    ('OptimizedLSTMCell', 'nnx_optimized'),
  ):
    cell = _nnx_cell(cell_type, interop.to_flax(params, layout=layout))
    graphdef, state = nnx.split(cell)
    got_y, got_carry = jax.jit(
      lambda state, carry, xs, g=graphdef: _run_cell(
        nnx.merge(g, state), carry, xs
      )
    )(state, carry, xs)
    assert_close(got_y, want_y, f'nnx {cell_type} outputs')
    assert_close(got_carry[0], want_carry[0], f'nnx {cell_type} final c')
    assert_close(got_carry[1], want_carry[1], f'nnx {cell_type} final h')


@pytest.mark.parametrize('layout', ['linen', 'nnx', 'nnx_optimized'])
def test_to_flax_from_flax_round_trip_is_identity(layout):
  """from_flax(to_flax(p, layout)) returns every array bit for bit."""
  rng = np.random.default_rng(6)
  params = jlstm.LSTMParams(
    *(
      jnp.asarray(rng.normal(size=shape).astype(np.float32))
      for shape in ((INPUT, 4 * HIDDEN), (HIDDEN, 4 * HIDDEN), (4 * HIDDEN,))
    )
  )
  back = interop.from_flax(interop.to_flax(params, layout=layout))
  assert jax.tree.structure(back) == jax.tree.structure(params)
  for got, want in zip(
    jax.tree.leaves(back), jax.tree.leaves(params), strict=True
  ):
    np.testing.assert_array_equal(got, want)


def test_from_flax_reads_nnx_modules_and_states():
  """An NNX module, its State and its pure dict convert the same."""
  cell = _nnx_cell('LSTMCell', _randomise(_nnx_shapes('LSTMCell'), seed=7))
  from_module = interop.from_flax(cell)
  for source in (nnx.state(cell), nnx.to_pure_dict(nnx.state(cell))):
    for got, want in zip(
      jax.tree.leaves(interop.from_flax(source)),
      jax.tree.leaves(from_module),
      strict=True,
    ):
      np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(
    from_module.w_x[:, jlstm.gate_slice('f', HIDDEN)], cell.if_.kernel[...]
  )


def test_flax_gate_probe_catches_any_permutation():
  """Bias-only weights: each gate's constant lands in its own gate."""
  variables = interop.to_flax(
    jlstm.LSTMParams(np.zeros((2, 12)), np.zeros((3, 12)), np.zeros(12))
  )
  for gate in ('i', 'f', 'g', 'o'):  # Flax names each bias after its gate
    variables['params'][f'h{gate}']['bias'] = np.full(3, PROBE[gate])
  xs = jnp.ones((4, 1, 2))
  carry = (jnp.full((4, 3), PROBE_C0), jnp.ones((4, 3)))
  for _, (c, h) in _run_linen(variables, carry, xs):
    assert_probe_state(h, c, 'flax itself')

  params = interop.from_flax(variables)
  _, (c, h) = _run_jlstm(params, carry, xs)
  assert_probe_state(h, c, 'from_flax')

  b = np.zeros(12)
  for gate, value in PROBE.items():
    b[jlstm.gate_slice(gate, 3)] = value
  exported = interop.to_flax(params._replace(b=b), layout='nnx_optimized')
  np.testing.assert_array_equal(exported['dense_h']['bias'], b)
  cell = _nnx_cell('OptimizedLSTMCell', exported, sizes=(2, 3))
  graphdef, state = nnx.split(cell)
  (c, h), _ = jax.jit(
    lambda state: nnx.merge(graphdef, state)(carry, xs[:, 0])
  )(state)
  assert_probe_state(h, c, 'to_flax nnx_optimized')


def test_from_flax_errors_name_the_key():
  """Missing kernels, input biases, wrong shapes and layouts raise."""
  params = jlstm.LSTMParams(
    jnp.zeros((INPUT, 4 * HIDDEN)),
    jnp.zeros((HIDDEN, 4 * HIDDEN)),
    jnp.zeros(4 * HIDDEN),
  )
  tree = interop.to_flax(params)
  missing = {'params': {k: v for k, v in tree['params'].items() if k != 'hg'}}
  with pytest.raises(KeyError, match="'hg'"):
    interop.from_flax(missing)
  biased = {'params': dict(tree['params'], ii={'kernel': 0, 'bias': 0})}
  with pytest.raises(
    ValueError, match=r"ii has unexpected key\(s\) \['bias'\]"
  ):
    interop.from_flax(biased)
  wrong = {'params': dict(tree['params'], io={'kernel': jnp.zeros((3, 6))})}
  with pytest.raises(ValueError, match=r'io/kernel must have shape \(4, 6\)'):
    interop.from_flax(wrong)
  fused = interop.to_flax(params, layout='nnx_optimized')
  fused['dense_h'] = {'kernel': jnp.zeros((6, 20)), 'bias': jnp.zeros(20)}
  with pytest.raises(ValueError, match=r'dense_h/kernel must be \[H, 4H\]'):
    interop.from_flax(fused)
  with pytest.raises(ValueError, match='layout must be one of'):
    interop.to_flax(params, layout='haiku')
  proj = params._replace(
    w_h=jnp.zeros((2, 4 * HIDDEN)), w_proj=jnp.zeros((HIDDEN, 2))
  )
  with pytest.raises(ValueError, match='Flax LSTMCell has no projection'):
    interop.to_flax(proj)
  with pytest.raises(TypeError, match='Flax parameter tree'):
    interop.from_flax(3)
