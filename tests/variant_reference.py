"""Float64 NumPy references of the cell variants and of stacks, for tests.

Written from the equations of the papers (Gers and Schmidhuber 2000
peepholes, Ba et al. 2016 layer norm, Sak et al. 2014 projection, Krueger
et al. 2016 zoneout, Greff et al. 2017 CIFG) and of PyTorch's ``nn.LSTM``
for stacks, one sequence and one step at a time. Parameters are dicts of
NumPy arrays with the fused gate layout (i, f, g, o blocks along 4H);
nothing here imports jlstm.
"""

import numpy as np

LN_EPSILON = 1e-5


def sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def layer_norm(z, scale, offset=0.0):
  mean = z.mean(axis=-1, keepdims=True)
  var = ((z - mean) ** 2).mean(axis=-1, keepdims=True)
  return (z - mean) / np.sqrt(var + LN_EPSILON) * scale + offset


def random_params(
  rng,
  input_size,
  hidden_size,
  *,
  peepholes=False,
  layer_norm=False,
  proj_size=None,
  scale=0.5,
):
  """Random float64 parameters with the requested variant fields."""
  gates = 4 * hidden_size
  recurrent = hidden_size if proj_size is None else proj_size
  p = {
    'w_x': rng.normal(0.0, scale, (input_size, gates)),
    'w_h': rng.normal(0.0, scale, (recurrent, gates)),
    'b': rng.normal(0.0, scale, (gates,)),
  }
  if peepholes:
    p['w_peep'] = rng.normal(0.0, scale, (3, hidden_size))
  if layer_norm:
    p['scale_x'] = rng.uniform(0.5, 1.5, gates)
    p['scale_h'] = rng.uniform(0.5, 1.5, gates)
    p['scale_c'] = rng.uniform(0.5, 1.5, hidden_size)
    p['offset_c'] = rng.normal(0.0, 0.3, hidden_size)
  if proj_size is not None:
    p['w_proj'] = rng.normal(0.0, scale, (hidden_size, proj_size))
  return p


def cell(
  p,
  h,
  c,
  x,
  *,
  forget_bias=0.0,
  cell_clip=None,
  proj_clip=None,
  coupled=False,
  x_mask=None,
  h_mask=None,
):
  """One step of the variant cell for one example: returns (h, c)."""
  hidden = c.shape[-1]
  x = x if x_mask is None else x * x_mask
  h_in = h if h_mask is None else h * h_mask
  zx = x @ p['w_x']
  zh = h_in @ p['w_h']
  if 'scale_x' in p:
    zx = layer_norm(zx, p['scale_x'])
    zh = layer_norm(zh, p['scale_h'])
  z = zx + zh + p['b']
  zi, zf, zg, zo = (z[k * hidden : (k + 1) * hidden] for k in range(4))
  if 'w_peep' in p:
    zi = zi + p['w_peep'][0] * c
    zf = zf + p['w_peep'][1] * c
  f = sigmoid(zf + forget_bias)
  i = 1.0 - f if coupled else sigmoid(zi)
  c_new = f * c + i * np.tanh(zg)
  if cell_clip is not None:
    c_new = np.clip(c_new, -cell_clip, cell_clip)
  if 'w_peep' in p:
    zo = zo + p['w_peep'][2] * c_new
  c_out = c_new
  if 'scale_c' in p:
    c_out = layer_norm(c_new, p['scale_c'], p['offset_c'])
  h_new = sigmoid(zo) * np.tanh(c_out)
  if 'w_proj' in p:
    h_new = h_new @ p['w_proj']
    if proj_clip is not None:
      h_new = np.clip(h_new, -proj_clip, proj_clip)
  return h_new, c_new


def unroll(
  p,
  xs,
  h0,
  c0,
  *,
  lengths=None,
  reverse=False,
  resets=None,
  x_masks=None,
  h_masks=None,
  **options,
):
  """Runs :func:`cell` over xs [T, B, I], one sequence at a time.

  Padding keeps the state and emits zeros; ``reverse`` runs each valid part
  backwards. ``resets[t, b]`` restores (h0, c0) of sequence b before step t
  going forward, and before step t - 1 going backward. ``x_masks`` [B, I]
  and ``h_masks`` [B, H_out] are one mask per sequence.

  Returns (h_final [B, H_out], c_final [B, H], hs [T, B, H_out]).
  """
  xs = np.asarray(xs, np.float64)
  time, batch = xs.shape[:2]
  lengths = np.full(batch, time) if lengths is None else np.asarray(lengths)
  h_final = np.array(h0, np.float64, copy=True)
  c_final = np.array(c0, np.float64, copy=True)
  hs = np.zeros((time, batch, h_final.shape[-1]))
  for b in range(batch):
    h, c = h_final[b], c_final[b]
    length = lengths[b]
    steps = reversed(range(length)) if reverse else range(length)
    for t in steps:
      if resets is not None:
        source = t + 1 if reverse else t
        if source < length and resets[source, b]:
          h, c = h0[b], c0[b]
      h, c = cell(
        p,
        h,
        c,
        xs[t, b],
        x_mask=None if x_masks is None else x_masks[b],
        h_mask=None if h_masks is None else h_masks[b],
        **options,
      )
      hs[t, b] = h
    h_final[b], c_final[b] = h, c
  return h_final, c_final, hs


def unroll_stack(layers, xs, states=None, *, lengths=None, **options):
  """A stack as PyTorch's ``nn.LSTM`` runs it, without dropout.

  ``layers[l][d]`` are parameter dicts; ``states[l][d]`` are (h0, c0)
  pairs, zeros when None. Returns (finals[l][d] = (h, c), outputs).
  """
  xs = np.asarray(xs, np.float64)
  batch = xs.shape[1]
  inputs = xs
  finals = []
  for layer_index, layer in enumerate(layers):
    outs, layer_finals = [], []
    for d, p in enumerate(layer):
      hidden = p['w_h'].shape[1] // 4
      out_size = p['w_proj'].shape[1] if 'w_proj' in p else hidden
      if states is None:
        h0, c0 = np.zeros((batch, out_size)), np.zeros((batch, hidden))
      else:
        h0, c0 = states[layer_index][d]
      h, c, hs = unroll(
        p, inputs, h0, c0, lengths=lengths, reverse=d == 1, **options
      )
      outs.append(hs)
      layer_finals.append((h, c))
    finals.append(layer_finals)
    inputs = np.concatenate(outs, axis=-1)
  return finals, inputs
