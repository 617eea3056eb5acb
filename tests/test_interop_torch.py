"""PyTorch interchange, checked against torch's own nn.LSTM and nn.LSTMCell.

Parity runs random float32 weights (non-zero ``bias_ih`` and ``bias_hh``)
and non-zero initial states through torch and through jlstm; outputs,
final states and gradients (of inputs, initial states and every
state-dict entry) agree within ``TOL`` = 1e-5. Gradients on the jlstm side
are taken through :func:`jlstm.interop.from_torch`, so they come out in
PyTorch's layout and compare key by key.
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

torch = pytest.importorskip('torch')

TIME, BATCH, INPUT, HIDDEN = 5, 3, 4, 6

#: nn.LSTM configurations: layers, directions, projection and bias.
IMPORT_CONFIGS = [
  {'num_layers': 1},
  {'num_layers': 2, 'bidirectional': True, 'proj_size': 3},
  {'num_layers': 2, 'bias': False},
]
EXPORT_CONFIGS = [
  {'num_layers': 2, 'bidirectional': True},
  {'num_layers': 2, 'proj_size': 2, 'bias': False},
]

# PyTorch warns that oneDNN lacks projections and falls back to its own
# kernel; the result is what is under test.
no_proj_warning = pytest.mark.filterwarnings(
  'ignore:LSTM with projections is not supported:UserWarning'
)


def _lstm(seed, **config):
  torch.manual_seed(seed)
  return torch.nn.LSTM(INPUT, HIDDEN, **config)


def _state_rows(config):
  directions = 2 if config.get('bidirectional') else 1
  return directions * config['num_layers'], config.get('proj_size') or HIDDEN


def _as_jax(tensor):
  return jnp.asarray(tensor.detach().numpy())


def _torch_run(lstm, x, h0, c0, weights):
  """Forward and backward through torch; returns values and gradients."""
  x, h0, c0 = (t.clone().requires_grad_(True) for t in (x, h0, c0))
  y, (h_n, c_n) = lstm(x, (h0, c0))
  w_y, w_h, w_c = weights
  loss = (y * w_y).sum() + (h_n * w_h).sum() + (c_n * w_c).sum()
  lstm.zero_grad()
  loss.backward()
  grads = {name: p.grad for name, p in lstm.named_parameters()}
  return (y, h_n, c_n), grads, (x.grad, h0.grad, c0.grad)


def _random_stack(rng, config):
  """Random jlstm stack parameters shaped like an nn.LSTM ``config``."""
  directions = 2 if config.get('bidirectional') else 1
  proj = config.get('proj_size')
  out = proj or HIDDEN

  def draw(*shape):
    return jnp.asarray(rng.uniform(-0.5, 0.5, shape).astype(np.float32))

  def cell(input_size):
    b = draw(4 * HIDDEN) if config.get('bias', True) else jnp.zeros(4 * HIDDEN)
    return jlstm.LSTMParams(
      w_x=draw(input_size, 4 * HIDDEN),
      w_h=draw(out, 4 * HIDDEN),
      b=b,
      w_proj=None if proj is None else draw(HIDDEN, proj),
    )

  return tuple(
    tuple(
      cell(INPUT if layer == 0 else directions * out) for _ in range(directions)
    )
    for layer in range(config['num_layers'])
  )


@jax.jit
def _jlstm_forward(params, xs, states):
  with jax.default_matmul_precision('highest'):
    return jlstm.unroll_stack(params, xs, states)


def _jlstm_loss(state_dict, xs, h0, c0, weights, bidirectional):
  params = interop.from_torch(state_dict)
  states = interop.from_torch_state((h0, c0), bidirectional=bidirectional)
  final, ys = jlstm.unroll_stack(params, xs, states)
  h_n = jnp.stack([s.h for layer in final for s in layer])
  c_n = jnp.stack([s.c for layer in final for s in layer])
  w_y, w_h, w_c = weights
  loss = (ys * w_y).sum() + (h_n * w_h).sum() + (c_n * w_c).sum()
  return loss, (ys, final)


@no_proj_warning
@pytest.mark.parametrize('config', IMPORT_CONFIGS, ids=str)
def test_from_torch_matches_nn_lstm(config):
  """Imported nn.LSTM weights give torch's outputs, states and gradients."""
  lstm = _lstm(0, **config)
  rows, out = _state_rows(config)
  gen = torch.Generator().manual_seed(1)
  x = torch.randn(TIME, BATCH, INPUT, generator=gen)
  h0 = torch.randn(rows, BATCH, out, generator=gen)
  c0 = torch.randn(rows, BATCH, HIDDEN, generator=gen)
  directions = 2 if config.get('bidirectional') else 1
  weights = (
    torch.randn(TIME, BATCH, directions * out, generator=gen),
    torch.randn(rows, BATCH, out, generator=gen),
    torch.randn(rows, BATCH, HIDDEN, generator=gen),
  )
  (y, h_n, c_n), grads, (dx, dh0, dc0) = _torch_run(lstm, x, h0, c0, weights)

  state_dict = {k: _as_jax(v) for k, v in lstm.state_dict().items()}
  args = [_as_jax(t) for t in (x, h0, c0)]
  jweights = tuple(_as_jax(w) for w in weights)
  grad_fn = jax.jit(
    jax.grad(_jlstm_loss, argnums=(0, 1, 2, 3), has_aux=True),
    static_argnums=5,
  )
  with jax.default_matmul_precision('highest'):
    (g_sd, g_x, g_h0, g_c0), (ys, final) = grad_fn(
      state_dict, *args, jweights, directions == 2
    )

  assert_close(ys, y.detach(), 'outputs')
  got_h, got_c = interop.to_torch_state(final)
  assert got_h.shape == h_n.shape and got_c.shape == c_n.shape
  assert_close(got_h, h_n.detach(), 'h_n')
  assert_close(got_c, c_n.detach(), 'c_n')
  assert sorted(g_sd) == sorted(grads)
  for name, grad in grads.items():
    assert_close(g_sd[name], grad, f'gradient of {name}')
  assert_close(g_x, dx, 'gradient of the inputs')
  assert_close(g_h0, dh0, 'gradient of h_0')
  assert_close(g_c0, dc0, 'gradient of c_0')


