"""The loss-curve PNG of a run, drawn from its metric records."""

from __future__ import annotations

import os
from typing import Any

#: Preferred y-axis metric, first match wins.
_CURVE_KEYS = (
  ('bpc', 'bits per character'),
  ('bits_per_token', 'bits per token'),
  ('mse', 'mean squared error'),
  ('loss', 'loss'),
)


def plot_curves(
  records: list[dict[str, Any]], path: str | os.PathLike, *, title: str = ''
) -> None:
  """Draws the train and validation curves of ``records`` into a PNG.

  Uses matplotlib's Agg canvas directly, so it works without a display and
  never changes the global matplotlib backend.

  Args:
    records: metric records as in ``metrics.jsonl``.
    path: the PNG to write.
    title: the figure's title.

  Example:
    >>> import os, tempfile
    >>> from jlstm.train.plotting import plot_curves
    >>> records = [
    ...   {'step': s, 'split': 'train', 'bpc': 5.0 / s} for s in (1, 2, 3)
    ... ]
    >>> path = os.path.join(tempfile.mkdtemp(), 'curves.png')
    >>> plot_curves(records, path)
    >>> os.path.getsize(path) > 0
    True
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  key, label = next(
    (
      (k, lbl)
      for k, lbl in _CURVE_KEYS
      if any(k in r for r in records if r.get('split') in ('train', 'val'))
    ),
    ('loss', 'loss'),
  )
  figure = Figure(figsize=(7, 4.5), dpi=100)
  FigureCanvasAgg(figure)
  axes = figure.add_subplot()
  for split, style in (('train', '-'), ('val', 'o-')):
    points = [
      (r['step'], r[key])
      for r in records
      if r.get('split') == split and isinstance(r.get(key), int | float)
    ]
    if points:
      steps, values = zip(*points, strict=True)
      axes.plot(steps, values, style, label=split, markersize=4)
  baseline = next(
    (r.get(f'baseline_{key}') for r in records if f'baseline_{key}' in r),
    None,
  )
  if baseline is not None:
    axes.axhline(baseline, color='grey', linestyle='--', label='baseline')
  axes.set_xlabel('step')
  axes.set_ylabel(label)
  axes.grid(True, alpha=0.3)
  if title:
    axes.set_title(title)
  axes.legend()
  figure.tight_layout()
  figure.savefig(os.fspath(path))
