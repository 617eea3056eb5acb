"""Property-based tests of the public API over shapes, dtypes and options.

Every call either matches a float64 NumPy reference written here, or raises
a ValueError or TypeError whose message names the offending argument. No
call may fail inside XLA or return a non-finite value for finite input.

Shapes come from small discrete sets so most examples hit JAX's compile
cache. The examples are fixed (derandomized) so CI is reproducible; for a
longer, random search set ``JLSTM_FUZZ_EXAMPLES``::

  JLSTM_FUZZ_EXAMPLES=2000 python -m pytest tests/test_fuzz.py
"""

import contextlib
import functools
import math
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import event
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import jlstm

_DEEP = int(os.environ.get('JLSTM_FUZZ_EXAMPLES', '0'))


def fuzz_settings(examples: int) -> settings:
  """CI: ``examples`` fixed examples; deep search: many random ones."""
  return settings(
    max_examples=_DEEP or examples,
    deadline=None,
    derandomize=not _DEEP,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
  )


# Parameter and input dtypes. 'numpy64' is NumPy float64 arrays handed to
# JAX with x64 off, as np.random gives them: JAX computes in float32.
DTYPES = ('float32', 'bfloat16', 'float16', 'float64', 'numpy64')

# Unit roundoff of the arithmetic each dtype gets.
EPS = {
  'float32': 2.0**-24,
  'bfloat16': 2.0**-8,
  'float16': 2.0**-11,
  'float64': 2.0**-53,
  'numpy64': 2.0**-24,
}

# Error allowed per unit of roundoff and per unit of gate pre-activation
# magnitude (sum of |x||w_x| + |h||w_h| + |b|) for a run of T steps: atol =
# TOL_FACTOR * eps * (1 + magnitude) * (T + 1). Rounding is random, so the
# observed error stays far below that worst case: over 3000 random runs of
# up to 8 steps the largest ratio was 1.1 (float32), 0.5 (float64) and 0.1
# (bfloat16, float16). A wrong gate, mask or order gives errors of order
# 0.1, far above every tolerance here but bfloat16's at large magnitudes.
TOL_FACTOR = 8.0


@contextlib.contextmanager
def precision(dtypes):
  """Enables x64 in JAX while any of ``dtypes`` is 'float64'."""
  if 'float64' not in dtypes:
    yield
    return
  old = jax.config.jax_enable_x64
  jax.config.update('jax_enable_x64', True)
  try:
    yield
  finally:
    jax.config.update('jax_enable_x64', old)


def make_array(rng, shape, dtype, scale):
  """A normal array of ``shape`` times ``scale`` in ``dtype``."""
  values = rng.normal(size=shape) * scale
  if dtype == 'numpy64':
    return values
  return jnp.asarray(values, dtype)


def as64(a):
  return np.asarray(a).astype(np.float64)


def sigmoid(z):
  # The tanh form never overflows, unlike 1 / (1 + exp(-z)).
  return 0.5 * (1.0 + np.tanh(0.5 * z))


def reference_unroll(w_x, w_h, b, xs, h0, c0, lengths=None, reverse=False):
  """Float64 loop over time, one sequence at a time.

  Gate blocks along 4H are i, f, g, o. Steps at or past a sequence's length
  are skipped and emit zeros; reverse runs each valid part backwards.

  Returns:
    (h [..., H], c [..., H], hs [T, ..., H], valid [T, ..., 1], magnitude):
    valid marks the steps run, magnitude is the largest |x||w_x| + |h||w_h|
    + |b| over them (for tolerances).
  """
  w_x, w_h, b, xs, h0, c0 = map(as64, (w_x, w_h, b, xs, h0, c0))
  time, input_size = xs.shape[0], xs.shape[-1]
  hidden = w_h.shape[0]
  shapes = [xs.shape[1:-1], h0.shape[:-1], c0.shape[:-1]]
  if lengths is not None:
    shapes.append(np.shape(lengths))
  batch = np.broadcast_shapes(*shapes)
  n = math.prod(batch)
  # Right-align the batch dims of xs (after its time axis) with the batch.
  xs = xs.reshape(time, *(1,) * (len(batch) - xs.ndim + 2), *xs.shape[1:])
  xs = np.broadcast_to(xs, (time, *batch, input_size)).reshape(
    time, n, input_size
  )
  h = np.broadcast_to(h0, (*batch, hidden)).reshape(n, hidden).copy()
  c = np.broadcast_to(c0, (*batch, hidden)).reshape(n, hidden).copy()
  if lengths is None:
    lengths = np.full(n, time)
  else:
    lengths = np.broadcast_to(np.asarray(lengths), batch).reshape(n)
  hs = np.zeros((time, n, hidden))
  valid = np.zeros((time, n, 1), bool)
  magnitude = 0.0

  for k in range(n):
    steps = range(lengths[k])
    for t in reversed(steps) if reverse else steps:
      z = xs[t, k] @ w_x + h[k] @ w_h + b
      bound = np.abs(xs[t, k]) @ np.abs(w_x) + np.abs(h[k]) @ np.abs(w_h)
      magnitude = max(magnitude, float(np.max(bound + np.abs(b), initial=0)))
      i, f, g, o = np.split(z, 4)
      c[k] = sigmoid(f) * c[k] + sigmoid(i) * np.tanh(g)
      h[k] = sigmoid(o) * np.tanh(c[k])
      hs[t, k] = h[k]
      valid[t, k] = True

  out = (*batch, hidden)
  hs, valid = hs.reshape(time, *out), valid.reshape(time, *batch, 1)
  return h.reshape(out), c.reshape(out), hs, valid, magnitude