@no_proj_warning
@pytest.mark.parametrize('config', EXPORT_CONFIGS, ids=str)
def test_to_torch_loads_and_matches_jlstm(config):
  """Exported stacks load strictly into nn.LSTM and reproduce jlstm."""
  bias = config.get('bias', True)
  rng = np.random.default_rng(3)
  params = _random_stack(rng, config)
  lstm = _lstm(5, **config)
  result = lstm.load_state_dict(interop.to_torch(params, bias=bias))
  assert not result.missing_keys and not result.unexpected_keys
  if bias:
    for name, value in lstm.state_dict().items():
      if name.startswith('bias_hh'):
        assert not value.any(), f'{name} should be exported as zeros'

  rows, out = _state_rows(config)
  xs = rng.normal(size=(TIME, BATCH, INPUT)).astype(np.float32)
  h0 = rng.normal(size=(rows, BATCH, out)).astype(np.float32)
  c0 = rng.normal(size=(rows, BATCH, HIDDEN)).astype(np.float32)
  with torch.no_grad():
    y, (h_n, c_n) = lstm(
      torch.from_numpy(xs), (torch.from_numpy(h0), torch.from_numpy(c0))
    )
  states = interop.from_torch_state(
    (h0, c0), bidirectional=config.get('bidirectional', False)
  )
  final, ys = _jlstm_forward(params, jnp.asarray(xs), states)
  assert_close(ys, y, 'outputs')
  got_h, got_c = interop.to_torch_state(final)
  assert_close(got_h, h_n, 'h_n')
  assert_close(got_c, c_n, 'c_n')


