"""Tests of the cell variants, run-time options, resets and regularisation.

Expected values come from the float64 NumPy loops in variant_reference.py.
Tolerances: float64 runs agree to ~1e-15 per step, so 1e-10 leaves room
for T steps of rounding; float32 runs use 2e-5.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import variant_reference as ref
from jax.test_util import check_grads

import jlstm

F64_TOL = dict(rtol=1e-10, atol=1e-12)
F32_TOL = dict(rtol=2e-5, atol=2e-5)

#: name -> (init options, run-time options)
VARIANTS = {
  'peepholes': (dict(peepholes=True), {}),
  'layer_norm': (dict(layer_norm=True), {}),
  'projection': (dict(proj_size=2), {}),
  'proj_clip': (dict(proj_size=2), dict(proj_clip=0.3)),
  'forget_bias': ({}, dict(forget_bias=1.0)),
  'cell_clip': ({}, dict(cell_clip=0.4)),
  'coupled': ({}, dict(coupled=True)),
  'all': (
    dict(peepholes=True, layer_norm=True, proj_size=2),
    dict(forget_bias=0.5, cell_clip=0.6, proj_clip=0.5, coupled=True),
  ),
}


def to_jlstm(p, dtype=jnp.float64):
  """Wraps a reference parameter dict as jlstm.LSTMParams."""
  a = lambda name: jnp.asarray(p[name], dtype) if name in p else None
  ln = None
  if 'scale_x' in p:
    ln = jlstm.LayerNormParams(
      scale_x=a('scale_x'),
      scale_h=a('scale_h'),
      scale_c=a('scale_c'),
      offset_c=a('offset_c'),
    )
  return jlstm.LSTMParams(
    w_x=a('w_x'),
    w_h=a('w_h'),
    b=a('b'),
    w_peep=a('w_peep'),
    ln=ln,
    w_proj=a('w_proj'),
  )


def problem(variant, *, input_size=3, hidden_size=4, time=5, batch=3, seed=0):
  """Random reference params, inputs and initial state for a variant."""
  rng = np.random.default_rng(seed)
  init, options = VARIANTS[variant]
  p = ref.random_params(rng, input_size, hidden_size, scale=0.8, **init)
  out = p['w_proj'].shape[1] if 'w_proj' in p else hidden_size
  xs = rng.normal(0.0, 1.0, (time, batch, input_size))
  h0 = rng.normal(0.0, 0.5, (batch, out))
  c0 = rng.normal(0.0, 0.5, (batch, hidden_size))
  return p, options, xs, h0, c0


@pytest.mark.parametrize('reverse', [False, True])
@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_unroll_variant_matches_float64_reference(x64, variant, reverse):
  """Each variant, with lengths (0 included) and reverse, in float64."""
  p, options, xs, h0, c0 = problem(variant)
  lengths = np.array([5, 2, 0])
  h, c, hs = ref.unroll(
    p, xs, h0, c0, lengths=lengths, reverse=reverse, **options
  )
  final, got = jlstm.unroll(
    to_jlstm(p),
    jnp.asarray(xs),
    jlstm.LSTMState(h=jnp.asarray(h0), c=jnp.asarray(c0)),
    lengths=jnp.asarray(lengths),
    reverse=reverse,
    **options,
  )
  np.testing.assert_allclose(got, hs, **F64_TOL)
  np.testing.assert_allclose(final.h, h, **F64_TOL)
  np.testing.assert_allclose(final.c, c, **F64_TOL)


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_lstm_cell_variant_matches_reference_float32(variant):
  """One float32 step of each variant, to 2e-5 of the float64 loop."""
  p, options, xs, h0, c0 = problem(variant)
  expected = [ref.cell(p, h0[b], c0[b], xs[0, b], **options) for b in range(3)]
  state = jlstm.lstm_cell(
    to_jlstm(p, jnp.float32),
    jlstm.LSTMState(h=jnp.asarray(h0, jnp.float32), c=jnp.asarray(c0)),
    jnp.asarray(xs[0], jnp.float32),
    **options,
  )
  np.testing.assert_allclose(state.h, [e[0] for e in expected], **F32_TOL)
  np.testing.assert_allclose(state.c, [e[1] for e in expected], **F32_TOL)


@pytest.mark.parametrize(
  'variant', ['peepholes', 'layer_norm', 'proj_clip', 'all']
)
def test_unroll_variant_check_grads(x64, variant):
  """check_grads through each variant.

  The run-time options (forget bias, clipping, CIFG) are all in 'all'.
  """
  p, options, xs, h0, c0 = problem(variant, time=3, batch=2)
  if 'cell_clip' in options or 'proj_clip' in options:
    # Clipping has kinks; large bounds keep the finite differences away
    # from them while the clip code still runs.
    options = {**options}
    options.update(
      {k: 50.0 for k in ('cell_clip', 'proj_clip') if k in options}
    )
  lengths = jnp.array([3, 1])

  @jax.jit
  def run(params, xs, state):
    final, hs = jlstm.unroll(
      params, xs, state, lengths=lengths, reverse=True, **options
    )
    return hs, final

  state = jlstm.LSTMState(h=jnp.asarray(h0), c=jnp.asarray(c0))
  # Forward mode once, on the case that has every variant.
  modes = ['fwd', 'rev'] if variant == 'all' else ['rev']
  check_grads(
    run,
    (to_jlstm(p), jnp.asarray(xs), state),
    order=1,
    modes=modes,
    eps=1e-5,
  )


def test_clipping_bounds_hold():
  """cell_clip bounds c and proj_clip bounds h at every step."""
  p, _, xs, h0, c0 = problem('projection', seed=3)
  p = {**p, 'b': p['b'] + 3.0}
  final, hs = jlstm.unroll(
    to_jlstm(p, jnp.float32),
    jnp.asarray(xs * 5, jnp.float32),
    cell_clip=0.25,
    proj_clip=0.1,
  )
  assert np.abs(hs).max() <= 0.1
  assert np.abs(final.c).max() <= 0.25
  assert np.isclose(np.abs(hs).max(), 0.1)


@pytest.mark.parametrize('reverse', [False, True])
def test_unroll_resets_match_float64_reference(x64, reverse):
  """Resets restore the initial state per sequence, padding ignored."""
  p, options, xs, h0, c0 = problem('all', time=6, batch=3, seed=4)
  lengths = np.array([6, 4, 3])
  resets = np.zeros((6, 3), bool)
  resets[[2, 5], 0] = True
  resets[[1, 3], 1] = True  # step 3 of sequence 1 starts an episode
  resets[[4], 2] = True  # in the padding: ignored
  h, c, hs = ref.unroll(
    p, xs, h0, c0, lengths=lengths, reverse=reverse, resets=resets, **options
  )
  final, got = jlstm.unroll(
    to_jlstm(p),
    jnp.asarray(xs),
    jlstm.LSTMState(h=jnp.asarray(h0), c=jnp.asarray(c0)),
    lengths=jnp.asarray(lengths),
    reverse=reverse,
    resets=jnp.asarray(resets),
    **options,
  )
  np.testing.assert_allclose(got, hs, **F64_TOL)
  np.testing.assert_allclose(final.h, h, **F64_TOL)
  np.testing.assert_allclose(final.c, c, **F64_TOL)


def test_unroll_resets_split_episodes_like_separate_runs():
  """A row with a reset runs its two episodes as two separate sequences."""
  p, options, xs, h0, c0 = problem('peepholes', time=7, batch=1, seed=9)
  resets = jnp.zeros((7, 1), bool).at[4].set(True)
  params, state = to_jlstm(p, jnp.float32), (h0, c0)
  for reverse in (False, True):
    _, joined = jlstm.unroll(
      params,
      jnp.asarray(xs, jnp.float32),
      jlstm.LSTMState(*(jnp.asarray(a, jnp.float32) for a in state)),
      resets=resets,
      reverse=reverse,
      **options,
    )
    # Going backwards the later episode runs first, and the state restarts
    # at the end of the earlier one.
    first = ref.unroll(p, xs[:4], h0, c0, reverse=reverse, **options)[2]
    second = ref.unroll(p, xs[4:], h0, c0, reverse=reverse, **options)[2]
    np.testing.assert_allclose(
      joined, np.concatenate([first, second]), **F32_TOL
    )


def matching_mask(candidates, got):
  """Index of the one candidate output that ``got`` matches, else None."""
  hits = [
    k
    for k, expected in enumerate(candidates)
    if np.allclose(got, expected, rtol=1e-5, atol=1e-6)
  ]
  return hits[0] if len(hits) == 1 else None


@pytest.mark.parametrize('which', ['input_dropout', 'recurrent_dropout'])
def test_variational_dropout_mask_is_the_same_at_every_step(which):
  """Each sequence's outputs match one fixed mask used at all T steps."""
  rate, batch, time = 0.5, 24, 6
  p, _, xs, h0, c0 = problem(
    'peepholes', input_size=2, hidden_size=2, time=time, batch=batch, seed=5
  )
  h0 = np.zeros_like(h0)
  c0 = np.zeros_like(c0)
  size = 2
  masks = [
    np.array(m) / (1 - rate) for m in itertools.product([0, 1], repeat=size)
  ]
  _, hs = jlstm.unroll(
    to_jlstm(p, jnp.float32),
    jnp.asarray(xs, jnp.float32),
    key=jax.random.key(7),
    **{which: rate},
  )
  seen = set()
  for b in range(batch):
    one = xs[:, b : b + 1]
    candidates = []
    for m in masks:
      kw = {'x_masks' if which == 'input_dropout' else 'h_masks': m[None]}
      candidates.append(ref.unroll(p, one, h0[:1], c0[:1], **kw)[2][:, 0])
    k = matching_mask(candidates, np.asarray(hs[:, b]))
    assert k is not None, f'sequence {b} matches no per-sequence mask'
    seen.add(k)
  # 24 sequences over 4 masks: all four show up unless the draw is broken.
  assert seen == set(range(len(masks)))


