"""Benchmark: jlstm against PyTorch, Equinox, Flax and Haiku LSTMs.

Times the forward pass and the forward plus backward pass (loss = mean of
all outputs, gradients with respect to all parameters) of one LSTM layer at
three shapes, a 2-layer stack and a bfloat16 case, for:

* ``jlstm``: :func:`jlstm.unroll` as it runs by default (the fused unroll);
* ``jlstm (scan)``: :func:`jlstm.unroll` with ``impl='scan'``, plain
  autodiff of ``lax.scan``;
* ``torch``: PyTorch ``nn.LSTM`` (oneDNN on CPU, cuDNN on GPU);
* ``torch (no oneDNN)``: the same on CPU with oneDNN switched off, so
  PyTorch runs its generic path: one GEMM per step and autograd through the
  gate maths, the way a JAX scan runs;
* ``equinox``: ``eqx.nn.LSTMCell`` with ``jax.vmap`` over the batch and
  ``lax.scan`` over time;
* ``flax``: linen ``OptimizedLSTMCell`` in ``nn.RNN``;
* ``haiku``: ``hk.LSTM`` (``hk.DeepRNN`` for stacks) with
  ``hk.dynamic_unroll``;
* ``jax.experimental.rnn``: JAX's cuDNN LSTM, on GPU only.

Every row runs in its own worker process, so no library's thread pool or
allocator disturbs another's. The workers of a case compile one at a time,
then time in interleaved rounds (the order rotating every round), so drift
in the machine's speed hits all rows alike. The report gives medians with
the min-max range, compile times, XLA's temporary memory of the compiled
forward plus backward (and each process's peak resident memory growth),
achieved GFLOP/s and their fraction of the rate of a 2048 x 2048 matmul
of the case's dtype measured in the same run. It writes ``benchmark.md``,
``benchmark.png`` and ``results.json`` into the output folder.

Run it with::

  python experiments/benchmark.py --out bench
  jlstm bench --out bench --shapes seed,L --rounds 9
  jlstm bench --quick --out /tmp/bench   # tiny shapes, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import select
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import numpy as np


class Case(NamedTuple):
  """One benchmarked problem: time-major inputs [T, B, I], H units."""

  name: str
  time: int
  batch: int
  input_size: int
  hidden_size: int
  layers: int = 1
  dtype: str = 'float32'

  @property
  def label(self) -> str:
    dims = f'({self.time}, {self.batch}, {self.input_size}, {self.hidden_size})'
    return f'{self.name} {dims}'


#: The full benchmark: the three shapes, a 2-layer stack and bfloat16.
CASES = {
  'seed': Case('seed', 10, 32, 300, 256),
  'M': Case('M', 100, 64, 128, 512),
  'L': Case('L', 1000, 16, 64, 256),
  '2-layer': Case('2-layer', 100, 32, 128, 256, layers=2),
  'bf16': Case('bf16', 100, 32, 128, 256, dtype='bfloat16'),
}

#: ``--quick``: the same code paths at toy sizes, for CI.
QUICK_CASES = {
  'tiny': Case('tiny', 6, 4, 8, 16),
  'tiny-2-layer': Case('tiny-2-layer', 6, 4, 8, 16, layers=2),
  'tiny-bf16': Case('tiny-bf16', 6, 4, 8, 16, dtype='bfloat16'),
}

#: The rows, in table order.
LIBRARIES = (
  'jlstm',
  'jlstm (scan)',
  'torch',
  'torch (no oneDNN)',
  'equinox',
  'flax',
  'haiku',
  'jax.experimental.rnn',
)

#: The reference every ratio is taken against.
REFERENCE = 'torch'

#: Side of the square matmul whose rate is the CPU's yardstick.
MATMUL_SIZE = 2048

#: The matmul yardsticks: float32, and bfloat16 (which only some CPUs and
#: libraries run natively), in XLA and in PyTorch.
_MATMUL_ROWS = (
  'matmul (XLA)',
  'matmul (PyTorch)',
  'matmul bf16 (XLA)',
  'matmul bf16 (PyTorch)',
)


def flops(case: Case, *, backward: bool) -> float:
  """Matmul FLOPs of one forward (and backward) pass of ``case``.

  Forward, per layer and step: ``2 B (I_l + H) 4H``. Backward with respect
  to the parameters adds the recurrent ``dh = dz @ w_h^T`` and the weight
  gradients ``dw_x``, ``dw_h`` (``2 B (I_l + 2H) 4H``), plus the input
  gradient of every layer above the first. Elementwise work is left out,
  so every library is credited with the same count.
  """
  gates = 4 * case.hidden_size
  total = 0.0
  for layer in range(case.layers):
    width = case.input_size if layer == 0 else case.hidden_size
    per_step = 2 * case.batch * (width + case.hidden_size) * gates
    if backward:
      per_step += 2 * case.batch * (width + 2 * case.hidden_size) * gates
      if layer > 0:
        per_step += 2 * case.batch * width * gates
    total += per_step * case.time
  return total


# Workers ------------------------------------------------------------------


class Row(NamedTuple):
  """What a worker builds: callables that run and wait, and facts."""

  forward: Callable[[], Any]
  backward: Callable[[], Any] | None
  info: dict


def _peak_rss_bytes() -> int:
  """The process's peak resident memory so far (Linux reports KiB)."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak if sys.platform == 'darwin' else peak * 1024