def test_from_torch_matches_nn_lstm_cell():
  """Imported nn.LSTMCell weights give torch's states and gradients."""
  torch.manual_seed(6)
  cell = torch.nn.LSTMCell(INPUT, HIDDEN)
  gen = torch.Generator().manual_seed(7)
  x = torch.randn(TIME, BATCH, INPUT, generator=gen, requires_grad=True)
  h0 = torch.randn(BATCH, HIDDEN, generator=gen, requires_grad=True)
  c0 = torch.randn(BATCH, HIDDEN, generator=gen, requires_grad=True)
  w_y = torch.randn(TIME, BATCH, HIDDEN, generator=gen)
  w_c = torch.randn(BATCH, HIDDEN, generator=gen)
  h, c, ys = h0, c0, []
  for t in range(TIME):
    h, c = cell(x[t], (h, c))
    ys.append(h)
  y = torch.stack(ys)
  ((y * w_y).sum() + (c * w_c).sum()).backward()

  def loss_fn(state_dict, xs, h0, c0):
    state = interop.from_torch_state((h0, c0), cell=True)
    final, ys = jlstm.unroll(interop.from_torch(state_dict), xs, state)
    loss = (ys * _as_jax(w_y)).sum() + (final.c * _as_jax(w_c)).sum()
    return loss, (ys, final)

  state_dict = {k: _as_jax(v) for k, v in cell.state_dict().items()}
  grad_fn = jax.jit(jax.grad(loss_fn, (0, 1, 2, 3), has_aux=True))
  with jax.default_matmul_precision('highest'):
    grads, (got_y, final) = grad_fn(
      state_dict, *(_as_jax(t) for t in (x, h0, c0))
    )
  assert_close(got_y, y.detach(), 'outputs')
  got_h, got_c = interop.to_torch_state(final)
  assert_close(got_h, h.detach(), 'h')
  assert_close(got_c, c.detach(), 'c')
  for name, p in cell.named_parameters():
    assert_close(grads[0][name], p.grad, f'gradient of {name}')
  for got, want, name in zip(
    grads[1:], (x, h0, c0), ('x', 'h0', 'c0'), strict=True
  ):
    assert_close(got, want.grad, f'gradient of {name}')


@no_proj_warning
def test_to_torch_from_torch_round_trip_is_identity():
  """from_torch(to_torch(p)) returns every array bit for bit."""
  rng = np.random.default_rng(8)
  stack = _random_stack(
    rng, {'num_layers': 2, 'bidirectional': True, 'proj_size': 3}
  )
  cell = _random_stack(rng, {'num_layers': 1})[0][0]
  for params in (stack, cell):
    for as_numpy in (False, True):
      back = interop.from_torch(interop.to_torch(params, as_numpy=as_numpy))
      assert jax.tree.structure(back) == jax.tree.structure(params)
      for got, want in zip(
        jax.tree.leaves(back), jax.tree.leaves(params), strict=True
      ):
        np.testing.assert_array_equal(got, want)


def test_from_torch_bias_is_the_sum_of_both_biases():
  """b = bias_ih + bias_hh, and export puts it all in bias_ih."""
  cell = torch.nn.LSTMCell(2, 3)
  sd = cell.state_dict()
  params = interop.from_torch(sd)
  want = (sd['bias_ih'] + sd['bias_hh']).numpy()
  np.testing.assert_allclose(params.b, want, rtol=0, atol=1e-7)
  out = interop.to_torch(params)
  np.testing.assert_array_equal(out['bias_ih'].numpy(), np.asarray(params.b))
  assert not out['bias_hh'].any()


def test_torch_gate_probe_catches_any_permutation():
  """Bias-only weights: each gate's constant lands in its own gate."""
  cell = torch.nn.LSTMCell(2, 3)
  sd = {k: torch.zeros_like(v) for k, v in cell.state_dict().items()}
  for k, gate in enumerate(('i', 'f', 'g', 'o')):  # PyTorch's documented order
    # Split each constant across both biases: only their sum may count.
    sd['bias_ih'][3 * k : 3 * (k + 1)] = PROBE[gate] - 0.25
    sd['bias_hh'][3 * k : 3 * (k + 1)] = 0.25
  cell.load_state_dict(sd)
  x, h0 = torch.randn(4, 2), torch.randn(4, 3)
  c0 = torch.full((4, 3), PROBE_C0)
  with torch.no_grad():
    h, c = cell(x, (h0, c0))
  assert_probe_state(h, c, 'torch itself')

  state = jlstm.lstm_cell(
    interop.from_torch(sd),
    jlstm.LSTMState(_as_jax(h0), _as_jax(c0)),
    _as_jax(x),
  )
  assert_probe_state(state.h, state.c, 'from_torch')

  b = jnp.zeros(12)
  for gate, value in PROBE.items():
    b = b.at[jlstm.gate_slice(gate, 3)].set(value)
  params = jlstm.LSTMParams(jnp.zeros((2, 12)), jnp.zeros((3, 12)), b)
  cell.load_state_dict(interop.to_torch(params))
  with torch.no_grad():
    h, c = cell(x, (h0, c0))
  assert_probe_state(h, c, 'to_torch')