def test_zoneout_training_draws_per_step_masks():
  """Each step keeps the old h or c per unit, drawn afresh every step."""
  rate, batch, time = 0.5, 16, 3
  p, _, xs, h0, c0 = problem(
    'forget_bias', input_size=2, hidden_size=1, time=time, batch=batch, seed=6
  )
  _, hs = jlstm.unroll(
    to_jlstm(p, jnp.float32),
    jnp.asarray(xs, jnp.float32),
    jlstm.LSTMState(h=jnp.asarray(h0, jnp.float32), c=jnp.asarray(c0)),
    zoneout_cell=rate,
    zoneout_hidden=rate,
    key=jax.random.key(3),
  )
  patterns = set()
  for b in range(batch):
    # Enumerate every (keep c, keep h) choice at every step.
    candidates, choices = [], []
    for choice in itertools.product([0, 1], repeat=2 * time):
      h, c = h0[b], c0[b]
      out = []
      for t in range(time):
        h_new, c_new = ref.cell(p, h, c, xs[t, b])
        c = c if choice[2 * t] else c_new
        h = h if choice[2 * t + 1] else h_new
        out.append(h)
      candidates.append(np.array(out))
      choices.append(choice)
    got = np.asarray(hs[:, b])
    hits = {
      choices[k][1::2]
      for k, e in enumerate(candidates)
      if np.allclose(got, e, rtol=1e-5, atol=1e-6)
    }
    assert hits, f'sequence {b} matches no zoneout pattern'
    patterns |= hits
  # Per-step draws: some sequence keeps h at one step and not at another.
  assert any(len(set(p)) > 1 for p in patterns)