def expected_state_dtype(param_dtype):
  return jnp.dtype('float64' if param_dtype == 'float64' else 'float32')


def check_close(got, want, dtype, magnitude, steps, what):
  """Asserts finite ``got`` within the dtype's tolerance of ``want``."""
  got = as64(got)
  assert got.shape == want.shape, f'{what}: {got.shape} != {want.shape}'
  assert np.isfinite(got).all(), f'{what}: non-finite output for finite input'
  atol = TOL_FACTOR * EPS[dtype] * (1.0 + magnitude) * (steps + 1)
  np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=what)


def assert_names(error, name):
  """Asserts a clear error: the message names ``name`` as a whole word."""
  message = str(error)
  pattern = r'(?<![\w.])' + re.escape(name) + r'(?![\w])'
  assert re.search(pattern, message), (
    f'{type(error).__name__} does not name {name!r}: {message}'
  )


# Faults injected one at a time. Each maps to the argument the error must
# name. None of them may reach XLA.
PARAM_FAULTS = {
  'params_not_lstm_params': 'params',
  'w_x_int': 'params.w_x',
  'w_h_int': 'params.w_h',
  'b_bool': 'params.b',
  'w_x_gate_axis': 'params.w_x',
  'w_h_rows': 'params.w_h',
  'w_h_not_4h': 'params.w_h',
  'w_h_rank3': 'params.w_h',
  'b_length': 'params.b',
  'w_x_list': 'params.w_x',
}
STATE_FAULTS = {
  'state_tuple': 'state',
  'state_int': 'state.h',
  'state_hidden': 'state.h',
  'state_h_c_shapes': 'state.h',
  'state_rank0': 'state.h',
  'state_batch': 'state',
}


def inject_params_fault(fault, params):
  w_x, w_h, b = params.w_x, params.w_h, params.b
  (input_size, gates), hidden = w_x.shape, w_h.shape[0]
  if fault == 'params_not_lstm_params':
    return (w_x, w_h, b)
  if fault == 'w_x_int':
    return params._replace(w_x=jnp.ones(w_x.shape, jnp.int32))
  if fault == 'w_h_int':
    return params._replace(w_h=jnp.ones(w_h.shape, jnp.int32))
  if fault == 'b_bool':
    return params._replace(b=jnp.ones(b.shape, bool))
  if fault == 'w_x_gate_axis':
    return params._replace(w_x=jnp.ones((input_size, gates + 4)))
  if fault == 'w_h_rows':
    return params._replace(w_h=jnp.ones((hidden + 1, gates)))
  if fault == 'w_h_not_4h':
    return params._replace(w_h=jnp.ones((hidden, gates + 1)))
  if fault == 'w_h_rank3':
    return params._replace(w_h=jnp.ones((1, hidden, gates)))
  if fault == 'b_length':
    return params._replace(b=jnp.ones(gates + 1))
  if fault == 'w_x_list':
    return params._replace(w_x=np.ones(w_x.shape).tolist())
  raise AssertionError(fault)


def unbroadcastable(batch):
  """A batch shape that does not broadcast against ``batch``, or None."""
  for axis, size in enumerate(batch):
    if size != 1:
      return (*batch[:axis], size + 5, *batch[axis + 1 :])
  return None


def inject_state_fault(fault, state, x_batch):
  h, c = state
  hidden = h.shape[-1]
  if fault == 'state_tuple':
    return (h, c)
  if fault == 'state_int':
    return jlstm.LSTMState(jnp.zeros(h.shape, jnp.int32), c)
  if fault == 'state_hidden':
    wrong = jnp.zeros((*h.shape[:-1], hidden + 1))
    return jlstm.LSTMState(wrong, wrong)
  if fault == 'state_h_c_shapes':
    return jlstm.LSTMState(h, jnp.zeros((*h.shape[:-1], 1, hidden)))
  if fault == 'state_rank0':
    return jlstm.LSTMState(jnp.zeros(()), jnp.zeros(()))
  if fault == 'state_batch':
    wrong = jnp.zeros((*unbroadcastable(x_batch), hidden))
    return jlstm.LSTMState(wrong, wrong)
  raise AssertionError(fault)


