"""Tests of stacks: layers, directions, lengths, dropout, errors.

References: PyTorch's ``nn.LSTM`` with packed sequences (float64 and
float32), the float64 NumPy loops of variant_reference.py, and numbers
derived by hand. Tolerances: 1e-10 in float64; 2e-5 in float32.
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


def to_numpy(cell):
  """jlstm.LSTMParams as a reference parameter dict of float64 arrays."""
  p = {
    name: np.asarray(getattr(cell, name), np.float64)
    for name in ('w_x', 'w_h', 'b', 'w_peep', 'w_proj')
    if getattr(cell, name) is not None
  }
  if cell.ln is not None:
    p.update(
      {k: np.asarray(v, np.float64) for k, v in cell.ln._asdict().items()}
    )
  return p


def torch_to_stack(lstm, num_layers, directions, dtype):
  """Reads nn.LSTM weights into params[layer][direction] (biases summed)."""
  weights = {k: v.detach().numpy() for k, v in lstm.state_dict().items()}
  stack = []
  for layer in range(num_layers):
    cells = []
    for direction in range(directions):
      sfx = f'l{layer}' + ('_reverse' if direction else '')
      w_proj = weights.get(f'weight_hr_{sfx}')
      cells.append(
        jlstm.LSTMParams(
          w_x=jnp.asarray(weights[f'weight_ih_{sfx}'].T, dtype),
          w_h=jnp.asarray(weights[f'weight_hh_{sfx}'].T, dtype),
          b=jnp.asarray(
            weights[f'bias_ih_{sfx}'] + weights[f'bias_hh_{sfx}'], dtype
          ),
          w_proj=None if w_proj is None else jnp.asarray(w_proj.T, dtype),
        )
      )
    stack.append(tuple(cells))
  return tuple(stack)


TORCH_CASES = {
  '1-layer': dict(num_layers=1, bidirectional=False, proj_size=0),
  '2-layer-bidirectional': dict(num_layers=2, bidirectional=True, proj_size=0),
  '2-layer-bidirectional-proj': dict(
    num_layers=2, bidirectional=True, proj_size=3
  ),
  '3-layer-proj': dict(num_layers=3, bidirectional=False, proj_size=2),
}


def run_torch_case(case, torch_dtype, jax_dtype):
  """Runs nn.LSTM on packed sequences and jlstm on the same weights."""
  torch = pytest.importorskip('torch')
  cfg = TORCH_CASES[case]
  time, batch, input_size, hidden = 6, 4, 5, 4
  directions = 2 if cfg['bidirectional'] else 1
  out_size = cfg['proj_size'] or hidden
  torch.manual_seed(0)
  lstm = torch.nn.LSTM(input_size, hidden, dtype=torch_dtype, **cfg)
  rng = np.random.default_rng(1)
  xs = rng.normal(0.0, 1.0, (time, batch, input_size))
  lengths = np.array([6, 3, 1, 5])  # unsorted, as real batches are
  layers = cfg['num_layers'] * directions
  h0 = rng.normal(0.0, 0.5, (layers, batch, out_size))
  c0 = rng.normal(0.0, 0.5, (layers, batch, hidden))

  t = lambda a: torch.as_tensor(a, dtype=torch_dtype)
  packed = torch.nn.utils.rnn.pack_padded_sequence(
    t(xs), torch.as_tensor(lengths), enforce_sorted=False
  )
  with torch.no_grad():
    out, (h_n, c_n) = lstm(packed, (t(h0), t(c0)))
  out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=time)

  params = torch_to_stack(lstm, cfg['num_layers'], directions, jax_dtype)
  states = tuple(
    tuple(
      jlstm.LSTMState(
        h=jnp.asarray(h0[layer * directions + d], jax_dtype),
        c=jnp.asarray(c0[layer * directions + d], jax_dtype),
      )
      for d in range(directions)
    )
    for layer in range(cfg['num_layers'])
  )
  finals, outputs = jlstm.unroll_stack(
    params, jnp.asarray(xs, jax_dtype), states, lengths=jnp.asarray(lengths)
  )
  got_h = np.stack([s.h for layer in finals for s in layer])
  got_c = np.stack([s.c for layer in finals for s in layer])
  return (outputs, got_h, got_c), (out.numpy(), h_n.numpy(), c_n.numpy())


@pytest.mark.torch
@pytest.mark.parametrize(
  'case', ['2-layer-bidirectional', '2-layer-bidirectional-proj']
)
def test_unroll_stack_matches_torch_packed_float64(x64, case):
  """Outputs and h_n, c_n equal nn.LSTM on packed sequences, float64."""
  torch = pytest.importorskip('torch')
  got, want = run_torch_case(case, torch.float64, jnp.float64)
  for g, w in zip(got, want, strict=True):
    np.testing.assert_allclose(g, w, **F64_TOL)


@pytest.mark.torch
@pytest.mark.parametrize('case', ['1-layer', '3-layer-proj'])
def test_unroll_stack_matches_torch_packed_float32(case):
  """Single-layer and deep projected stacks in float32, to 2e-5."""
  torch = pytest.importorskip('torch')
  # Full float32 matmuls on accelerators too (TPU and TF32 GPUs round).
  with jax.default_matmul_precision('highest'):
    got, want = run_torch_case(case, torch.float32, jnp.float32)
  for g, w in zip(got, want, strict=True):
    np.testing.assert_allclose(g, w, **F32_TOL)


def test_bidirectional_hand_values():
  """Hand-derived outputs of a 1-unit bidirectional layer with padding.

  Only the input-to-candidate weight is 1, so every gate is sigmoid(0) =
  1/2 and c' = c / 2 + tanh(x) / 2, h' = tanh(c') / 2. With tanh(x) = 0.8
  then 0.4 and one padded step: forward c = 0.4, 0.4; backward (from step
  1) c = 0.2, then 0.1 + 0.4 = 0.5.
  """
  w_x = jnp.zeros((1, 4)).at[0, jlstm.gate_slice('g', 1)].set(1.0)
  cell = jlstm.LSTMParams(w_x=w_x, w_h=jnp.zeros((1, 4)), b=jnp.zeros(4))
  xs = jnp.arctanh(jnp.array([0.8, 0.4, 0.9]))[:, None, None]
  finals, outputs = jlstm.unroll_stack(((cell, cell),), xs, lengths=[2])
  expected = 0.5 * np.tanh(np.array([[0.4, 0.5], [0.4, 0.2], [0.0, 0.0]]))
  np.testing.assert_allclose(outputs[:, 0], expected, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(finals[0][0].c, [[0.4]], rtol=1e-6)
  np.testing.assert_allclose(finals[0][1].c, [[0.5]], rtol=1e-6)


@pytest.mark.parametrize('bidirectional', [False, True])
def test_unroll_stack_variants_match_float64_reference(x64, bidirectional):
  """2-layer stacks with every variant, options, resets, lengths (0 too)."""
  params = jlstm.init_stack(
    jax.random.key(0),
    3,
    5,
    num_layers=2,
    bidirectional=bidirectional,
    proj_size=2,
    peepholes=True,
    layer_norm=True,
    scheme='uniform',
    scale=0.7,
    dtype=jnp.float64,
  )
  xs = np.random.default_rng(2).normal(0.0, 1.0, (6, 3, 3))
  lengths = np.array([6, 0, 4])
  resets = np.zeros((6, 3), bool)
  resets[3, 0] = resets[2, 2] = True
  options = dict(forget_bias=1.0, cell_clip=0.8, coupled=True)
  finals, outputs = jlstm.unroll_stack(
    params,
    jnp.asarray(xs),
    lengths=jnp.asarray(lengths),
    resets=jnp.asarray(resets),
    **options,
  )
  layers = [[to_numpy(cell) for cell in layer] for layer in params]
  want_finals, want = ref.unroll_stack(
    layers, xs, lengths=lengths, resets=resets, **options
  )
  np.testing.assert_allclose(outputs, want, **F64_TOL)
  for layer, layer_finals in enumerate(want_finals):
    for d, (h, c) in enumerate(layer_finals):
      np.testing.assert_allclose(finals[layer][d].h, h, **F64_TOL)
      np.testing.assert_allclose(finals[layer][d].c, c, **F64_TOL)


def test_unroll_stack_check_grads(x64):
  """check_grads through a bidirectional 2-layer stack with lengths."""
  params = jlstm.init_stack(
    jax.random.key(0),
    2,
    3,
    num_layers=2,
    bidirectional=True,
    scheme='uniform',
    scale=0.8,
    dtype=jnp.float64,
  )
  xs = jax.random.normal(jax.random.key(1), (3, 2, 2), jnp.float64)

  @jax.jit
  def run(params, xs):
    return jlstm.unroll_stack(params, xs, lengths=jnp.array([3, 2]))

  check_grads(run, (params, xs), order=1, modes=['rev'], eps=1e-5)


def test_dropout_between_layers_masks_each_step_and_element():
  """Layer 1 sees layer 0's outputs times an i.i.d. {0, 2} mask (rate 0.5).

  Layer 1 is memoryless (no recurrence, forget gate shut), so its output
  at each step is a function of that step's masked input alone; every
  step must match exactly one of the four masks.
  """
  rate, time, batch = 0.5, 8, 3
  stack = jlstm.init_stack(
    jax.random.key(0), 3, 2, num_layers=2, scheme='uniform', scale=1.0
  )
  top = stack[1][0]
  top = top._replace(
    w_h=jnp.zeros_like(top.w_h),
    b=top.b.at[jlstm.gate_slice('f', 2)].set(-50.0),
  )
  stack = (stack[0], (top,))
  xs = jax.random.normal(jax.random.key(1), (time, batch, 3))
  _, outputs = jlstm.unroll_stack(
    stack, xs, dropout=rate, key=jax.random.key(5)
  )

  bottom = to_numpy(stack[0][0])
  top_np = to_numpy(top)
  _, _, below = ref.unroll(
    bottom, np.asarray(xs), np.zeros((batch, 2)), np.zeros((batch, 2))
  )
  masks = [
    np.array(m) / (1 - rate) for m in itertools.product([0, 1], repeat=2)
  ]
  drawn = set()
  for t, b in itertools.product(range(time), range(batch)):
    candidates = [
      ref.cell(top_np, np.zeros(2), np.zeros(2), below[t, b] * m)[0]
      for m in masks
    ]
    hits = [
      k
      for k, c in enumerate(candidates)
      if np.allclose(outputs[t, b], c, rtol=1e-5, atol=1e-6)
    ]
    assert len(hits) == 1, f'step {t} of sequence {b} matches {hits}'
    drawn.add((b, hits[0]))
  # Independent draws: one sequence sees several masks over its steps.
  assert len(drawn) > batch


def test_dropout_only_between_layers_and_only_in_training():
  """No effect on a 1-layer stack or out of training; keyed and repeatable."""
  xs = jax.random.normal(jax.random.key(1), (5, 2, 3))
  run = jax.jit(jlstm.unroll_stack, static_argnames=('dropout', 'training'))
  one = jlstm.init_stack(jax.random.key(0), 3, 4)
  plain = run(one, xs)[1]
  dropped = run(one, xs, dropout=0.5, key=jax.random.key(2))[1]
  np.testing.assert_array_equal(dropped, plain)

  two = jlstm.init_stack(jax.random.key(0), 3, 4, num_layers=2)
  plain = run(two, xs)[1]
  off = run(two, xs, dropout=0.5, training=False)[1]
  np.testing.assert_array_equal(off, plain)
  first = run(two, xs, dropout=0.5, key=jax.random.key(2))[1]
  again = run(two, xs, dropout=0.5, key=jax.random.key(2))[1]
  other = run(two, xs, dropout=0.5, key=jax.random.key(3))[1]
  np.testing.assert_array_equal(again, first)
  assert not np.allclose(first, plain)
  assert not np.allclose(other, first)
  with pytest.raises(ValueError, match='dropout=0.5 in training needs a'):
    jlstm.unroll_stack(two, xs, dropout=0.5)


def test_init_stack_shapes_chain_between_layers():
  """Layer l > 0 reads D * H_out inputs; h is [..., P] with a projection."""
  params = jlstm.init_stack(
    jax.random.key(0), 7, 6, num_layers=2, bidirectional=True, proj_size=4
  )
  assert [len(layer) for layer in params] == [2, 2]
  assert params[0][1].w_x.shape == (7, 24)
  assert params[1][0].w_x.shape == (8, 24)
  assert params[1][1].w_h.shape == (4, 24)
  assert params[1][1].w_proj.shape == (6, 4)
  # Each layer and direction draws its own weights.
  assert not np.allclose(params[1][0].w_x, params[1][1].w_x)
  states = jlstm.zero_stack_state(params, (2, 5))
  assert states[1][1].h.shape == (2, 5, 4)
  assert states[1][1].c.shape == (2, 5, 6)
  finals, outputs = jax.jit(jlstm.unroll_stack)(
    params, jnp.ones((3, 2, 5, 7)), states
  )
  assert outputs.shape == (3, 2, 5, 8)
  assert jax.tree.structure(finals) == jax.tree.structure(states)


def test_unroll_stack_bad_structure_raises():
  """Stacks and states that do not nest as [layer][direction] are named."""
  params = jlstm.init_stack(
    jax.random.key(0), 3, 4, num_layers=2, bidirectional=True
  )
  xs = jnp.ones((2, 1, 3))
  states = jlstm.zero_stack_state(params, (1,))
  with pytest.raises(TypeError, match='params must be stack parameters'):
    jlstm.unroll_stack(params[0][0], xs)
  with pytest.raises(ValueError, match=r'params\[1\] must hold 1 .* or 2'):
    jlstm.unroll_stack((params[0], params[1] * 2), xs)
  with pytest.raises(ValueError, match='same number of directions'):
    jlstm.unroll_stack((params[0], params[1][:1]), xs)
  with pytest.raises(ValueError, match=r'params\[1\]\[0\].w_x expects'):
    jlstm.unroll_stack((params[0], (params[0][0], params[0][1])), xs)
  with pytest.raises(TypeError, match='states must be states'):
    jlstm.unroll_stack(params, xs, states[0][0])
  with pytest.raises(ValueError, match='one entry per layer, 2; got 1'):
    jlstm.unroll_stack(params, xs, states[:1])
  with pytest.raises(ValueError, match=r'states\[1\] must hold 2 direction'):
    jlstm.unroll_stack(params, xs, (states[0], states[1][:1]))
  with pytest.raises(ValueError, match=r'states\[0\]\[1\].h and'):
    bad = states[0][1]._replace(h=jnp.zeros((1, 5)), c=jnp.zeros((1, 5)))
    jlstm.unroll_stack(params, xs, ((states[0][0], bad), states[1]))
  with pytest.raises(ValueError, match=r'params\[0\]\[0\].w_x expects'):
    jlstm.unroll_stack(params, jnp.ones((2, 1, 4)))
