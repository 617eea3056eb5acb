"""TF1 interchange, checked against a float64 NumPy TF1 cell.

TensorFlow cannot run here, so the reference is TF1's documented maths for
``BasicLSTMCell`` and ``LSTMCell``, written below in TF1's own layout:
``kernel`` [I + H_out, 4H] on ``[x, h]``, gate blocks i, j, f, o,
``forget_bias`` added at run time, peepholes ``w_i_diag``, ``w_f_diag``,
``w_o_diag``, ``cell_clip``, a projection ``projection/kernel`` and
``proj_clip``. Values agree within 1e-5 in float32 and 1e-12 in float64;
gradients (through :func:`jlstm.interop.from_tf1`, float64) match central
differences of the reference within 1e-7.
"""

import functools

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

TIME, BATCH, INPUT, HIDDEN, PROJ = 4, 3, 3, 5, 2
SCOPE = 'rnn/lstm_cell/'


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def tf1_unroll(v, xs, c, h, *, forget_bias, cell_clip=None, proj_clip=None):
  """TF1's LSTMCell over time-major ``xs``, float64; returns (c, h, hs)."""
  v = {k.removeprefix(SCOPE): np.asarray(a, np.float64) for k, a in v.items()}
  c, h = np.asarray(c, np.float64), np.asarray(h, np.float64)
  peep = 'w_f_diag' in v
  hs = []
  for x in np.asarray(xs, np.float64):
    z = np.concatenate([x, h], axis=-1) @ v['kernel'] + v['bias']
    i, j, f, o = np.split(z, 4, axis=-1)
    if peep:
      i = i + v['w_i_diag'] * c
      f = f + v['w_f_diag'] * c
    c = _sigmoid(f + forget_bias) * c + _sigmoid(i) * np.tanh(j)
    if cell_clip is not None:
      c = np.clip(c, -cell_clip, cell_clip)
    if peep:
      o = o + v['w_o_diag'] * c
    h = _sigmoid(o) * np.tanh(c)
    if 'projection/kernel' in v:
      h = h @ v['projection/kernel']
      if proj_clip is not None:
        h = np.clip(h, -proj_clip, proj_clip)
    hs.append(h)
  return c, h, np.stack(hs)


def _tf1_variables(rng, *, peepholes=False, proj=False, scale=0.7):
  out = PROJ if proj else HIDDEN
  v = {
    SCOPE + 'kernel': rng.uniform(-scale, scale, (INPUT + out, 4 * HIDDEN)),
    SCOPE + 'bias': rng.uniform(-scale, scale, 4 * HIDDEN),
  }
  if peepholes:
    for name in ('w_i_diag', 'w_f_diag', 'w_o_diag'):
      v[SCOPE + name] = rng.uniform(-scale, scale, HIDDEN)
  if proj:
    v[SCOPE + 'projection/kernel'] = rng.uniform(-scale, scale, (HIDDEN, PROJ))
  return v


def _inputs(rng, out):
  xs = rng.normal(size=(TIME, BATCH, INPUT))
  c0 = rng.normal(size=(BATCH, HIDDEN))
  h0 = rng.normal(size=(BATCH, out))
  return xs, c0, h0


CASES = [
  {'forget_bias': 1.0},
  {'forget_bias': 0.0},
  {'forget_bias': 1.0, 'peepholes': True, 'cell_clip': 0.8},
  {'forget_bias': 0.5, 'proj': True, 'proj_clip': 0.3},
  {'forget_bias': 1.0, 'peepholes': True, 'proj': True, 'cell_clip': 1.0},
]


@functools.partial(jax.jit, static_argnames=('cell_clip', 'proj_clip'))
def _jlstm_unroll(params, xs, state, cell_clip=None, proj_clip=None):
  with jax.default_matmul_precision('highest'):
    return jlstm.unroll(
      params, xs, state, cell_clip=cell_clip, proj_clip=proj_clip
    )


@pytest.mark.parametrize('case', CASES, ids=str)
def test_from_tf1_matches_tf1_maths(case):
  """Imported variables reproduce TF1's cell, with its run-time options."""
  case = dict(case)
  forget_bias = case.pop('forget_bias')
  clips = {
    'cell_clip': case.pop('cell_clip', None),
    'proj_clip': case.pop('proj_clip', None),
  }
  rng = np.random.default_rng(0)
  v = _tf1_variables(rng, **case)
  xs, c0, h0 = _inputs(rng, PROJ if case.get('proj') else HIDDEN)
  want_c, want_h, want_hs = tf1_unroll(
    v, xs, c0, h0, forget_bias=forget_bias, **clips
  )
  if any(clip is not None for clip in clips.values()):
    _, _, unclipped = tf1_unroll(v, xs, c0, h0, forget_bias=forget_bias)
    assert np.max(np.abs(unclipped - want_hs)) > 1e-3, 'clip never acts'

  f32 = {k: a.astype(np.float32) for k, a in v.items()}
  params = interop.from_tf1(f32, forget_bias=forget_bias)
  state = interop.from_tf1_state((c0.astype(np.float32), h0.astype(np.float32)))
  final, hs = _jlstm_unroll(
    params, jnp.asarray(xs, jnp.float32), state, **clips
  )
  got_c, got_h = interop.to_tf1_state(final)
  assert_close(hs, want_hs, 'outputs')
  assert_close(got_c, want_c, 'final c')
  assert_close(got_h, want_h, 'final h')


