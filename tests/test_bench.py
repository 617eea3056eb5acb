"""Tests of the benchmark (jlstm/bench.py): a tiny run, so it cannot rot."""

import importlib.util
import json

import numpy as np
import pytest

from jlstm import bench

TINY = bench.QUICK_CASES['tiny']


def test_bench_flops_match_hand_count():
  """FLOPs of one and two layers equal the count worked out by hand."""
  one = bench.Case('x', time=2, batch=3, input_size=5, hidden_size=7)
  # Forward: 2 T B (I + H) 4H; backward adds 2 T B (I + 2H) 4H.
  assert bench.flops(one, backward=False) == 2 * 2 * 3 * 12 * 28
  assert bench.flops(one, backward=True) == 2 * 2 * 3 * (12 + 19) * 28
  two = one._replace(layers=2)
  # Layer 2 reads H = 7 features and also passes a gradient to layer 1.
  layer2 = 2 * 2 * 3 * ((7 + 7) + (7 + 14) + 7) * 28
  assert bench.flops(two, backward=True) == 2 * 2 * 3 * 31 * 28 + layer2


@pytest.mark.parametrize('library', ['jlstm', 'jlstm (scan)'])
@pytest.mark.parametrize('case', list(bench.QUICK_CASES))
def test_bench_jlstm_rows_build_and_run(library, case):
  """jlstm rows compile, run and report compile time and XLA memory."""
  row = bench._build(library, bench.QUICK_CASES[case], 64)
  row.forward()
  row.backward()
  assert row.info['compile_fwd_s'] > 0 and row.info['compile_fb_s'] > 0
  assert row.info['temp_bytes'] >= 0


@pytest.mark.slow
@pytest.mark.parametrize(
  'library', ['torch', 'torch (no oneDNN)', 'equinox', 'flax', 'haiku']
)
def test_bench_peer_rows_build_and_run(library):
  """Every installed peer's rows run at toy size, stacks and bf16 too."""
  module = library.split()[0]
  if importlib.util.find_spec(module) is None:
    pytest.skip(f'{module} is not installed')
  for case in bench.QUICK_CASES.values():
    row = bench._build(library, case, 64)
    row.forward()
    row.backward()


@pytest.mark.torch
def test_bench_torch_row_without_onednn_switches_it_off_for_its_calls():
  """The no-oneDNN row runs with oneDNN off and leaves it on afterwards."""
  torch = pytest.importorskip('torch')
  if torch.cuda.is_available():
    pytest.skip('the row is CPU only')
  seen = []
  lstm_forward = torch.nn.LSTM.forward

  def spy(self, *args, **kwargs):
    seen.append(
      torch.backends.mkldnn.is_available() and torch._C._get_mkldnn_enabled()
    )
    return lstm_forward(self, *args, **kwargs)

  before = torch._C._get_mkldnn_enabled()
  try:
    torch.nn.LSTM.forward = spy
    for library in ('torch (no oneDNN)', 'torch'):
      row = bench._build(library, TINY, 64)
      row.forward()
      row.backward()
  finally:
    torch.nn.LSTM.forward = lstm_forward
  assert seen == [False, False, before, before]
  assert torch._C._get_mkldnn_enabled() == before


def test_bench_jax_rnn_row_is_skipped_without_gpu():
  """jax.experimental.rnn needs cuDNN, so on CPU the row is skipped."""
  with pytest.raises(bench._Skip, match='GPU'):
    bench._build('jax.experimental.rnn', TINY, 64)


def _fake_results():
  """Results with known medians: jlstm 5 ms, PyTorch 10 ms, flax skipped."""
  rows = {
    'jlstm': {
      'fwd': [0.002, 0.003, 0.004],
      'fb': [0.004, 0.005, 0.009],
      'compile_fwd_s': 0.5,
      'compile_fb_s': 1.25,
      'temp_bytes': 12e6,
      'rss_growth_bytes': 3e6,
    },
    'torch': {
      'fwd': [0.003, 0.003, 0.003],
      'fb': [0.010, 0.010, 0.011],
      'rss_growth_bytes': 5e6,
    },
    'flax': {'skip': 'not installed (flax)'},
  }
  return {
    'machine': {'processor': 'test CPU', 'cpus': 2, 'jax': '0'},
    'rounds': 3,
    'matmul_size': 1000,
    # 2 * 1000**3 FLOP in 0.02 s: 100 GFLOP/s.
    'matmul': {'matmul (XLA)': {'fwd': [0.02, 0.02, 0.03]}},
    'cases': {'tiny': {'case': TINY._asdict(), 'rows': rows}},
  }