def _jax_row(forward: Callable, params: Any, xs: Any) -> Row:
  """Jits a JAX ``forward(params, xs) -> outputs`` and its gradient."""
  import jax
  import jax.numpy as jnp

  def loss(params, xs):
    return jnp.mean(forward(params, xs).astype(jnp.float32))

  start = time.perf_counter()
  fwd = jax.jit(forward).lower(params, xs).compile()
  compile_fwd = time.perf_counter() - start
  start = time.perf_counter()
  fb = jax.jit(jax.grad(loss)).lower(params, xs).compile()
  compile_fb = time.perf_counter() - start
  info = {'compile_fwd_s': compile_fwd, 'compile_fb_s': compile_fb}
  with contextlib.suppress(Exception):
    info['temp_bytes'] = int(fb.memory_analysis().temp_size_in_bytes)
  return Row(
    forward=lambda: jax.block_until_ready(fwd(params, xs)),
    backward=lambda: jax.block_until_ready(fb(params, xs)),
    info=info,
  )


def _jax_inputs(case: Case):
  import jax
  import jax.numpy as jnp

  dtype = jnp.dtype(case.dtype)
  key = jax.random.key(0)
  shape = (case.time, case.batch, case.input_size)
  xs = jax.random.normal(jax.random.key(1), shape).astype(dtype)
  return key, xs, dtype


def _build_jlstm(case: Case, impl: str) -> Row:
  import jax

  import jlstm

  key, xs, dtype = _jax_inputs(case)
  widths = [case.input_size] + [case.hidden_size] * (case.layers - 1)
  keys = jax.random.split(key, case.layers)
  params = [
    jlstm.init_params(k, w, case.hidden_size, scheme='uniform', dtype=dtype)
    for k, w in zip(keys, widths, strict=True)
  ]

  def forward(params, xs):
    for layer in params:
      _, xs = jlstm.unroll(layer, xs, impl=impl)
    return xs

  return _jax_row(forward, params, xs)


def _build_equinox(case: Case) -> Row:
  import equinox as eqx
  import jax
  import jax.numpy as jnp

  key, xs, dtype = _jax_inputs(case)
  widths = [case.input_size] + [case.hidden_size] * (case.layers - 1)
  cells = [
    eqx.nn.LSTMCell(w, case.hidden_size, dtype=dtype, key=k)
    for k, w in zip(jax.random.split(key, case.layers), widths, strict=True)
  ]
  params, static = eqx.partition(cells, eqx.is_inexact_array)

  def forward(params, xs):
    for cell in eqx.combine(params, static):
      zeros = jnp.zeros((case.batch, case.hidden_size), dtype)

      def step(carry, x, cell=cell):
        carry = jax.vmap(cell)(x, carry)
        return carry, carry[0]

      _, xs = jax.lax.scan(step, (zeros, zeros), xs)
    return xs

  return _jax_row(forward, params, xs)


def _build_flax(case: Case) -> Row:
  import flax.linen as nn
  import jax

  key, xs, dtype = _jax_inputs(case)

  class Stack(nn.Module):
    @nn.compact
    def __call__(self, xs):
      for _ in range(case.layers):
        cell = nn.OptimizedLSTMCell(case.hidden_size, dtype=dtype)
        xs = nn.RNN(cell, time_major=True)(xs)
      return xs

  model = Stack()
  # Flax's orthogonal initialiser has no bfloat16, so the parameters are
  # drawn in float32 and cast.
  params = jax.tree.map(lambda a: a.astype(dtype), model.init(key, xs))
  return _jax_row(model.apply, params, xs)


