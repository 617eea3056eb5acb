"""The gate-order probe itself, and the seed's variables under the probe.

The round trip and the float64 parity of the seed's variables are in
test_seed.py; here the probe checks the gate placement of both directions,
and the errors name the variable.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from interop_reference import PROBE
from interop_reference import PROBE_C0
from interop_reference import TOL
from interop_reference import assert_probe_state
from interop_reference import probe_margin

import jlstm
from jlstm import interop

#: The notebook's names for the gates, in jlstm's letters.
SEED_NAMES = {'f': 'f', 'i': 'i', 'o': 'o', 'ci': 'g'}


def test_probe_detects_every_gate_permutation():
  """Each of the 23 wrong gate orders moves the probe state by more than 0.3."""
  assert probe_margin() > 0.3 > 1000 * TOL


def test_seed_gate_probe_catches_any_permutation():
  """Bias-only variables: each gate's constant lands in its own gate."""
  hidden, input_size = 3, 2
  v = {}
  for name, gate in SEED_NAMES.items():
    v[f'W_{name}_x'] = np.zeros((input_size, hidden), np.float32)
    v[f'W_{name}_hprev'] = np.zeros((hidden, hidden), np.float32)
    v[f'W_{name}_b'] = np.full(hidden, PROBE[gate], np.float32)
  x = jnp.ones((4, input_size))
  state = jlstm.LSTMState(
    jnp.ones((4, hidden)), jnp.full((4, hidden), PROBE_C0)
  )
  new = jax.jit(jlstm.lstm_cell)(interop.from_seed(v), state, x)
  assert_probe_state(new.h, new.c, 'from_seed')

  b = np.zeros(4 * hidden, np.float32)
  for gate, value in PROBE.items():
    b[jlstm.gate_slice(gate, hidden)] = value
  params = jlstm.LSTMParams(
    np.zeros((input_size, 4 * hidden)), np.zeros((hidden, 4 * hidden)), b
  )
  exported = interop.to_seed(params)
  for name, gate in SEED_NAMES.items():
    np.testing.assert_array_equal(exported[f'W_{name}_b'], PROBE[gate])


def test_from_seed_errors_name_the_variable():
  """A missing or misshapen variable raises naming it."""
  v = {
    f'W_{g}_{part}': np.zeros(shape, np.float32)
    for g in SEED_NAMES
    for part, shape in (('x', (2, 3)), ('hprev', (3, 3)), ('b', (3,)))
  }
  with pytest.raises(KeyError, match="'W_ci_hprev'"):
    interop.from_seed({k: a for k, a in v.items() if k != 'W_ci_hprev'})
  with pytest.raises(ValueError, match=r"variables\['W_o_b'\] must have shape"):
    interop.from_seed(dict(v, W_o_b=np.zeros(4)))