def test_zoneout_eval_is_the_expectation(x64):
  """Out of training, zoneout mixes rate * old + (1 - rate) * new."""
  p, _, xs, h0, c0 = problem('layer_norm', seed=8)
  rate_c, rate_h = 0.3, 0.6
  expected = []
  for b in range(3):
    h, c = h0[b], c0[b]
    for t in range(5):
      h_new, c_new = ref.cell(p, h, c, xs[t, b])
      c = rate_c * c + (1 - rate_c) * c_new
      h = rate_h * h + (1 - rate_h) * h_new
      expected.append((t, b, h))
  _, hs = jlstm.unroll(
    to_jlstm(p),
    jnp.asarray(xs),
    jlstm.LSTMState(h=jnp.asarray(h0), c=jnp.asarray(c0)),
    zoneout_cell=rate_c,
    zoneout_hidden=rate_h,
    training=False,
  )
  for t, b, h in expected:
    np.testing.assert_allclose(hs[t, b], h, **F64_TOL)


def test_dropout_is_exactly_off_when_not_training():
  """training=False with dropout rates gives the plain outputs bit for bit."""
  params = jlstm.init_params(jax.random.key(0), 3, 4)
  xs = jax.random.normal(jax.random.key(1), (5, 2, 3))
  plain = jlstm.unroll(params, xs)
  off = jlstm.unroll(
    params, xs, input_dropout=0.5, recurrent_dropout=0.5, training=False
  )
  np.testing.assert_array_equal(off[1], plain[1])