def _build_haiku(case: Case) -> Row:
  import haiku as hk
  import jax

  key, xs, dtype = _jax_inputs(case)

  def forward(xs):
    core = hk.DeepRNN([hk.LSTM(case.hidden_size) for _ in range(case.layers)])
    # hk.Linear takes its parameters' dtype from its input, so a bfloat16
    # state makes bfloat16 parameters.
    state = jax.tree.map(
      lambda a: a.astype(dtype), core.initial_state(case.batch)
    )
    outputs, _ = hk.dynamic_unroll(core, xs, state, time_major=True)
    return outputs

  model = hk.without_apply_rng(hk.transform(forward))
  params = model.init(key, xs)
  return _jax_row(model.apply, params, xs)


def _build_jax_rnn(case: Case) -> Row:
  import jax
  import jax.numpy as jnp
  from jax.experimental import rnn

  if jax.default_backend() != 'gpu':
    raise _Skip('cuDNN only: needs a GPU')
  if case.dtype != 'float32':
    raise _Skip('float32 only')
  key, xs, _ = _jax_inputs(case)
  weights = rnn.init_lstm_weight(
    key, case.input_size, case.hidden_size, case.layers, False
  )
  batch_major = jnp.swapaxes(xs, 0, 1)
  state_shape = (case.layers, case.batch, case.hidden_size)
  lengths = jnp.full((case.batch,), case.time, jnp.int32)

  def forward(weights, xs):
    zeros = jnp.zeros(state_shape, xs.dtype)
    outputs, _, _ = rnn.lstm(
      xs,
      zeros,
      zeros,
      weights,
      lengths,
      input_size=case.input_size,
      hidden_size=case.hidden_size,
      num_layers=case.layers,
      dropout=0.0,
      bidirectional=False,
    )
    return outputs

  return _jax_row(forward, weights, batch_major)


def _build_torch(case: Case, onednn: bool = True) -> Row:
  import torch

  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  if not onednn and device != 'cpu':
    raise _Skip('CPU only: oneDNN is the CPU backend')
  dtype = getattr(torch, case.dtype)
  torch.manual_seed(0)
  lstm = torch.nn.LSTM(
    case.input_size,
    case.hidden_size,
    num_layers=case.layers,
    dtype=dtype,
    device=device,
  )
  shape = (case.time, case.batch, case.input_size)
  xs = torch.randn(shape, dtype=dtype, device=device)

  def sync():
    if device == 'cuda':
      torch.cuda.synchronize()

  @contextlib.contextmanager
  def backend():
    with warnings.catch_warnings():
      # Toggling oneDNN also sets its TF32 mode, which warns on builds
      # without Intel GPU support; the float32 maths is unchanged.
      warnings.filterwarnings('ignore', 'TF32', UserWarning)
      with torch.backends.mkldnn.flags(enabled=onednn):
        yield

  def forward():
    with backend(), torch.no_grad():
      lstm(xs)
    sync()

  def backward():
    lstm.zero_grad(set_to_none=True)
    with backend():
      outputs, _ = lstm(xs)
      outputs.float().mean().backward()
    sync()

  return Row(forward, backward, {'device': device})


def _matmul_dtype(row: str) -> str:
  """The dtype of a matmul yardstick row."""
  return 'bfloat16' if 'bf16' in row else 'float32'


def _build_matmul(library: str, size: int) -> Row:
  dtype = _matmul_dtype(library)
  if 'PyTorch' in library:
    import torch

    a = torch.randn(size, size).to(getattr(torch, dtype))
    return Row(lambda: torch.mm(a, a), None, {})
  import jax

  a = jax.random.normal(jax.random.key(0), (size, size)).astype(dtype)
  mm = jax.jit(lambda a: a @ a).lower(a).compile()
  return Row(lambda: jax.block_until_ready(mm(a)), None, {})


class _Skip(Exception):
  """A row that cannot run here; its message says why."""