INPUT_SIZES = (1, 3)
HIDDEN_SIZES = (1, 4)
BATCHES = ((), (2,), (2, 3), (0,))
# Value scales: zero, small, order one and saturating inputs. Weights stay
# of order one so rounding errors are not amplified past the tolerance.
SCALES = (0.0, 0.3, 1.0, 10.0)


@st.composite
def sub_batches(draw, batch):
  """Batch shapes that broadcast to ``batch``."""
  options = [batch, ()]
  if batch:
    options.append((1,) * len(batch))
    options.append(batch[1:])
  return draw(st.sampled_from(options))


X_FAULTS = ('x_int', 'x_complex', 'x_width', 'x_rank0', 'x_list')
CELL_FAULTS = (*sorted(PARAM_FAULTS), *sorted(STATE_FAULTS), *X_FAULTS)


def no_mixed_x64(case, keys):
  """'numpy64' needs x64 off and 'float64' needs it on: not both at once."""
  if 'float64' in [case[k] for k in keys]:
    for k in keys:
      if case[k] == 'numpy64':
        case[k] = 'float32'


@st.composite
def cell_cases(draw):
  """Arguments of one lstm_cell call, with at most one fault."""
  case = {
    'seed': draw(st.integers(0, 2**31 - 1)),
    'input_size': draw(st.sampled_from(INPUT_SIZES)),
    'hidden': draw(st.sampled_from(HIDDEN_SIZES)),
    'batch': draw(st.sampled_from(BATCHES)),
    'param_dtype': draw(st.sampled_from(DTYPES)),
    'x_dtype': draw(st.sampled_from(DTYPES)),
    'state_dtype': draw(st.sampled_from(DTYPES)),
    'scale': draw(st.sampled_from(SCALES)),
    'jit': draw(st.booleans()),
    # About half the calls are valid; every fault kind also runs once in
    # test_lstm_cell_names_every_fault.
    'fault': draw(st.sampled_from([None] * 20 + list(CELL_FAULTS))),
  }
  no_mixed_x64(case, ('param_dtype', 'x_dtype', 'state_dtype'))
  # x and state each hold the whole batch or a part that broadcasts.
  case['x_batch'] = draw(sub_batches(case['batch']))
  case['state_batch'] = draw(sub_batches(case['batch']))
  if case['fault'] == 'state_batch' and not unbroadcastable(case['x_batch']):
    case['fault'] = None
  return case


def build_params(rng, input_size, hidden, dtype):
  gates = 4 * hidden
  return jlstm.LSTMParams(
    w_x=make_array(rng, (input_size, gates), dtype, 0.7),
    w_h=make_array(rng, (hidden, gates), dtype, 0.7),
    b=make_array(rng, (gates,), dtype, 0.7),
  )


def check_cell(case):
  """Runs one lstm_cell case against the reference or its fault."""
  dtypes = (case['param_dtype'], case['x_dtype'], case['state_dtype'])
  rng = np.random.default_rng(case['seed'])
  input_size, hidden = case['input_size'], case['hidden']
  fault = case['fault']
  with precision(dtypes):
    params = build_params(rng, input_size, hidden, case['param_dtype'])
    x = make_array(
      rng, (*case['x_batch'], input_size), case['x_dtype'], case['scale']
    )
    state_shape = (*case['state_batch'], hidden)
    state = jlstm.LSTMState(
      make_array(rng, state_shape, case['state_dtype'], 0.5),
      make_array(rng, state_shape, case['state_dtype'], 2.0),
    )
    call = jax.jit(jlstm.lstm_cell) if case['jit'] else jlstm.lstm_cell

    if fault is not None:
      expected_name = 'x'
      if fault in PARAM_FAULTS:
        params = inject_params_fault(fault, params)
        expected_name = PARAM_FAULTS[fault]
      elif fault in STATE_FAULTS:
        state = inject_state_fault(fault, state, case['x_batch'])
        expected_name = STATE_FAULTS[fault]
      elif fault == 'x_int':
        x = jnp.ones(x.shape, jnp.int32)
      elif fault == 'x_complex':
        x = jnp.ones(x.shape, jnp.complex64)
      elif fault == 'x_width':
        x = jnp.ones((*case['x_batch'], input_size + 1))
      elif fault == 'x_rank0':
        x = jnp.ones(())
      elif fault == 'x_list':
        x = np.ones(x.shape).tolist()
      if (
        fault in ('params_not_lstm_params', 'w_x_list', 'x_list')
        and (case['jit'])
      ):
        # Under jit a tuple or list is a pytree of tracers: only the eager
        # call sees the container the caller passed.
        call = jlstm.lstm_cell
      with pytest.raises((ValueError, TypeError)) as error:
        call(params, state, x)
      assert_names(error.value, expected_name)
      return

    got = call(params, state, x)
    want_h, want_c, _, _, magnitude = reference_unroll(
      params.w_x, params.w_h, params.b, np.asarray(x)[None], *state
    )
  dtype = max(dtypes, key=EPS.get)
  want_dtype = expected_state_dtype(case['param_dtype'])
  assert got.h.dtype == want_dtype and got.c.dtype == want_dtype
  check_close(got.h, want_h, dtype, magnitude, 1, 'h')
  check_close(got.c, want_c, dtype, magnitude, 1, 'c')


