"""Float64 NumPy reference of the TF1 notebook's LSTM, for tests only.

Written from the equations, with the notebook's four separate gates (f, i,
o and the candidate ci), each with its own input matrix, recurrent matrix
and bias. Nothing here imports jlstm.
"""

import numpy as np

SEED_GATE_NAMES = ('f', 'i', 'o', 'ci')


def sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def random_seed_variables(rng, input_size, hidden_size, scale=0.5):
  """The notebook's 12 variables with random float64 values."""
  shapes = {
    'x': (input_size, hidden_size),
    'hprev': (hidden_size, hidden_size),
    'b': (hidden_size,),
  }
  return {
    f'W_{g}_{part}': rng.normal(0.0, scale, shape)
    for g in SEED_GATE_NAMES
    for part, shape in shapes.items()
  }


def seed_cell(v, h, c, x):
  """One notebook step in float64: returns (h, c)."""
  h, c, x = (np.asarray(a, np.float64) for a in (h, c, x))

  def pre(g):
    return x @ v[f'W_{g}_x'] + h @ v[f'W_{g}_hprev'] + v[f'W_{g}_b']

  f = sigmoid(pre('f'))
  i = sigmoid(pre('i'))
  o = sigmoid(pre('o'))
  candidate = np.tanh(pre('ci'))
  c = f * c + i * candidate
  h = o * np.tanh(c)
  return h, c


def seed_unroll(v, xs, h0, c0, lengths=None, reverse=False):
  """Loops :func:`seed_cell` over xs [T, B, I] per sequence.

  Returns (h_final [B, H], c_final [B, H], hs [T, B, H]) with the masking
  and reversal semantics jlstm documents: padding keeps the state and emits
  zeros; reverse runs each sequence's valid part backwards.
  """
  xs = np.asarray(xs, np.float64)
  time, batch = xs.shape[:2]
  hidden = v['W_f_hprev'].shape[0]
  lengths = np.full(batch, time) if lengths is None else np.asarray(lengths)
  hs = np.zeros((time, batch, hidden))
  h_final = np.array(h0, np.float64, copy=True)
  c_final = np.array(c0, np.float64, copy=True)
  for b in range(batch):
    h, c = h_final[b], c_final[b]
    steps = range(lengths[b])
    for t in reversed(steps) if reverse else steps:
      h, c = seed_cell(v, h, c, xs[t, b])
      hs[t, b] = h
    h_final[b], c_final[b] = h, c
  return h_final, c_final, hs


def seed_unroll_grads(v, xs, h0, c0, weights):
  """Backprop through time of ``sum(hs * weights)`` in float64.

  A hand-written reverse pass over :func:`seed_cell` (no lengths). Returns
  (grads of the 12 variables as a dict, dxs [T, B, I], dh0, dc0).
  """
  xs = np.asarray(xs, np.float64)
  weights = np.asarray(weights, np.float64)
  h, c = np.asarray(h0, np.float64), np.asarray(c0, np.float64)
  tape = []
  for x in xs:

    def pre(g, x=x, h=h):
      return x @ v[f'W_{g}_x'] + h @ v[f'W_{g}_hprev'] + v[f'W_{g}_b']

    acts = {
      'f': sigmoid(pre('f')),
      'i': sigmoid(pre('i')),
      'o': sigmoid(pre('o')),
      'ci': np.tanh(pre('ci')),
    }
    c_new = acts['f'] * c + acts['i'] * acts['ci']
    tape.append((x, h, c, acts, c_new))
    h, c = acts['o'] * np.tanh(c_new), c_new

  grads = {k: np.zeros_like(val) for k, val in v.items()}
  dxs = np.zeros_like(xs)
  dh_next = np.zeros_like(h)
  dc_next = np.zeros_like(c)
  for t in reversed(range(len(xs))):
    x, h_prev, c_prev, a, c_new = tape[t]
    dh = weights[t] + dh_next
    tanh_c = np.tanh(c_new)
    dc = dc_next + dh * a['o'] * (1.0 - tanh_c**2)
    dpre = {
      'o': dh * tanh_c * a['o'] * (1.0 - a['o']),
      'f': dc * c_prev * a['f'] * (1.0 - a['f']),
      'i': dc * a['ci'] * a['i'] * (1.0 - a['i']),
      'ci': dc * a['i'] * (1.0 - a['ci'] ** 2),
    }
    dh_next = np.zeros_like(h_prev)
    for g, d in dpre.items():
      grads[f'W_{g}_x'] += x.T @ d
      grads[f'W_{g}_hprev'] += h_prev.T @ d
      grads[f'W_{g}_b'] += d.sum(axis=0)
      dxs[t] += d @ v[f'W_{g}_x'].T
      dh_next += d @ v[f'W_{g}_hprev'].T
    dc_next = dc * a['f']
  return grads, dxs, dh_next, dc_next
