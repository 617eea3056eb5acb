"""``python -m jlstm``: the same as the ``jlstm`` command."""

import sys

from jlstm.cli import main

if __name__ == '__main__':
  sys.exit(main())