@fuzz_settings(50)
@given(cell_cases())
def test_lstm_cell_matches_reference_or_raises(case):
  """lstm_cell equals the float64 loop or names the bad argument."""
  # --hypothesis-show-statistics shows how often each fault ran.
  event(f'fault: {case["fault"]}')
  check_cell(case)


CELL_CASE = {
  'seed': 0,
  'input_size': 3,
  'hidden': 4,
  'batch': (2, 3),
  'param_dtype': 'float32',
  'x_dtype': 'float32',
  'state_dtype': 'float32',
  'scale': 1.0,
  'jit': False,
  'fault': None,
  'x_batch': (2, 3),
  'state_batch': (3,),
}


@pytest.mark.parametrize('jit', [False, True])
@pytest.mark.parametrize('fault', CELL_FAULTS)
def test_lstm_cell_names_every_fault(fault, jit):
  """Each fault kind, eager and under jit, raises naming its argument."""
  check_cell({**CELL_CASE, 'fault': fault, 'jit': jit})


@functools.partial(
  jax.jit, static_argnames=('reverse', 'unroll', 'remat', 'impl')
)
def jitted_unroll(params, xs, state, lengths, *, reverse, unroll, remat, impl):
  return jlstm.unroll(
    params,
    xs,
    state,
    lengths=lengths,
    reverse=reverse,
    unroll=unroll,
    remat=remat,
    impl=impl,
  )


TIMES = (0, 1, 4)
UNROLL_FAULTS = {
  'xs_int': 'xs',
  'xs_rank1': 'xs',
  'xs_width': 'xs',
  'lengths_float': 'lengths',
  'lengths_shape': 'lengths',
  'lengths_negative': 'lengths',
  'lengths_past_t': 'lengths',
  'unroll_zero': 'unroll',
  'unroll_float': 'unroll',
  'unroll_string': 'unroll',
  'impl_unknown': 'impl',
}
IMPLS = ('auto', 'scan', 'fused')
ALL_UNROLL_FAULTS = (
  *sorted(PARAM_FAULTS),
  *sorted(STATE_FAULTS),
  *sorted(UNROLL_FAULTS),
)


@st.composite
def unroll_cases(draw):
  """Arguments of one unroll call, with at most one fault."""
  case = {
    'seed': draw(st.integers(0, 2**31 - 1)),
    'time': draw(st.sampled_from(TIMES)),
    'input_size': draw(st.sampled_from(INPUT_SIZES)),
    'hidden': draw(st.sampled_from(HIDDEN_SIZES)),
    'batch': draw(st.sampled_from(BATCHES)),
    'param_dtype': draw(st.sampled_from(DTYPES)),
    'x_dtype': draw(st.sampled_from(DTYPES)),
    'scale': draw(st.sampled_from(SCALES)),
    'state': draw(st.sampled_from((None, 'zero', 'random'))),
    'lengths': draw(st.sampled_from((None, 'full', 'broadcast', 'scalar'))),
    'reverse': draw(st.booleans()),
    'unroll': draw(st.sampled_from((1, 2, 3, True, np.int64(2)))),
    'remat': draw(st.booleans()),
    'impl': draw(st.sampled_from(IMPLS)),
    'jit': draw(st.booleans()),
    'nan_padding': draw(st.booleans()),
    # About half the calls are valid; every fault kind also runs once in
    # test_unroll_names_every_fault.
    'fault': draw(st.sampled_from([None] * 27 + list(ALL_UNROLL_FAULTS))),
  }
  no_mixed_x64(case, ('param_dtype', 'x_dtype'))
  # x and state each hold the whole batch or a part that broadcasts.
  case['x_batch'] = draw(sub_batches(case['batch']))
  case['state_batch'] = draw(sub_batches(case['batch']))
  if case['fault'] in STATE_FAULTS and case['state'] is None:
    case['state'] = 'random'
  if case['fault'] == 'state_batch' and not unbroadcastable(case['x_batch']):
    case['fault'] = None
  if case['fault'] and case['fault'].startswith('lengths'):
    case['lengths'] = case['lengths'] or 'full'
  # The batch of the run: the state may widen that of xs.
  case['run_batch'] = np.broadcast_shapes(
    case['x_batch'], case['state_batch'] if case['state'] else ()
  )
  if case['fault'] in ('lengths_negative', 'lengths_past_t') and (
    0 in case['run_batch']
  ):
    # No sequence, so no length to be out of range.
    case['fault'] = None
  return case