def test_from_tf1_float64_and_gradients_match_tf1_maths(x64):
  """In float64 values match to 1e-12 and gradients central differences."""
  rng = np.random.default_rng(1)
  v = _tf1_variables(rng, peepholes=True, proj=True)
  xs, c0, h0 = _inputs(rng, PROJ)
  w_hs = rng.normal(size=(TIME, BATCH, PROJ))
  w_c = rng.normal(size=(BATCH, HIDDEN))
  forget_bias = 1.0

  def reference_loss(v, xs, c0, h0):
    c, _, hs = tf1_unroll(v, xs, c0, h0, forget_bias=forget_bias)
    return np.sum(hs * w_hs) + np.sum(c * w_c)

  def jlstm_loss(v, xs, c0, h0):
    params = interop.from_tf1(v, forget_bias=forget_bias)
    state = interop.from_tf1_state((c0, h0))
    final, hs = jlstm.unroll(params, xs, state)
    return jnp.sum(hs * w_hs) + jnp.sum(final.c * w_c), (final, hs)

  args = (v, xs, c0, h0)
  grads, (final, hs) = jax.jit(
    jax.grad(jlstm_loss, (0, 1, 2, 3), has_aux=True)
  )(*jax.tree.map(jnp.asarray, args))
  assert hs.dtype == jnp.float64
  want_c, want_h, want_hs = tf1_unroll(v, xs, c0, h0, forget_bias=forget_bias)
  np.testing.assert_allclose(hs, want_hs, rtol=0, atol=1e-12)
  np.testing.assert_allclose(final.c, want_c, rtol=0, atol=1e-12)
  np.testing.assert_allclose(final.h, want_h, rtol=0, atol=1e-12)

  eps = 1e-6
  for k, arg in enumerate(args):
    leaves, treedef = jax.tree.flatten(arg)
    grad_leaves = jax.tree.leaves(grads[k])
    for leaf, grad in zip(leaves, grad_leaves, strict=True):
      numeric = np.zeros_like(leaf)
      for index in np.ndindex(leaf.shape):
        for sign in (1.0, -1.0):
          bumped = leaf.copy()
          bumped[index] += sign * eps
          new = list(args)
          new[k] = jax.tree.unflatten(
            treedef,
            [bumped if other is leaf else other for other in leaves],
          )
          numeric[index] += sign * reference_loss(*new) / (2 * eps)
      np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize('forget_bias', [0.0, 1.0])
def test_to_tf1_from_tf1_round_trip(forget_bias):
  """Round trips are exact, bar one rounding of a non-zero forget_bias."""
  rng = np.random.default_rng(2)
  v = {
    k: a.astype(np.float32)
    for k, a in _tf1_variables(rng, peepholes=True, proj=True).items()
  }
  params = interop.from_tf1(v, forget_bias=forget_bias)
  assert params.w_peep.shape == (3, HIDDEN)
  assert params.w_proj.shape == (HIDDEN, PROJ)
  back = interop.to_tf1(params, forget_bias=forget_bias)
  assert sorted(back) == sorted(v)
  atol = 0.0 if forget_bias == 0.0 else 2.5e-7
  for name, value in v.items():
    np.testing.assert_allclose(back[name], value, rtol=0, atol=atol)
    if not name.endswith('bias'):
      np.testing.assert_array_equal(back[name], value)


def test_to_tf1_runs_in_tf1_maths_like_jlstm():
  """Exported variables, run by the TF1 reference, reproduce jlstm."""
  rng = np.random.default_rng(3)
  params = interop.from_tf1(
    {k: a.astype(np.float32) for k, a in _tf1_variables(rng).items()},
    forget_bias=0.3,
  )
  xs, c0, h0 = _inputs(rng, HIDDEN)
  state = jlstm.LSTMState(
    jnp.asarray(h0, jnp.float32), jnp.asarray(c0, jnp.float32)
  )
  final, hs = _jlstm_unroll(params, jnp.asarray(xs, jnp.float32), state)
  for forget_bias in (1.0, 0.0):
    exported = interop.to_tf1(
      params, forget_bias=forget_bias, scope='rnn/basic_lstm_cell'
    )
    assert sorted(exported) == [
      'rnn/basic_lstm_cell/bias',
      'rnn/basic_lstm_cell/kernel',
    ]
    v = {
      k.replace('basic_lstm_cell', 'lstm_cell'): a for k, a in exported.items()
    }
    want_c, want_h, want_hs = tf1_unroll(v, xs, c0, h0, forget_bias=forget_bias)
    assert_close(hs, want_hs, f'outputs, forget_bias={forget_bias}')
    assert_close(final.c, want_c, 'final c')