def test_regularisation_deterministic_for_a_key():
  """The same key gives the same result; another key a different one."""
  params = jlstm.init_params(jax.random.key(0), 3, 8)
  xs = jax.random.normal(jax.random.key(1), (5, 4, 3))

  @jax.jit
  def run(key):
    return jlstm.unroll(
      params,
      xs,
      input_dropout=0.3,
      recurrent_dropout=0.3,
      zoneout_cell=0.2,
      zoneout_hidden=0.1,
      key=key,
    )[1]

  first = run(jax.random.key(2))
  np.testing.assert_array_equal(run(jax.random.key(2)), first)
  assert not np.allclose(run(jax.random.key(3)), first)


def test_rates_in_training_need_a_key():
  """A rate > 0 in training without a key raises, naming the rate."""
  params = jlstm.init_params(jax.random.key(0), 3, 4)
  xs = jnp.ones((2, 1, 3))
  for name in (
    'input_dropout',
    'recurrent_dropout',
    'zoneout_cell',
    'zoneout_hidden',
  ):
    with pytest.raises(ValueError, match=f'{name}=0.1 .*needs a PRNG key'):
      jlstm.unroll(params, xs, **{name: 0.1})
  with pytest.raises(ValueError, match='needs a PRNG key'):
    jlstm.lstm_cell(params, jlstm.zero_state(4), xs[0, 0], zoneout_cell=0.1)


def test_bad_options_raise():
  """Rates outside [0, 1), non-positive clips, proj_clip without w_proj."""
  params = jlstm.init_params(jax.random.key(0), 3, 4)
  xs = jnp.ones((2, 1, 3))
  with pytest.raises(ValueError, match=r'input_dropout must be .*\[0, 1\)'):
    jlstm.unroll(params, xs, input_dropout=1.0, training=False)
  with pytest.raises(ValueError, match='zoneout_cell must be'):
    jlstm.unroll(params, xs, zoneout_cell=-0.1)
  with pytest.raises(ValueError, match='cell_clip must be positive'):
    jlstm.unroll(params, xs, cell_clip=0.0)
  with pytest.raises(ValueError, match='proj_clip needs a projection'):
    jlstm.unroll(params, xs, proj_clip=1.0)
  with pytest.raises(ValueError, match=r'resets must be \[T, \.\.\.\]'):
    jlstm.unroll(params, xs, resets=jnp.zeros((3, 1), bool))
  with pytest.raises(TypeError, match='resets must be a bool array'):
    jlstm.unroll(params, xs, resets=jnp.zeros((2, 1)))


def test_bad_variant_shapes_raise():
  """Variant fields of the wrong shape raise ValueError naming the field."""
  p = jlstm.init_params(
    jax.random.key(0), 3, 4, peepholes=True, layer_norm=True, proj_size=2
  )
  xs = jnp.ones((2, 1, 3))
  with pytest.raises(ValueError, match=r'params.w_peep must be \[3, H\]'):
    jlstm.unroll(p._replace(w_peep=jnp.ones((4,))), xs)
  with pytest.raises(ValueError, match=r'params.ln.scale_c must be \[H\]'):
    jlstm.unroll(p._replace(ln=p.ln._replace(scale_c=jnp.ones(5))), xs)
  with pytest.raises(ValueError, match=r'params.w_h must be \[P, 4H\]'):
    jlstm.unroll(p._replace(w_h=jnp.ones((4, 16))), xs)
  with pytest.raises(ValueError, match=r'params.w_proj must be \[H, P\]'):
    jlstm.unroll(p._replace(w_proj=jnp.ones((3, 2))), xs)
  with pytest.raises(ValueError, match=r'state.h must be \[\.\.\., P\]'):
    jlstm.unroll(p, xs, jlstm.zero_state(4, (1,)))