def draw_lengths(rng, kind, time, batch):
  """Valid lengths in [0, T]: full batch shape, broadcastable, or scalar."""
  if kind == 'full':
    return rng.integers(0, time + 1, size=batch).astype(np.int32)
  if kind == 'broadcast':
    shape = batch[1:] if batch else ()
    return jnp.asarray(rng.integers(0, time + 1, size=shape), jnp.int32)
  return int(rng.integers(0, time + 1))


# xs [T, I] under a [B, H] state, reversed with lengths: once a gather
# error from inside jnp.take_along_axis.
BROADCAST_REVERSE = {
  'seed': 1,
  'time': 4,
  'input_size': 3,
  'hidden': 4,
  'batch': (2,),
  'param_dtype': 'float32',
  'x_dtype': 'float32',
  'scale': 1.0,
  'state': 'random',
  'lengths': 'full',
  'reverse': True,
  'unroll': 1,
  'remat': False,
  'impl': 'auto',
  'jit': False,
  'nan_padding': False,
  'fault': None,
  'x_batch': (),
  'state_batch': (2,),
  'run_batch': (2,),
}


@pytest.mark.slow
@fuzz_settings(70)
@given(unroll_cases())
@example(BROADCAST_REVERSE)
@example({**BROADCAST_REVERSE, 'impl': 'scan', 'jit': True})
def test_unroll_matches_reference_or_raises(case):
  """unroll equals the float64 loop or names the bad argument."""
  # --hypothesis-show-statistics shows how often each fault ran.
  event(f'fault: {case["fault"]}')
  check_unroll(case)


@pytest.mark.parametrize('fault', ALL_UNROLL_FAULTS)
def test_unroll_names_every_fault(fault):
  """Each fault kind raises before XLA, naming its argument."""
  check_unroll({**BROADCAST_REVERSE, 'x_batch': (2,), 'fault': fault})


def check_unroll(case):
  """Runs one unroll case against the reference or its fault."""
  dtypes = (case['param_dtype'], case['x_dtype'])
  rng = np.random.default_rng(case['seed'])
  time, input_size, hidden = case['time'], case['input_size'], case['hidden']
  x_batch, batch, fault = case['x_batch'], case['run_batch'], case['fault']
  with precision(dtypes):
    params = build_params(rng, input_size, hidden, case['param_dtype'])
    xs = make_array(
      rng, (time, *x_batch, input_size), case['x_dtype'], case['scale']
    )
    state = None
    if case['state'] is not None:
      shape = (*case['state_batch'], hidden)
      scale = 0.0 if case['state'] == 'zero' else 1.0
      state = jlstm.LSTMState(
        make_array(rng, shape, case['param_dtype'], scale),
        make_array(rng, shape, case['param_dtype'], 2 * scale),
      )
    lengths = None
    if case['lengths'] is not None:
      lengths = draw_lengths(rng, case['lengths'], time, batch)
      nan_padding = case['nan_padding'] and x_batch == batch
      if nan_padding and case['x_dtype'] != 'numpy64':
        # Padding may hold anything; it must reach neither output.
        full = np.broadcast_to(np.asarray(lengths), batch)
        pad = np.arange(time).reshape((time,) + (1,) * len(batch)) >= full
        xs = jnp.where(pad[..., None], jnp.nan, xs)
    options = {
      'reverse': case['reverse'],
      'unroll': case['unroll'],
      'remat': case['remat'],
      'impl': case['impl'],
    }

    if fault is not None:
      expected_name = None
      if fault in PARAM_FAULTS:
        params = inject_params_fault(fault, params)
        expected_name = PARAM_FAULTS[fault]
      elif fault in STATE_FAULTS:
        state = inject_state_fault(fault, state, x_batch)
        expected_name = STATE_FAULTS[fault]
      else:
        expected_name = UNROLL_FAULTS[fault]
        if fault == 'xs_int':
          xs = jnp.ones(xs.shape, jnp.int32)
        elif fault == 'xs_rank1':
          xs = jnp.ones((input_size,))
        elif fault == 'xs_width':
          xs = jnp.ones((time, *x_batch, input_size + 2))
        elif fault == 'lengths_float':
          lengths = np.asarray(lengths, np.float32)
        elif fault == 'lengths_shape':
          lengths = np.zeros((*batch, 5), np.int32)
        elif fault == 'lengths_negative':
          lengths = np.full(batch, -1, np.int32)
        elif fault == 'lengths_past_t':
          lengths = np.full(batch, time + 1, np.int32)
        elif fault == 'unroll_zero':
          options['unroll'] = 0
        elif fault == 'unroll_float':
          options['unroll'] = 1.5
        elif fault == 'unroll_string':
          options['unroll'] = '2'
        elif fault == 'impl_unknown':
          options['impl'] = 'cudnn'
      with pytest.raises((ValueError, TypeError)) as error:
        # Eager: only concrete lengths can be range-checked.
        jlstm.unroll(params, xs, state, lengths=lengths, **options)
      assert_names(error.value, expected_name)
      return

    if case['jit'] and not isinstance(lengths, int):
      if not isinstance(options['unroll'], bool):
        options['unroll'] = int(options['unroll'])  # static: hashable int
      got_state, got_hs = jitted_unroll(params, xs, state, lengths, **options)
    else:
      got_state, got_hs = jlstm.unroll(
        params, xs, state, lengths=lengths, **options
      )
    if state is None:
      state = jlstm.LSTMState(*(np.zeros(hidden),) * 2)
    want_h, want_c, want_hs, valid, magnitude = reference_unroll(
      params.w_x,
      params.w_h,
      params.b,
      xs,
      *state,
      lengths=lengths,
      reverse=case['reverse'],
    )
  dtype = max(dtypes, key=EPS.get)
  want_dtype = expected_state_dtype(case['param_dtype'])
  assert got_hs.dtype == want_dtype and got_state.c.dtype == want_dtype
  check_close(got_state.h, want_h, dtype, magnitude, time, 'final h')
  check_close(got_state.c, want_c, dtype, magnitude, time, 'final c')
  check_close(got_hs, want_hs, dtype, magnitude, time, 'hs')
  # Padding emits exact zeros, not merely small values.
  padding = np.broadcast_to(~valid, want_hs.shape)
  np.testing.assert_array_equal(np.asarray(got_hs)[padding], 0)


