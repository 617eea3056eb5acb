"""Loads a PyTorch nn.LSTM into jlstm and prints the largest difference.

Builds an ``nn.LSTM`` (random weights, or a saved ``state_dict`` with
``--state-dict``), converts it with ``jlstm.interop.from_torch``, runs both
on the same random inputs and non-zero initial states, and prints the
largest absolute difference of the outputs, of the final ``h_n`` and
``c_n``, and of the gradients of every state-dict entry, of the inputs and
of the initial states.

Run:
  python experiments/convert_torch.py
  python experiments/convert_torch.py --num-layers 3 --bidirectional \\
    --proj-size 64
  python experiments/convert_torch.py --state-dict lstm.pt --input-size 300 \\
    --hidden-size 256 --num-layers 2
"""

import argparse
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import torch

import jlstm


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--input-size', type=int, default=300)
  parser.add_argument('--hidden-size', type=int, default=256)
  parser.add_argument('--num-layers', type=int, default=2)
  parser.add_argument('--bidirectional', action='store_true')
  parser.add_argument('--proj-size', type=int, default=0)
  parser.add_argument('--no-bias', action='store_true')
  parser.add_argument('--time', type=int, default=10)
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument(
    '--state-dict', help='torch.save()d state_dict of a matching nn.LSTM'
  )
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  torch.manual_seed(args.seed)
  lstm = torch.nn.LSTM(
    args.input_size,
    args.hidden_size,
    num_layers=args.num_layers,
    bidirectional=args.bidirectional,
    proj_size=args.proj_size,
    bias=not args.no_bias,
  )
  if args.state_dict:
    lstm.load_state_dict(torch.load(args.state_dict, weights_only=True))
  directions = 2 if args.bidirectional else 1
  rows, out = directions * args.num_layers, args.proj_size or args.hidden_size

  gen = torch.Generator().manual_seed(args.seed + 1)
  x = torch.randn(args.time, args.batch, args.input_size, generator=gen)
  h0 = torch.randn(rows, args.batch, out, generator=gen)
  c0 = torch.randn(rows, args.batch, args.hidden_size, generator=gen)
  w_y = torch.randn(args.time, args.batch, directions * out, generator=gen)
  for t in (x, h0, c0):
    t.requires_grad_(True)
  with warnings.catch_warnings():
    # oneDNN has no projection kernel; torch falls back and says so.
    warnings.simplefilter('ignore', UserWarning)
    y, (h_n, c_n) = lstm(x, (h0, c0))
  ((y * w_y).sum() + h_n.sum() + c_n.sum()).backward()

  def as_jax(tensor):
    return jnp.asarray(tensor.detach().numpy())

  def loss(state_dict, xs, h0, c0):
    params = jlstm.interop.from_torch(state_dict)
    states = jlstm.interop.from_torch_state(
      (h0, c0), bidirectional=args.bidirectional
    )
    final, ys = jlstm.unroll_stack(params, xs, states)
    h_n = jnp.stack([s.h for layer in final for s in layer])
    c_n = jnp.stack([s.c for layer in final for s in layer])
    return (ys * as_jax(w_y)).sum() + h_n.sum() + c_n.sum(), (ys, final)

  state_dict = {k: as_jax(v) for k, v in lstm.state_dict().items()}
  with jax.default_matmul_precision('highest'):
    grads, (ys, final) = jax.jit(jax.grad(loss, (0, 1, 2, 3), has_aux=True))(
      state_dict, as_jax(x), as_jax(h0), as_jax(c0)
    )
  got_h, got_c = jlstm.interop.to_torch_state(final, as_numpy=True)

  def diff(got, want):
    want = want.detach().numpy()
    error = float(np.max(np.abs(np.asarray(got) - want)))
    return error, error / max(float(np.max(np.abs(want))), 1e-30)

  rows = [
    ('outputs', diff(ys, y)),
    ('h_n', diff(got_h, h_n)),
    ('c_n', diff(got_c, c_n)),
    ('grad inputs', diff(grads[1], x.grad)),
    ('grad h_0', diff(grads[2], h0.grad)),
    ('grad c_0', diff(grads[3], c0.grad)),
  ]
  rows += [
    (f'grad {name}', diff(grads[0][name], p.grad))
    for name, p in lstm.named_parameters()
  ]
  config = (
    f'nn.LSTM({args.input_size}, {args.hidden_size}, '
    f'num_layers={args.num_layers}, bidirectional={args.bidirectional}, '
    f'proj_size={args.proj_size}, bias={not args.no_bias}), '
    f'T={args.time}, B={args.batch}, float32'
  )
  print(config)
  print(f'  {"max |jlstm - torch|":<30} {"absolute":>9} {"/ max|torch|":>13}')
  for name, (error, relative) in rows:
    print(f'  {name:<30} {error:9.2e} {relative:13.2e}')
  print(f'largest output difference: {rows[0][1][0]:.2e}')
  worst = max(rows, key=lambda row: row[1][1])
  print(
    f'largest difference overall: {max(r[1][0] for r in rows):.2e} '
    f'absolute, {worst[1][1]:.2e} relative ({worst[0]})'
  )


if __name__ == '__main__':
  sys.exit(main())
