"""Times jlstm against PyTorch, Equinox, Flax and Haiku LSTMs.

The same benchmark as ``jlstm bench``; see :mod:`jlstm.bench` for what it
measures and how. From the repository root::

  python experiments/benchmark.py --out bench            # about 8 minutes
  python experiments/benchmark.py --quick --out /tmp/b   # toy sizes, 2 minutes
  python experiments/benchmark.py --shapes seed,L --libs jlstm,torch

It writes ``benchmark.md`` (the tables), ``benchmark.png`` (the bar chart)
and ``results.json`` (every timing) into the ``--out`` folder.
"""

import sys

from jlstm import bench

if __name__ == '__main__':
  sys.exit(bench.main(sys.argv[1:]))