@functools.partial(
  jax.jit, static_argnames=('reverse', 'unroll', 'remat', 'impl')
)
def loss_and_grads(
  params, xs, state, lengths, weights, *, reverse, unroll, remat, impl
):
  """A fixed random linear loss of (final state, hs), and its gradients."""

  def loss(params, xs, state):
    final, hs = jlstm.unroll(
      params,
      xs,
      state,
      lengths=lengths,
      reverse=reverse,
      unroll=unroll,
      remat=remat,
      impl=impl,
    )
    w_hs, w_h, w_c = weights
    return jnp.sum(hs * w_hs) + jnp.sum(final.h * w_h) + jnp.sum(final.c * w_c)

  return jax.value_and_grad(loss, argnums=(0, 1, 2))(params, xs, state)


@st.composite
def gradient_cases(draw):
  """Arguments of a loss through unroll, in float32 or float64."""
  case = {
    'seed': draw(st.integers(0, 2**31 - 1)),
    'time': 3,
    'input_size': 2,
    'hidden': draw(st.sampled_from(HIDDEN_SIZES)),
    'batch': draw(st.sampled_from(((), (2,), (2, 3)))),
    'dtype': draw(st.sampled_from(('float32', 'float64'))),
    'lengths': draw(st.booleans()),
    'nan_padding': draw(st.booleans()),
    'reverse': draw(st.booleans()),
    'unroll': draw(st.sampled_from((1, 2))),
    'remat': draw(st.booleans()),
    'impl': draw(st.sampled_from(IMPLS)),
  }
  case['x_batch'] = draw(sub_batches(case['batch']))
  case['state_batch'] = draw(sub_batches(case['batch']))
  return case


def reference_loss(params, xs, state, lengths, weights, reverse):
  h, c, hs, _, _ = reference_unroll(
    *params, xs, *state, lengths=lengths, reverse=reverse
  )
  w_hs, w_h, w_c = map(as64, weights)
  return np.sum(hs * w_hs) + np.sum(h * w_h) + np.sum(c * w_c)


# Directional derivatives: float64 gradients agree with central differences
# of the float64 reference (step 1e-5, error ~1e-10) to 1e-7 of the sum of
# |gradient * direction|; float32 ones to 1e-4 of it (float32 roundoff over
# a few steps is ~1e-6 relative).
GRAD_RTOL = {'float64': 1e-7, 'float32': 1e-4}


