"""Shared pieces of the interop tests: the gate-order probe and tolerances.

Nothing here imports jlstm: expected values come from the equations.

The probe sets every weight to zero and each gate's bias to its own
constant, so one step gives a state that depends on which constant feeds
which gate. :func:`probe_margin` checks that every permutation of the
gates moves that state well beyond the test tolerance, so a converter that
swaps any two gates fails.
"""

import itertools

import numpy as np

#: Gate letters in the order the equations below use them.
GATES = ('i', 'f', 'g', 'o')

#: Gate pre-activations of the probe, chosen (by a grid search) so that
#: every permutation moves the state by more than 0.3 (checked by
#: :func:`probe_margin`).
PROBE = {'i': 2.0, 'f': 1.0, 'g': -1.25, 'o': -0.5}

#: Previous cell state of the probe; non-zero so the forget gate matters.
PROBE_C0 = 1.5

#: Float32 parity tolerance against peer libraries (absolute and relative,
#: on outputs, states and gradients): float32 rounding of a few dozen
#: operations, far below any layout error.
TOL = 1e-5


def sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def probe_step(pre=None, c0=PROBE_C0):
  """One float64 LSTM step from gate pre-activations: returns (h, c)."""
  pre = PROBE if pre is None else pre
  c = sigmoid(pre['f']) * c0 + sigmoid(pre['i']) * np.tanh(pre['g'])
  h = sigmoid(pre['o']) * np.tanh(c)
  return h, c


def probe_margin():
  """Smallest distance from the true probe state to a permuted one."""
  want = np.array(probe_step())
  margins = []
  for perm in itertools.permutations(GATES):
    if perm == GATES:
      continue
    pre = {gate: PROBE[src] for gate, src in zip(GATES, perm, strict=True)}
    margins.append(np.max(np.abs(np.array(probe_step(pre)) - want)))
  return min(margins)


def assert_probe_state(h, c, what):
  """Asserts that every unit of ``h`` and ``c`` holds the probe's state."""
  want_h, want_c = probe_step()
  np.testing.assert_allclose(
    np.asarray(c, np.float64), want_c, rtol=0, atol=TOL, err_msg=f'{what} c'
  )
  np.testing.assert_allclose(
    np.asarray(h, np.float64), want_h, rtol=0, atol=TOL, err_msg=f'{what} h'
  )


def assert_close(actual, expected, what):
  """Float32 parity: within :data:`TOL`, absolute or relative.

  Prints the largest absolute difference (shown by ``pytest -rP``), so the
  deviation from each peer can be read off a passing run.
  """
  print(f'{what}: max |diff| = {max_abs_diff(actual, expected):.2e}')
  np.testing.assert_allclose(
    np.asarray(actual, np.float64),
    np.asarray(expected, np.float64),
    rtol=TOL,
    atol=TOL,
    err_msg=what,
  )


def max_abs_diff(actual, expected):
  """Largest absolute difference, as a Python float."""
  return float(
    np.max(
      np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64))
    )
  )