def test_bench_report_tables_hold_medians_ratios_and_notes():
  """The markdown shows medians with ranges, ratios, rates and notes."""
  text = bench.report(_fake_results())
  assert '| jlstm | PyTorch nn.LSTM |' in text
  assert '5.0 (4.0-9.0)' in text and '10.0 (10.0-11.0)' in text
  ratio_table = text.split('## Forward + backward time / PyTorch')[1]
  assert '| 0.50 | 1.00 |' in ratio_table.split('##')[0]
  assert '0.50 / 1.25' in text
  assert 'Matmul rate' in text and 'matmul (XLA) 100.' in text
  achieved = bench.flops(TINY, backward=True) / 0.005 / 1e9
  assert f'{achieved:.0f} ({achieved / 100:.0%})' in text
  assert '12 [3]' in text
  assert 'flax: skipped, not installed (flax)' in text
  results = _fake_results()
  results['matmul']['matmul (PyTorch)'] = {'error': 'no answer within 1 s'}
  assert 'matmul (PyTorch): no answer within 1 s' in bench.report(results)


def test_bench_matmul_rate_per_dtype():
  """bfloat16 cases are measured against the bfloat16 matmul rate."""
  results = _fake_results()
  results['matmul']['matmul bf16 (PyTorch)'] = {'fwd': [0.005, 0.005]}
  results['matmul']['matmul bf16 (XLA)'] = {'fwd': [0.04, 0.04]}
  assert bench.matmul_rate(results) == pytest.approx(100)
  assert bench.matmul_rate(results, 'bfloat16') == pytest.approx(400)
  text = bench.report(results)
  assert 'matmul bf16 (PyTorch) 400' in text and 'matmul bf16 (XLA) 50' in text


def test_bench_plot_writes_png(tmp_path):
  """The bar chart is a PNG file."""
  path = tmp_path / 'chart.png'
  bench.plot(_fake_results(), str(path))
  assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_bench_main_bad_arguments_exit_2(capsys, tmp_path):
  """Unknown shapes or libraries, no rounds, bad times or an output folder
  that cannot be made: one line naming the option, exit code 2, and
  nothing written."""
  a_file = tmp_path / 'a-file'
  a_file.write_text('keep')
  for argv, named in (
    (['--shapes', 'huge'], '--shapes'),
    (['--libs', 'torch,tensorflow'], "got 'tensorflow'"),
    (['--rounds', '0'], '--rounds'),
    (['--rounds', 'many'], '--rounds'),
    (['--min-time', '-5'], '--min-time'),
    (['--min-time', 'nan'], '--min-time'),
    (['--timeout', '0'], '--timeout'),
    (['--timeout', '-1'], '--timeout'),
    (['--out', ''], '--out'),
    (['--out', str(a_file)], '--out'),
    (['--out', str(a_file / 'below')], '--out'),
  ):
    assert bench.main(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('jlstm bench: error:')
    assert named in err, (argv, err)
  assert a_file.read_text() == 'keep'
  assert sorted(p.name for p in tmp_path.iterdir()) == ['a-file']


def test_bench_pick_keeps_each_name_once_in_order():
  """A row or case named twice runs once."""
  picked = bench._pick(' torch, jlstm ,torch', bench.LIBRARIES, 'libs')
  assert picked == ['torch', 'jlstm']


def test_bench_report_and_plot_without_the_reference_row(tmp_path):
  """Without PyTorch there are no ratio tables, a note says why, and the
  chart shows times instead of ratios against nothing."""
  results = _fake_results()
  del results['cases']['tiny']['rows']['torch']
  results['rounds'] = 1
  text = bench.report(results)
  assert 'over 1 interleaved round.' in text
  assert 'time / PyTorch' not in text
  assert 'no ratios: the reference row, torch' in text
  bench.plot(results, str(tmp_path / 'chart.png'))
  assert (tmp_path / 'chart.png').read_bytes()[:4] == b'\x89PNG'


@pytest.mark.slow
def test_bench_main_quick_run_writes_table_chart_and_json(tmp_path):
  """A quick run in worker processes writes all three outputs."""
  code = bench.main(
    ['--quick', '--shapes', 'tiny', '--libs', 'jlstm,torch']
    + ['--out', str(tmp_path)]
  )
  assert code == 0
  results = json.loads((tmp_path / 'results.json').read_text())
  row = results['cases']['tiny']['rows']['jlstm']
  assert len(row['fwd']) >= 1 and len(row['fb']) >= 1
  assert np.isfinite(row['compile_fb_s'])
  assert results['matmul']['matmul (XLA)']['fwd']
  table = (tmp_path / 'benchmark.md').read_text()
  assert '| tiny (6, 4, 8, 16) |' in table
  assert (tmp_path / 'benchmark.png').exists()