@pytest.mark.slow
@fuzz_settings(15)
@given(gradient_cases())
def test_unroll_gradients_match_finite_differences(case):
  """Gradients of unroll are finite, zero in the padding, and match central
  differences of the float64 reference along a random direction."""
  rng = np.random.default_rng(case['seed'])
  time, input_size, hidden = case['time'], case['input_size'], case['hidden']
  x_batch, dtype = case['x_batch'], case['dtype']
  batch = np.broadcast_shapes(x_batch, case['state_batch'])
  with precision((dtype,)):
    params = build_params(rng, input_size, hidden, dtype)
    xs = make_array(rng, (time, *x_batch, input_size), dtype, 1.0)
    state_shape = (*case['state_batch'], hidden)
    state = jlstm.LSTMState(
      make_array(rng, state_shape, dtype, 0.5),
      make_array(rng, state_shape, dtype, 1.0),
    )
    lengths = None
    padding = np.zeros((time, *batch), bool)
    if case['lengths']:
      lengths = rng.integers(0, time + 1, size=batch).astype(np.int32)
      padding = np.arange(time).reshape((time,) + (1,) * len(batch)) >= lengths
      if case['nan_padding'] and x_batch == batch:
        xs = jnp.where(padding[..., None], jnp.nan, xs)
    weights = (
      make_array(rng, (time, *batch, hidden), dtype, 1.0),
      make_array(rng, (*batch, hidden), dtype, 1.0),
      make_array(rng, (*batch, hidden), dtype, 1.0),
    )
    options = {k: case[k] for k in ('reverse', 'unroll', 'remat', 'impl')}
    _, grads = loss_and_grads(params, xs, state, lengths, weights, **options)

  grads = jax.tree.map(as64, grads)
  for leaf in jax.tree.leaves(grads):
    assert np.isfinite(leaf).all(), 'non-finite gradient for finite loss'
  d_xs = grads[1]
  if x_batch == batch:
    # Each padded step's input gets an exactly zero gradient.
    np.testing.assert_array_equal(d_xs[padding], 0)

  # Along a random direction v: grad . v against (L(+eps v) - L(-eps v)) / 2eps
  # of the reference, at the values JAX saw (xs with its padding zeroed).
  point = jax.tree.map(as64, (tuple(params)[:3], xs, tuple(state)))
  point = (point[0], np.where(np.isnan(point[1]), 0.0, point[1]), point[2])
  direction = jax.tree.map(lambda a: rng.normal(size=a.shape), point)
  flat_grads = (tuple(grads[0])[:3], d_xs, tuple(grads[2]))
  products = [
    g * v
    for g, v in zip(
      jax.tree.leaves(flat_grads), jax.tree.leaves(direction), strict=True
    )
  ]
  slope = sum(float(np.sum(p)) for p in products)
  scale = sum(float(np.sum(np.abs(p))) for p in products)
  step = 1e-5

  def at(sign):
    moved = jax.tree.map(lambda a, v: a + sign * step * v, point, direction)
    return reference_loss(*moved, lengths, weights, case['reverse'])

  finite_difference = (at(1) - at(-1)) / (2 * step)
  assert abs(slope - finite_difference) <= GRAD_RTOL[dtype] * (1 + scale), (
    slope,
    finite_difference,
  )


@functools.partial(jax.jit, static_argnames=('unroll', 'remat', 'dropout'))
def jitted_stack(params, xs, states, lengths, *, unroll, remat, dropout):
  return jlstm.unroll_stack(
    params,
    xs,
    states,
    lengths=lengths,
    dropout=dropout,
    training=False,
    unroll=unroll,
    remat=remat,
  )


STACK_FAULTS = {
  'params_one_cell': 'params',
  'params_three_directions': 'params[0]',
  'params_layers_disagree': 'params[1]',
  'params_do_not_chain': 'params[1][0].w_x',
  'states_one_state': 'states',
  'states_layers': 'states',
  'states_directions': 'states[0]',
  'xs_int': 'xs',
  'xs_width': 'xs',
  'lengths_past_t': 'lengths',
  'dropout_one': 'dropout',
  'dropout_without_key': 'key',
}


@st.composite
def stack_cases(draw):
  """Arguments of one unroll_stack call, with at most one fault."""
  case = {
    'seed': draw(st.integers(0, 2**31 - 1)),
    'layers': draw(st.sampled_from((1, 2))),
    'bidirectional': draw(st.booleans()),
    'time': draw(st.sampled_from((0, 2, 3))),
    'input_size': draw(st.sampled_from(INPUT_SIZES)),
    'hidden': draw(st.sampled_from(HIDDEN_SIZES)),
    'batch': draw(st.sampled_from(((), (2,), (2, 3)))),
    'dtype': draw(st.sampled_from(('float32', 'bfloat16', 'float64'))),
    'states': draw(st.booleans()),
    'lengths': draw(st.booleans()),
    'unroll': draw(st.sampled_from((1, 2))),
    'remat': draw(st.booleans()),
    'dropout': draw(st.sampled_from((0.0, 0.5))),
    'fault': draw(st.sampled_from([None] * 16 + sorted(STACK_FAULTS))),
  }
  if (
    case['fault']
    in (
      'params_layers_disagree',
      'params_do_not_chain',
      'dropout_without_key',
    )
    and case['layers'] == 1
  ):
    case['fault'] = None
  if case['fault'] == 'params_layers_disagree' and case['bidirectional']:
    case['fault'] = None
  if case['fault'] and case['fault'].startswith('states'):
    case['states'] = True
  if case['fault'] == 'lengths_past_t':
    case['lengths'] = True
    if 0 in case['batch']:
      case['fault'] = None
  return case