def _build(library: str, case: Case, matmul_size: int) -> Row:
  if library in _MATMUL_ROWS:
    return _build_matmul(library, matmul_size)
  builders = {
    'jlstm': lambda: _build_jlstm(case, 'auto'),
    'jlstm (scan)': lambda: _build_jlstm(case, 'scan'),
    'torch': lambda: _build_torch(case),
    'torch (no oneDNN)': lambda: _build_torch(case, onednn=False),
    'equinox': lambda: _build_equinox(case),
    'flax': lambda: _build_flax(case),
    'haiku': lambda: _build_haiku(case),
    'jax.experimental.rnn': lambda: _build_jax_rnn(case),
  }
  try:
    return builders[library]()
  except ImportError as err:
    raise _Skip(f'not installed ({err.name})') from None


def _time_batch(fn: Callable[[], Any], min_time: float, max_reps: int):
  """Runs ``fn`` at least once and until ``min_time`` seconds have passed."""
  times = []
  start = time.perf_counter()
  while True:
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
    if time.perf_counter() - start >= min_time or len(times) >= max_reps:
      return times


def _worker(spec: dict) -> int:
  """A worker's main loop: build, report, then time on request."""
  # Only protocol lines may reach the parent through stdout, whatever the
  # libraries print.
  reply_to = os.fdopen(os.dup(1), 'w')
  os.dup2(2, 1)

  def reply(message: dict):
    reply_to.write(json.dumps(message) + '\n')
    reply_to.flush()

  case = Case(**spec['case'])
  try:
    row = _build(spec['library'], case, spec['matmul_size'])
    row.forward()
    rss = _peak_rss_bytes()
    if row.backward is not None:
      row.backward()
    info = dict(row.info, rss_growth_bytes=_peak_rss_bytes() - rss)
  except _Skip as skip:
    reply({'skip': str(skip)})
    return 0
  except Exception as err:  # noqa: BLE001 - reported, the run goes on
    reply({'error': f'{type(err).__name__}: {err}'})
    return 0
  reply({'ready': info})

  for line in sys.stdin:
    command = line.split()
    if not command or command[0] == 'quit':
      break
    min_time = float(command[1])
    result = {'fwd': _time_batch(row.forward, min_time, 1000)}
    if row.backward is not None:
      result['fb'] = _time_batch(row.backward, min_time, 1000)
    reply(result)
  return 0


class _Worker:
  """The parent's handle on one worker process."""

  def __init__(self, spec: dict, log_path: str, env: dict):
    self.spec = spec
    self.log = open(log_path, 'w')  # noqa: SIM115 - closed in close()
    self.proc = subprocess.Popen(
      [sys.executable, '-m', 'jlstm.bench', '--worker', json.dumps(spec)],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      stderr=self.log,
      text=True,
      env=env,
    )

  def request(self, command: str | None, timeout: float) -> dict:
    if command is not None:
      self.proc.stdin.write(command + '\n')
      self.proc.stdin.flush()
    ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
    if not ready:
      raise TimeoutError(f'no answer within {timeout:.0f} s')
    line = self.proc.stdout.readline()
    if not line:
      raise RuntimeError(f'worker exited (see {self.log.name})')
    return json.loads(line)

  def close(self):
    with contextlib.suppress(OSError, ValueError):
      self.proc.stdin.write('quit\n')
      self.proc.stdin.close()
    try:
      self.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
      self.proc.kill()
      self.proc.wait()
    self.proc.stdout.close()
    self.log.close()


# The run ------------------------------------------------------------------


def _worker_env() -> dict:
  """The parent's environment, with this jlstm importable first."""
  env = dict(os.environ)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  path = env.get('PYTHONPATH')
  env['PYTHONPATH'] = root if not path else os.pathsep.join([root, path])
  return env


