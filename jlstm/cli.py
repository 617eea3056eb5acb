"""The ``jlstm`` command: ``train``, ``eval``, ``sample`` and ``bench``.

::

  jlstm train --config configs/charlm.py --workdir runs/charlm \\
    [--config.KEY=VALUE ...]
  jlstm eval --workdir runs/charlm [--checkpoint best|latest]
  jlstm sample --workdir runs/charlm --prompt 'The ' --length 500 \\
    [--temperature 0.8] [--seed 0] [--checkpoint best|latest]
  jlstm bench [ARGS ...]

A thin layer over :mod:`jlstm.train`: it parses arguments and calls
:func:`jlstm.train.train_and_evaluate`, :func:`jlstm.train.evaluate_workdir`
or :func:`jlstm.train.sample_workdir`. A bad argument, an unknown or
mistyped config key and a missing or empty data file are reported on one
line of stderr, with exit code 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence

PROG = 'jlstm'
EXIT_USAGE = 2
EXIT_FAILURE = 1


class UsageError(Exception):
  """A command line that cannot run; reported on one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
  """argparse, but errors raise :class:`UsageError` instead of exiting."""

  def error(self, message: str):
    raise UsageError(f'{self.prog}: {message}')


def _build_parser() -> _Parser:
  parser = _Parser(
    prog=PROG,
    description='Train, evaluate and sample jlstm models.',
  )
  commands = parser.add_subparsers(
    dest='command',
    required=True,
    metavar='{train,eval,sample,bench}',
    parser_class=_Parser,
  )

  train = commands.add_parser(
    'train',
    help='train a config; rerun to resume',
    description='Train the experiment of a config file into a workdir. '
    'Override any config key with --config.KEY=VALUE.',
  )
  train.add_argument('--config', required=True, help='config file (.py)')
  train.add_argument('--workdir', required=True, help='output folder')
  train.add_argument(
    '--quiet', action='store_true', help='no summary or progress bar'
  )

  evaluate = commands.add_parser(
    'eval', help='score the val and test splits of a run'
  )
  evaluate.add_argument('--workdir', required=True)
  evaluate.add_argument(
    '--checkpoint', choices=('best', 'latest'), default='best'
  )

  sample = commands.add_parser(
    'sample', help='generate text from a language-model run'
  )
  sample.add_argument('--workdir', required=True)
  sample.add_argument('--prompt', default='', help='text to continue')
  sample.add_argument('--length', type=int, default=500, help='tokens')
  sample.add_argument(
    '--temperature', type=float, default=1.0, help='0 picks the likeliest'
  )
  sample.add_argument('--seed', type=int, default=0)
  sample.add_argument(
    '--checkpoint', choices=('best', 'latest'), default='best'
  )

  commands.add_parser(
    'bench', help='speed benchmarks (see jlstm bench --help)', add_help=False
  )
  return parser


def _config_overrides(extra: list[str]) -> list[tuple[str, str]]:
  """``--config.KEY=VALUE`` or ``--config.KEY VALUE`` pairs, in order."""
  overrides = []
  i = 0
  while i < len(extra):
    arg = extra[i]
    if not arg.startswith('--config.'):
      raise UsageError(f'{PROG} train: unrecognized argument: {arg}')
    key = arg[len('--config.') :]
    if '=' in key:
      key, value = key.split('=', 1)
    elif i + 1 < len(extra):
      i += 1
      value = extra[i]
    else:
      raise UsageError(f'{PROG} train: --config.{key} needs a value')
    overrides.append((key, value))
    i += 1
  return overrides


def _format_scores(scores: dict) -> str:
  return ', '.join(
    f'{name} {value:.4f}'
    for name, value in scores.items()
    if isinstance(value, float)
  )