def test_init_params_variant_fields():
  """Variant options add fields of the documented shapes, plain ones kept."""
  plain = jlstm.init_params(jax.random.key(0), 3, 8)
  p = jlstm.init_params(
    jax.random.key(0), 3, 8, peepholes=True, layer_norm=True, proj_size=5
  )
  assert p.w_peep.shape == (3, 8) and p.w_proj.shape == (8, 5)
  assert p.w_h.shape == (5, 32) and p.output_size == 5
  np.testing.assert_array_equal(p.w_x, plain.w_x)
  np.testing.assert_array_equal(p.b, plain.b)
  np.testing.assert_array_equal(p.ln.scale_x, np.ones(32))
  np.testing.assert_array_equal(p.ln.offset_c, np.zeros(8))
  glorot = jlstm.init_params(
    jax.random.key(0),
    3,
    8,
    scheme='glorot',
    peepholes=True,
    proj_size=5,
    dtype=jnp.bfloat16,
  )
  np.testing.assert_array_equal(glorot.w_peep, np.zeros((3, 8)))
  assert {a.dtype for a in jax.tree.leaves(glorot)} == {jnp.dtype(jnp.bfloat16)}
  with pytest.raises(ValueError, match='proj_size must be smaller'):
    jlstm.init_params(jax.random.key(0), 3, 8, proj_size=8)


def test_is_basic_and_positional_construction():
  """is_basic tells the plain cell; LSTMParams(w_x, w_h, b) still works."""
  w = jnp.zeros((3, 16)), jnp.zeros((4, 16)), jnp.zeros(16)
  plain = jlstm.LSTMParams(*w)
  assert jlstm.is_basic(plain)
  assert len(jax.tree.leaves(plain)) == 3
  assert not jlstm.is_basic(plain._replace(w_peep=jnp.zeros((3, 4))))
  assert plain.output_size == 4


def test_variants_jit_vmap_match_eager():
  """jit and vmap over the batch give the eager, batched result."""
  p = jlstm.init_params(
    jax.random.key(0), 3, 4, peepholes=True, layer_norm=True, proj_size=2
  )
  xs = jax.random.normal(jax.random.key(1), (5, 6, 3))
  opts = dict(forget_bias=1.0, cell_clip=2.0, coupled=True)
  _, eager = jlstm.unroll(p, xs, **opts)
  _, jitted = jax.jit(lambda p, xs: jlstm.unroll(p, xs, **opts))(p, xs)
  mapped = jax.vmap(
    lambda x: jlstm.unroll(p, x[:, None], **opts)[1][:, 0],
    in_axes=1,
    out_axes=1,
  )(xs)
  np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(mapped, eager, rtol=1e-6, atol=1e-6)


def test_variants_bfloat16_close_to_float32():
  """bfloat16 parameters keep a float32 state within bfloat16 accuracy."""
  p = jlstm.init_params(
    jax.random.key(0), 3, 8, peepholes=True, layer_norm=True, proj_size=4
  )
  xs = jax.random.normal(jax.random.key(1), (6, 2, 3))
  _, ref32 = jlstm.unroll(p, xs, forget_bias=1.0)
  p16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), p)
  final, got = jlstm.unroll(p16, xs.astype(jnp.bfloat16), forget_bias=1.0)
  assert got.dtype == jnp.float32 and final.c.dtype == jnp.float32
  # bfloat16 keeps 8 bits of mantissa: about 4e-3 relative per rounding.
  np.testing.assert_allclose(got, ref32, atol=3e-2)