def _run_group(
  case: Case,
  libraries: Sequence[str],
  *,
  rounds: int,
  min_time: float,
  pause: float,
  timeout: float,
  matmul_size: int,
  out: str,
  say: Callable[[str], None],
) -> dict:
  """Builds the rows of one case one by one, then times them in rounds."""
  env = _worker_env()
  results: dict[str, dict] = {}
  workers: list[tuple[str, _Worker]] = []
  try:
    for library in libraries:
      spec = {
        'library': library,
        'case': case._asdict(),
        'matmul_size': matmul_size,
      }
      name = f'{case.name}-{library}'.replace(' ', '_')
      for char in '()':
        name = name.replace(char, '')
      worker = _Worker(spec, os.path.join(out, 'logs', f'{name}.log'), env)
      try:
        answer = worker.request(None, timeout)
      except (TimeoutError, RuntimeError) as err:
        answer = {'error': str(err)}
      if 'ready' in answer:
        results[library] = dict(answer['ready'], fwd=[], fb=[])
        workers.append((library, worker))
        say(f'  {library}: ready')
      else:
        results[library] = answer
        worker.close()
        say(f'  {library}: {answer.get("skip") or answer.get("error")}')

    for r in range(rounds):
      # Rotating the order spreads any cost of following a given row.
      shift = r % max(len(workers), 1)
      for library, worker in workers[shift:] + workers[:shift]:
        if 'error' in results[library]:
          continue
        try:
          answer = worker.request(f'time {min_time}', timeout)
        except (TimeoutError, RuntimeError) as err:
          results[library]['error'] = str(err)
          continue
        results[library]['fwd'] += answer['fwd']
        results[library]['fb'] += answer.get('fb', [])
        # Lets spinning thread pools of the last worker go idle.
        time.sleep(pause)
      say(f'  round {r + 1}/{rounds} done')
  finally:
    for _, worker in workers:
      worker.close()
  return results


def run(
  cases: Sequence[Case],
  libraries: Sequence[str],
  *,
  rounds: int,
  min_time: float,
  out: str,
  matmul_size: int = MATMUL_SIZE,
  pause: float = 0.2,
  timeout: float = 900.0,
  say: Callable[[str], None] = lambda message: None,
) -> dict:
  """Runs the benchmark and returns its results as a JSON-ready dict."""
  os.makedirs(os.path.join(out, 'logs'), exist_ok=True)
  matmul_case = Case('matmul', 1, matmul_size, matmul_size, matmul_size)
  say(f'matmul {matmul_size} x {matmul_size}')
  matmul = _run_group(
    matmul_case,
    _MATMUL_ROWS,
    rounds=rounds,
    min_time=min_time,
    pause=pause,
    timeout=timeout,
    matmul_size=matmul_size,
    out=out,
    say=say,
  )
  results = {
    'machine': _machine(),
    'rounds': rounds,
    'matmul_size': matmul_size,
    'matmul': matmul,
    'cases': {},
  }
  for case in cases:
    say(case.label)
    results['cases'][case.name] = {
      'case': case._asdict(),
      'rows': _run_group(
        case,
        libraries,
        rounds=rounds,
        min_time=min_time,
        pause=pause,
        timeout=timeout,
        matmul_size=matmul_size,
        out=out,
        say=say,
      ),
    }
  return results


def _machine() -> dict:
  facts = {
    'python': platform.python_version(),
    'cpus': os.cpu_count(),
    'processor': platform.processor() or platform.machine(),
  }
  with contextlib.suppress(OSError):
    with open('/proc/cpuinfo') as cpuinfo:
      for line in cpuinfo:
        if line.startswith('model name'):
          facts['processor'] = line.split(':', 1)[1].strip()
          break
  for module in ('jax', 'jaxlib', 'torch', 'equinox', 'flax', 'haiku'):
    with contextlib.suppress(Exception):
      facts[module] = __import__(module).__version__
  return facts


# The report ---------------------------------------------------------------

_TITLES = {
  'jlstm': 'jlstm',
  'jlstm (scan)': 'jlstm (scan)',
  'torch': 'PyTorch nn.LSTM',
  'torch (no oneDNN)': 'PyTorch, oneDNN off',
  'equinox': 'Equinox',
  'flax': 'Flax linen',
  'haiku': 'Haiku',
  'jax.experimental.rnn': 'jax.experimental.rnn',
}


def _ms(times: Sequence[float]) -> str:
  t = np.asarray(times) * 1e3
  return f'{np.median(t):.1f} ({t.min():.1f}-{t.max():.1f})'


def matmul_rates(results: dict) -> dict[str, float]:
  """Each matmul row's median rate in GFLOP/s, by row name."""
  size = results['matmul_size']
  return {
    name: 2 * size**3 / np.median(row['fwd']) / 1e9
    for name, row in results['matmul'].items()
    if row.get('fwd')
  }