def _run(args: argparse.Namespace, extra: list[str]) -> int:
  """Runs one parsed command; errors propagate to :func:`main`."""
  from jlstm import train

  if args.command == 'train':
    overrides = _config_overrides(extra)
    config = train.load_config_file(args.config)
    for key, value in overrides:
      train.apply_override(config, key, value)
    train.validate(config)
    train.train_and_evaluate(config, args.workdir, verbose=not args.quiet)
    return 0
  if extra:
    raise UsageError(
      f'{PROG} {args.command}: unrecognized arguments: ' + ' '.join(extra)
    )
  if args.command == 'eval':
    result = train.evaluate_workdir(args.workdir, kind=args.checkpoint)
    print(f'{result["checkpoint"]} checkpoint, step {result["step"]}')
    for split in ('val', 'test'):
      scores = result[split]
      print(f'{split}: ' + (_format_scores(scores) if scores else 'no split'))
    return 0
  if args.command == 'sample':
    if args.length < 0:
      raise UsageError(
        f'{PROG} sample: error: --length must be >= 0; got {args.length}'
      )
    if not math.isfinite(args.temperature) or args.temperature < 0:
      raise UsageError(
        f'{PROG} sample: error: --temperature must be a finite number >= 0 '
        f'(0 picks the likeliest token); got {args.temperature}'
      )
    unknown = _unknown_prompt_tokens(args.workdir, args.prompt)
    if unknown:
      from jlstm.data import UNK

      shown = ', '.join(repr(token) for token in unknown[:10])
      more = f' and {len(unknown) - 10} more' if len(unknown) > 10 else ''
      print(
        f'{PROG} sample: note: the prompt has tokens the model never saw, '
        f'read as {UNK}: {shown}{more}',
        file=sys.stderr,
      )
    print(
      train.sample_workdir(
        args.workdir,
        args.prompt,
        args.length,
        temperature=args.temperature,
        seed=args.seed,
        kind=args.checkpoint,
      )
    )
    return 0
  raise UsageError(f'{PROG}: unknown command {args.command}')


def _unknown_prompt_tokens(workdir: str, prompt: str) -> list[str]:
  """Tokens of ``prompt`` outside the run's vocabulary; [] without one."""
  from jlstm.data import Tokenizer
  from jlstm.train.loop import TOKENIZER_FILE

  path = os.path.join(workdir, TOKENIZER_FILE)
  if not os.path.isfile(path):
    return []  # not a language model: sample_workdir says so
  with open(path, encoding='utf-8') as f:
    return Tokenizer.from_json(f.read()).unknown(prompt)


def _bench(argv: list[str]) -> int:
  try:
    from jlstm import bench
  except ImportError as e:
    raise UsageError(f'{PROG} bench: not available ({e})') from None
  return bench.main(argv)


def _one_line(message: str) -> str:
  return ' '.join(str(message).split())


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point of the ``jlstm`` command and of ``python -m jlstm``.

  Args:
    argv: the arguments after the program name; ``sys.argv[1:]`` when None.

  Returns:
    The exit code: 0 on success, 2 for a bad command line, config or data
    file (one line on stderr, no traceback), 1 when training diverges or
    storage fails (one line too), 128 + the signal's number when SIGINT
    (130) or SIGTERM (143) stopped training after a checkpoint.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  from jlstm.data import DataError
  from jlstm.train import ConfigError
  from jlstm.train.faults import Diverged
  from jlstm.train.signals import Interrupted

  try:
    if argv and argv[0] == 'bench':
      return _bench(argv[1:])
    if argv and argv[0] in ('-h', '--help') or not argv:
      # Asked for, help goes to stdout; in place of a command, to stderr.
      _build_parser().print_help(None if argv else sys.stderr)
      return 0 if argv else EXIT_USAGE
    args, extra = _build_parser().parse_known_args(argv)
    return _run(args, extra)
  except UsageError as e:
    print(_one_line(e), file=sys.stderr)
  except (ConfigError, DataError) as e:
    command = argv[0] if argv else ''
    print(f'{PROG} {command}: error: {_one_line(e)}', file=sys.stderr)
  except (Diverged, OSError) as e:
    # A full disk, a lost mount or a diverged run: the message says what
    # happened and which checkpoint is intact; the stack adds nothing.
    command = argv[0] if argv else ''
    print(f'{PROG} {command}: error: {_one_line(e)}', file=sys.stderr)
    return EXIT_FAILURE
  except Interrupted as e:
    print(f'{PROG}: {_one_line(e)}', file=sys.stderr)
    return e.exit_code
  except KeyboardInterrupt:
    print(f'{PROG}: interrupted', file=sys.stderr)
    return 130
  return EXIT_USAGE


if __name__ == '__main__':
  sys.exit(main())