def test_tf1_gate_probe_catches_any_permutation():
  """Bias-only weights: each gate's constant lands in its own gate."""
  forget_bias = 1.0
  # TF1's documented order is i, j, f, o (j is the candidate); it adds
  # forget_bias to f at run time.
  bias = np.concatenate(
    [
      np.full(HIDDEN, PROBE[g] - (forget_bias if g == 'f' else 0.0))
      for g in ('i', 'g', 'f', 'o')
    ]
  )
  v = {
    SCOPE + 'kernel': np.zeros((INPUT + HIDDEN, 4 * HIDDEN)),
    SCOPE + 'bias': bias,
  }
  x = np.ones((1, 2, INPUT))
  c0 = np.full((2, HIDDEN), PROBE_C0)
  h0 = np.ones((2, HIDDEN))
  c, h, _ = tf1_unroll(v, x, c0, h0, forget_bias=forget_bias)
  assert_probe_state(h, c, 'the TF1 reference itself')

  f32 = {k: a.astype(np.float32) for k, a in v.items()}
  params = interop.from_tf1(f32, forget_bias=forget_bias)
  state = interop.from_tf1_state((c0.astype(np.float32), h0.astype(np.float32)))
  new = jax.jit(jlstm.lstm_cell)(params, state, x[0].astype(np.float32))
  assert_probe_state(new.h, new.c, 'from_tf1')

  b = np.zeros(4 * HIDDEN, np.float32)
  for gate, value in PROBE.items():
    b[jlstm.gate_slice(gate, HIDDEN)] = value
  exported = interop.to_tf1(params._replace(b=b), forget_bias=forget_bias)
  c, h, _ = tf1_unroll(exported, x, c0, h0, forget_bias=forget_bias)
  assert_probe_state(h, c, 'to_tf1')


def test_tf1_states_are_c_then_h():
  """LSTMStateTuple order: c first, h second, both ways."""
  c, h = np.ones((2, HIDDEN)), np.zeros((2, PROJ))
  state = interop.from_tf1_state((c, h))
  assert state.c.shape == (2, HIDDEN) and state.h.shape == (2, PROJ)
  back_c, back_h = interop.to_tf1_state(state)
  np.testing.assert_array_equal(back_c, c)
  np.testing.assert_array_equal(back_h, h)


def test_from_tf1_finds_the_scope_and_skips_optimizer_slots():
  """One cell is found alone; ':0' suffixes and Adam slots are ignored."""
  rng = np.random.default_rng(4)
  v = _tf1_variables(rng)
  with_slots = {f'{k}:0': a for k, a in v.items()}
  with_slots[SCOPE + 'kernel/Adam'] = v[SCOPE + 'kernel']
  with_slots['global_step'] = np.array(3)
  a = interop.from_tf1(with_slots)
  b = interop.from_tf1(v, scope='rnn/lstm_cell')
  for got, want in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(got, want)
  bare = interop.from_tf1({k.removeprefix(SCOPE): x for k, x in v.items()})
  np.testing.assert_array_equal(bare.w_x, b.w_x)
  two = dict(v, **{'other/kernel': v[SCOPE + 'kernel']})
  with pytest.raises(ValueError, match='pass scope='):
    interop.from_tf1(two)


def test_from_tf1_errors_name_the_variable():
  """Missing, partial, extra and misshapen variables raise naming them."""
  rng = np.random.default_rng(5)
  v = _tf1_variables(rng, peepholes=True)
  with pytest.raises(KeyError, match="'bias'"):
    interop.from_tf1({k: a for k, a in v.items() if k != SCOPE + 'bias'})
  with pytest.raises(KeyError, match="'w_o_diag'"):
    interop.from_tf1({k: a for k, a in v.items() if 'w_o_diag' not in k})
  with pytest.raises(ValueError, match=r"unexpected key\(s\) \['w_x_diag'\]"):
    interop.from_tf1(dict(v, **{SCOPE + 'w_x_diag': v[SCOPE + 'bias']}))
  with pytest.raises(ValueError, match=r'lstm_cell/bias must have shape'):
    interop.from_tf1(dict(v, **{SCOPE + 'bias': v[SCOPE + 'bias'][:-1]}))
  with pytest.raises(ValueError, match=r'w_f_diag must have shape \(5,\)'):
    interop.from_tf1(dict(v, **{SCOPE + 'w_f_diag': np.zeros(4)}))
  with pytest.raises(ValueError, match=r'kernel must be \[I \+ 5, 20\]'):
    interop.from_tf1(dict(v, **{SCOPE + 'kernel': np.zeros((5, 20))}))
  params = interop.from_tf1(v)
  ln = jlstm.LayerNormParams(
    np.ones(4 * HIDDEN), np.ones(4 * HIDDEN), np.ones(HIDDEN), np.zeros(HIDDEN)
  )
  with pytest.raises(ValueError, match='TF1 LSTMCell has no layer normal'):
    interop.to_tf1(params._replace(ln=ln))