def matmul_rate(results: dict, dtype: str = 'float32') -> float | None:
  """The best median square-matmul rate of ``dtype`` measured (XLA or
  PyTorch), in GFLOP/s."""
  rates = [
    rate
    for name, rate in matmul_rates(results).items()
    if _matmul_dtype(name) == dtype
  ]
  return max(rates) if rates else None


def _columns(results: dict) -> list[str]:
  seen = []
  for case in results['cases'].values():
    for library, row in case['rows'].items():
      if library not in seen and row.get('fwd'):
        seen.append(library)
  return [lib for lib in LIBRARIES if lib in seen]


def _rows(results: dict):
  """Every measured row as ``(where, name, row)``: the matmul yardsticks
  (``where`` None), then each case's rows."""
  for name, row in results['matmul'].items():
    yield None, name, row
  for case in results['cases'].values():
    for library, row in case['rows'].items():
      yield case['case']['name'], library, row


def _notes(results: dict) -> list[str]:
  notes = {}
  for where, name, row in _rows(results):
    if 'skip' in row:
      notes.setdefault(f'{name}: skipped, {row["skip"]}', None)
    elif 'error' in row:
      at = f' at {where}' if where else ''
      notes[f'{name}{at}: {row["error"]}'] = None
  return list(notes)


def _rounds(count: int) -> str:
  return f'{count} interleaved round' + ('' if count == 1 else 's')


