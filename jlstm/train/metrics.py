"""``metrics.jsonl``: one JSON object per line, one line per report.

Every record has ``step`` and ``split`` (``'train'``, ``'val'`` or
``'test'``) and the metrics of that report; train records also carry the
learning rate, gradient norm, steps/s, tokens/s and wall time.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any


def _plain(value: Any) -> Any:
  """A JSON-safe Python scalar; NaN and inf become strings."""
  if hasattr(value, 'item'):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


class MetricsWriter:
  """Appends metric records to a JSONL file, flushing every line.

  Args:
    path: the ``metrics.jsonl`` file; created when missing.

  Example:
    >>> import os, tempfile
    >>> from jlstm.train.metrics import MetricsWriter, read_metrics
    >>> path = os.path.join(tempfile.mkdtemp(), 'metrics.jsonl')
    >>> MetricsWriter(path).write({'step': 1, 'split': 'train', 'loss': 2.0})
    >>> read_metrics(path)
    [{'step': 1, 'split': 'train', 'loss': 2.0}]
  """

  def __init__(self, path: str | os.PathLike):
    self.path = os.fspath(path)

  def write(self, record: dict[str, Any]) -> None:
    """Appends one record."""
    line = json.dumps({k: _plain(v) for k, v in record.items()})
    with open(self.path, 'a', encoding='utf-8') as f:
      f.write(line + '\n')

  def truncate_after(self, step: int) -> None:
    """Drops records past ``step``: a resumed run writes them again.

    The file is replaced whole (written aside, then renamed), so a run
    killed meanwhile leaves either the old records or the new ones.
    """
    if not os.path.exists(self.path):
      return
    kept = [r for r in read_metrics(self.path) if r.get('step', 0) <= step]
    partial = self.path + '.partial'
    with open(partial, 'w', encoding='utf-8') as f:
      for record in kept:
        f.write(json.dumps(record) + '\n')
    os.replace(partial, self.path)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
  """All records of a ``metrics.jsonl`` file, in order ([] if missing).

  A last line cut short (the writer was killed mid-line) is ignored.
  """
  if not os.path.exists(path):
    return []
  with open(path, encoding='utf-8', errors='replace') as f:
    lines = [line for line in f if line.strip()]
  records = []
  for i, line in enumerate(lines):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      if i < len(lines) - 1:
        raise
  return records