@fuzz_settings(25)
@given(stack_cases())
def test_unroll_stack_matches_reference_or_raises(case):
  """unroll_stack equals layers of the float64 loop, the backward direction
  reversed, or names the bad argument."""
  # --hypothesis-show-statistics shows how often each fault ran.
  event(f'fault: {case["fault"]}')
  check_stack(case)


STACK_CASE = {
  'seed': 0,
  'layers': 2,
  'bidirectional': False,
  'time': 3,
  'input_size': 3,
  'hidden': 4,
  'batch': (2,),
  'dtype': 'float32',
  'states': True,
  'lengths': True,
  'unroll': 1,
  'remat': False,
  'dropout': 0.0,
  'fault': None,
}


@pytest.mark.parametrize('fault', sorted(STACK_FAULTS))
def test_unroll_stack_names_every_fault(fault):
  """Each fault kind raises before XLA, naming its argument."""
  check_stack({**STACK_CASE, 'fault': fault})


def check_stack(case):
  """Runs one unroll_stack case against the reference or its fault."""
  rng = np.random.default_rng(case['seed'])
  time, hidden, batch = case['time'], case['hidden'], case['batch']
  directions = 2 if case['bidirectional'] else 1
  dtype, fault = case['dtype'], case['fault']
  with precision((dtype,)):
    params = []
    layer_input = case['input_size']
    for _ in range(case['layers']):
      params.append(
        tuple(
          build_params(rng, layer_input, hidden, dtype)
          for _ in range(directions)
        )
      )
      layer_input = directions * hidden
    params = tuple(params)
    xs = make_array(rng, (time, *batch, case['input_size']), dtype, 1.0)
    states = None
    if case['states']:
      states = tuple(
        tuple(
          jlstm.LSTMState(
            make_array(rng, (*batch, hidden), dtype, 0.5),
            make_array(rng, (*batch, hidden), dtype, 1.0),
          )
          for _ in range(directions)
        )
        for _ in range(case['layers'])
      )
    lengths = None
    if case['lengths']:
      lengths = rng.integers(0, time + 1, size=batch).astype(np.int32)
    options = {
      'unroll': case['unroll'],
      'remat': case['remat'],
      'dropout': case['dropout'],
    }

    if fault is not None:
      training = False
      if fault == 'params_one_cell':
        params = params[0][0]
      elif fault == 'params_three_directions':
        params = ((params[0][0],) * 3, *params[1:])
      elif fault == 'params_layers_disagree':
        params = (params[0], (*params[1], params[1][0]))
      elif fault == 'params_do_not_chain':
        wrong = build_params(rng, layer_input + 1, hidden, dtype)
        params = (params[0], (wrong, *params[1][1:]))
      elif fault == 'states_one_state':
        states = states[0][0]
      elif fault == 'states_layers':
        states = (*states, states[0])
      elif fault == 'states_directions':
        states = ((*states[0], states[0][0]), *states[1:])
      elif fault == 'xs_int':
        xs = jnp.ones(xs.shape, jnp.int32)
      elif fault == 'xs_width':
        xs = jnp.ones((time, *batch, case['input_size'] + 1))
      elif fault == 'lengths_past_t':
        lengths = np.full(batch, time + 1, np.int32)
      elif fault == 'dropout_one':
        options['dropout'] = 1.0
      elif fault == 'dropout_without_key':
        options['dropout'], training = 0.5, True
      with pytest.raises((ValueError, TypeError)) as error:
        jlstm.unroll_stack(
          params, xs, states, lengths=lengths, training=training, **options
        )
      assert_names(error.value, STACK_FAULTS[fault])
      return

    # Dropout acts in training only: here it must change nothing.
    got_states, got_outputs = jitted_stack(
      params, xs, states, lengths, **options
    )

  inputs = as64(xs)
  magnitude, want_states = 0.0, []
  for layer, layer_params in enumerate(params):
    finals, outputs = [], []
    for direction, cell in enumerate(layer_params):
      state = (
        (np.zeros(hidden), np.zeros(hidden))
        if states is None
        else states[layer][direction]
      )
      h, c, hs, _, size = reference_unroll(
        cell.w_x,
        cell.w_h,
        cell.b,
        inputs,
        *state,
        lengths=lengths,
        reverse=direction == 1,
      )
      finals.append((h, c))
      outputs.append(hs)
      magnitude = max(magnitude, size)
    want_states.append(finals)
    inputs = np.concatenate(outputs, axis=-1)

  steps = case['layers'] * max(time, 1)
  check_close(got_outputs, inputs, dtype, magnitude, steps, 'outputs')
  for layer, finals in enumerate(want_states):
    for direction, (h, c) in enumerate(finals):
      got = got_states[layer][direction]
      where = f'states[{layer}][{direction}]'
      check_close(got.h, h, dtype, magnitude, steps, f'{where}.h')
      check_close(got.c, c, dtype, magnitude, steps, f'{where}.c')