def report(results: dict) -> str:
  """The results as markdown tables."""
  columns = _columns(results)
  cases = list(results['cases'].values())
  machine = results['machine']
  lines = [
    '# jlstm benchmark',
    '',
    f'{machine.get("processor")}, {machine.get("cpus")} CPUs; '
    + ', '.join(
      f'{m} {machine[m]}'
      for m in ('jax', 'torch', 'equinox', 'flax', 'haiku')
      if m in machine
    )
    + '.',
    '',
    'Shapes are (T, B, I, H). Times in ms: median (min-max) over '
    f'{_rounds(results["rounds"])}. Forward + backward is the '
    'gradient of mean(outputs) with respect to all parameters.',
    '',
  ]

  def table(title, cell, intro=None):
    head = ['case'] + [_TITLES[c] for c in columns]
    lines.extend([f'## {title}', ''])
    if intro:
      lines.extend([intro, ''])
    lines.append('| ' + ' | '.join(head) + ' |')
    lines.append('|' + '---|' * len(head))
    for case in cases:
      rows = case['rows']
      cells = [cell(rows.get(c, {}), rows) for c in columns]
      lines.append(
        '| ' + ' | '.join([Case(**case['case']).label] + cells) + ' |'
      )
    lines.append('')

  def timing(kind):
    return lambda row, rows: _ms(row[kind]) if row.get(kind) else '-'

  def ratio(kind):
    def cell(row, rows):
      ref = rows.get(REFERENCE, {}).get(kind)
      if not row.get(kind) or not ref:
        return '-'
      return f'{np.median(row[kind]) / np.median(ref):.2f}'

    return cell

  table('Forward + backward (ms)', timing('fb'))
  table('Forward (ms)', timing('fwd'))
  if REFERENCE in columns:
    table(f'Forward + backward time / {_TITLES[REFERENCE]}', ratio('fb'))
    table(f'Forward time / {_TITLES[REFERENCE]}', ratio('fwd'))

  def compiled(row, rows):
    if 'compile_fb_s' not in row:
      return '-'
    return f'{row["compile_fwd_s"]:.2f} / {row["compile_fb_s"]:.2f}'

  table('Compile time (s): forward / forward + backward', compiled)

  lines.extend(
    [
      '## Achieved GFLOP/s of forward + backward (fraction of the matmul rate)',
      '',
    ]
  )
  rates = matmul_rates(results)
  if rates:
    size = results['matmul_size']
    measured = ', '.join(f'{name} {rate:.0f}' for name, rate in rates.items())
    lines.append(
      f'Matmul rate ({size} x {size}, median GFLOP/s in this run): '
      f'{measured}. Each case is measured against the best rate of its '
      'dtype. FLOPs count the matmuls only, the same for every library.'
    )
    lines.append('')
  head = ['case'] + [_TITLES[c] for c in columns]
  lines.extend(['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)])
  for case in cases:
    spec = Case(**case['case'])
    count = flops(spec, backward=True)
    peak = matmul_rate(results, spec.dtype)
    cells = []
    for c in columns:
      row = case['rows'].get(c, {})
      if not row.get('fb'):
        cells.append('-')
        continue
      achieved = count / np.median(row['fb']) / 1e9
      share = f' ({achieved / peak:.0%})' if peak else ''
      cells.append(f'{achieved:.0f}{share}')
    lines.append('| ' + ' | '.join([spec.label] + cells) + ' |')
  lines.append('')

  def memory(row, rows):
    if not row.get('fb'):
      return '-'
    parts = []
    if 'temp_bytes' in row:
      parts.append(f'{row["temp_bytes"] / 1e6:.0f}')
    parts.append(f'[{row["rss_growth_bytes"] / 1e6:.0f}]')
    return ' '.join(parts)

  table(
    'Memory (MB)',
    memory,
    intro='Memory of forward + backward, MB: XLA temporaries of the compiled '
    'program, and [growth of peak resident memory in the first call].',
  )

  notes = _notes(results)
  if REFERENCE not in columns:
    notes.append(
      f'no ratios: the reference row, {REFERENCE} ({_TITLES[REFERENCE]}), '
      'was not measured'
    )
  if notes:
    lines.extend(['## Notes', ''] + [f'- {note}' for note in notes] + [''])
  return '\n'.join(lines)


#: Labelled values on the chart's log scale.
_TICKS = tuple(m * 10.0**e for e in range(-3, 4) for m in (1, 2, 5))


def plot(results: dict, path: str) -> None:
  """Bar chart of every row's time relative to the reference row.

  Without a measured reference row the bars are times in ms. A case whose
  reference failed gets no bars rather than bars measured against
  themselves.
  """
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  import matplotlib.ticker

  columns = _columns(results)
  cases = list(results['cases'].values())
  relative = REFERENCE in columns
  fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
  width = 0.8 / max(len(columns), 1)
  for ax, kind, title in zip(
    axes, ('fwd', 'fb'), ('Forward', 'Forward + backward'), strict=True
  ):
    for k, library in enumerate(columns):
      centers, heights, lows, highs = [], [], [], []
      for j, case in enumerate(cases):
        rows = case['rows']
        times = rows.get(library, {}).get(kind)
        ref = rows.get(REFERENCE, {}).get(kind)
        if not times or (relative and not ref):
          continue
        scale = 1.0 / np.median(ref) if relative else 1e3
        median = np.median(times) * scale
        centers.append(j + (k - (len(columns) - 1) / 2) * width)
        heights.append(median)
        lows.append(median - np.min(times) * scale)
        highs.append(np.max(times) * scale - median)
      ax.bar(
        centers,
        heights,
        width,
        yerr=[lows, highs],
        label=_TITLES[library],
        capsize=2,
      )
    if relative:
      ax.axhline(1.0, color='black', linewidth=0.8, linestyle='--')
      ax.set_title(f'{title}, time / {_TITLES[REFERENCE]} (lower is faster)')
    else:
      ax.set_title(f'{title}, time in ms (lower is faster)')
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels([c['case']['name'] for c in cases])
  # A log scale shows 2x faster and 2x slower alike, and keeps one outlier
  # from flattening the rest.
  axes[0].set_yscale('log')
  low, high = axes[0].get_ylim()
  ticks = [t for t in _TICKS if low <= t <= high]
  if len(ticks) > 1:
    axes[0].set_yticks(ticks, [f'{t:g}' for t in ticks])
    axes[0].yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  unit = 'relative time' if relative else 'ms'
  axes[0].set_ylabel(f'{unit}, log scale (median, min-max bars)')
  handles, labels = axes[0].get_legend_handles_labels()
  if handles:
    fig.legend(
      handles,
      labels,
      loc='lower center',
      ncol=min(len(handles), 7),
      fontsize='small',
      frameon=False,
    )
  fig.tight_layout(rect=(0, 0.08, 1, 1))
  fig.savefig(path, dpi=120)
  plt.close(fig)


# The command line -------------------------------------------------------


class _UsageError(Exception):
  pass


class _Parser(argparse.ArgumentParser):
  def error(self, message):
    raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
  parser = _Parser(
    prog='jlstm bench',
    description='Time jlstm against PyTorch, Equinox, Flax and Haiku.',
  )
  parser.add_argument(
    '--out', default='benchmark', help='output folder (default: benchmark)'
  )
  parser.add_argument(
    '--shapes',
    help='comma-separated cases, from ' + ', '.join(CASES) + ' (default: '
    'all; with --quick: ' + ', '.join(QUICK_CASES) + ')',
  )
  parser.add_argument(
    '--libs',
    help='comma-separated rows, from ' + ', '.join(LIBRARIES) + ' (default: '
    'all; missing libraries are skipped with a note)',
  )
  parser.add_argument(
    '--rounds', type=int, help='interleaved timing rounds (default 7; 1 quick)'
  )
  parser.add_argument(
    '--min-time',
    type=float,
    help='seconds each row times per round at least (default 0.3; 0 quick)',
  )
  parser.add_argument(
    '--quick', action='store_true', help='toy sizes for CI: about 2 minutes'
  )
  parser.add_argument(
    '--timeout', type=float, default=900.0, help='seconds per worker answer'
  )
  parser.add_argument('--no-plot', action='store_true', help='skip the PNG')
  parser.add_argument('--worker', help=argparse.SUPPRESS)
  return parser


def _pick(names: str | None, known: Sequence[str], what: str) -> list[str]:
  """The names in a comma-separated list, each once, in the order given."""
  if names is None:
    return list(known)
  picked = [name.strip() for name in names.split(',') if name.strip()]
  unknown = [name for name in picked if name not in known]
  if unknown or not picked:
    got = ', '.join(repr(n) for n in unknown) if unknown else repr(names)
    raise _UsageError(
      f'--{what} must name some of {", ".join(known)}; got {got}'
    )
  return list(dict.fromkeys(picked))


def _make_out(out: str) -> None:
  """Creates the output folder, or raises a usage error that names
  ``--out``."""
  if not out.strip():
    raise _UsageError("--out must name a folder; got ''")
  if os.path.exists(out) and not os.path.isdir(out):
    raise _UsageError(f'--out must be a folder; {out!r} is a file')
  try:
    os.makedirs(out, exist_ok=True)
  except OSError as err:
    raise _UsageError(
      f'--out {out!r} cannot be created: {err.strerror or err}'
    ) from None


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the benchmark from command-line arguments; returns an exit code.

  Exit codes: 0 when every row ran or was skipped as not installed, 1 when
  a row failed, 2 for bad arguments.

  Example:
    >>> from jlstm import bench
    >>> bench.main(['--shapes', 'nope'])  # doctest: +SKIP
    2
  """
  try:
    args = _parser().parse_args(argv)
    if args.worker is not None:
      return _worker(json.loads(args.worker))
    table = QUICK_CASES if args.quick else CASES
    cases = [table[n] for n in _pick(args.shapes, list(table), 'shapes')]
    libraries = _pick(args.libs, LIBRARIES, 'libs')
    rounds = (
      args.rounds if args.rounds is not None else (1 if args.quick else 7)
    )
    if rounds < 1:
      raise _UsageError(f'--rounds must be at least 1; got {rounds}')
    min_time = args.min_time
    if min_time is None:
      min_time = 0.0 if args.quick else 0.3
    if not 0 <= min_time < float('inf'):
      raise _UsageError(
        f'--min-time must be a finite number >= 0; got {min_time}'
      )
    if not 0 < args.timeout < float('inf'):
      raise _UsageError(
        f'--timeout must be a finite number of seconds > 0; got {args.timeout}'
      )
    _make_out(args.out)
  except _UsageError as err:
    print(f'jlstm bench: error: {err}', file=sys.stderr)
    return 2
  except SystemExit as done:  # --help
    return int(done.code or 0)

  def say(message):
    print(message, file=sys.stderr, flush=True)

  results = run(
    cases,
    libraries,
    rounds=rounds,
    min_time=min_time,
    out=args.out,
    matmul_size=256 if args.quick else MATMUL_SIZE,
    timeout=args.timeout,
    say=say,
  )
  with open(os.path.join(args.out, 'results.json'), 'w') as f:
    json.dump(results, f, indent=1)
  markdown = report(results)
  with open(os.path.join(args.out, 'benchmark.md'), 'w') as f:
    f.write(markdown + '\n')
  if not args.no_plot:
    plot(results, os.path.join(args.out, 'benchmark.png'))
  print(markdown)
  failed = any('error' in row for _, _, row in _rows(results))
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