def test_from_torch_reads_a_submodule_with_prefix():
  """prefix='lstm.' reads the LSTM out of a larger model's state dict."""
  model = torch.nn.Sequential()
  model.add_module('lstm', torch.nn.LSTM(INPUT, HIDDEN, num_layers=2))
  model.add_module('head', torch.nn.Linear(HIDDEN, 2))
  params = interop.from_torch(model.state_dict(), prefix='lstm.')
  assert len(params) == 2 and params[1][0].w_x.shape == (HIDDEN, 4 * HIDDEN)
  out = interop.to_torch(params, prefix='lstm.')
  assert all(key.startswith('lstm.') for key in out)
  from_module = interop.from_torch(model.lstm)
  for got, want in zip(
    jax.tree.leaves(from_module), jax.tree.leaves(params), strict=True
  ):
    np.testing.assert_array_equal(got, want)


def test_from_torch_errors_name_the_key():
  """Missing keys, wrong shapes and other RNNs raise naming the key."""
  sd = dict(torch.nn.LSTM(INPUT, HIDDEN, num_layers=2).state_dict())
  missing = {k: v for k, v in sd.items() if k != 'weight_hh_l1'}
  with pytest.raises(KeyError, match="'weight_hh_l1'"):
    interop.from_torch(missing)
  partial_bias = {k: v for k, v in sd.items() if k != 'bias_hh_l1'}
  with pytest.raises(KeyError, match="'bias_hh_l1'"):
    interop.from_torch(partial_bias)
  bad = dict(sd, weight_ih_l1=torch.zeros(4 * HIDDEN, HIDDEN + 1))
  with pytest.raises(ValueError, match=r'weight_ih_l1 must have shape'):
    interop.from_torch(bad)
  with pytest.raises(ValueError, match="unexpected key 'weight_ir_l0'"):
    interop.from_torch(dict(sd, weight_ir_l0=sd['weight_ih_l0']))
  with pytest.raises(ValueError, match='nn.GRU'):
    interop.from_torch(torch.nn.GRU(INPUT, HIDDEN).state_dict())
  with pytest.raises(KeyError, match="prefix='enc.'"):
    interop.from_torch(sd, prefix='enc.')
  with pytest.raises(TypeError, match='state_dict must be a mapping'):
    interop.from_torch([1, 2])


def test_to_torch_rejects_what_torch_cannot_hold():
  """bias=False with a bias, peepholes, cell projections, uneven layers."""
  rng = np.random.default_rng(0)
  params = _random_stack(rng, {'num_layers': 1})[0][0]
  with pytest.raises(ValueError, match=r'params\.b must be all zeros'):
    interop.to_torch(params, bias=False)
  zero_b = params._replace(b=jnp.zeros_like(params.b))
  assert 'bias_ih' not in interop.to_torch(zero_b, bias=False)
  peep = params._replace(w_peep=jnp.zeros((3, HIDDEN)))
  with pytest.raises(ValueError, match=r'params\.w_peep must be None'):
    interop.to_torch(peep)
  proj = _random_stack(rng, {'num_layers': 1, 'proj_size': 2})[0][0]
  with pytest.raises(ValueError, match=r'params\.w_proj must be None'):
    interop.to_torch(proj)
  wider = jlstm.LSTMParams(
    jnp.zeros((HIDDEN, 4 * HIDDEN + 4)),
    jnp.zeros((HIDDEN + 1, 4 * HIDDEN + 4)),
    jnp.zeros(4 * HIDDEN + 4),
  )
  with pytest.raises(ValueError, match='one hidden_size'):
    interop.to_torch(((params,), (wider,)))


def test_from_torch_state_orders_rows_layer_then_direction():
  """Row k * D + d of h_0 is layer k, direction d, and back again."""
  h = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3)
  c = -h
  states = interop.from_torch_state((h, c), bidirectional=True)
  np.testing.assert_array_equal(states[1][0].h, h[2])
  np.testing.assert_array_equal(states[0][1].c, c[1])
  back_h, back_c = interop.to_torch_state(states, as_numpy=True)
  np.testing.assert_array_equal(back_h, h)
  np.testing.assert_array_equal(back_c, c)
  with pytest.raises(ValueError, match='multiple of D=2'):
    interop.from_torch_state((h[:3], c[:3]), bidirectional=True)
