"""Experiment configs: loading config files, overriding keys, validation.

A config file is a Python file with a ``get_config()`` that returns an
``ml_collections.ConfigDict`` (see ``configs/``). Overrides name a dotted
key and give its value as text; the text is parsed as the type the key
already has, so a misspelt key or a value of the wrong type fails at once
with a :class:`ConfigError` that names the key.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import os
from collections.abc import Iterator
from typing import Any

import ml_collections
from ml_collections import config_dict

from jlstm.train.faults import NONFINITE_POLICIES

#: Tasks that :func:`jlstm.train.train_and_evaluate` runs.
TASKS = ('lm', 'adding', 'copy')
OPTIMIZERS = ('adam', 'adamw', 'sgd', 'momentum')
SCHEDULES = ('constant', 'warmup_cosine', 'step')
DTYPES = ('float32', 'bfloat16', 'float16')

#: Keys every config has, with their types.
REQUIRED = {
  'task': str,
  'seed': int,
  'batch_size': int,
  'seq_len': int,
  'num_train_steps': int,
  'learning_rate': float,
  'eval_every': int,
  'checkpoint_every': int,
  'log_every': int,
  'dtype': str,
  'model.hidden_size': int,
  'model.num_layers': int,
  'optimizer.name': str,
  'optimizer.grad_clip': float,
  'schedule.name': str,
}


class ConfigError(ValueError):
  """A config that cannot run: unknown key, wrong type or bad value."""


def _group(
  group: str, defaults: dict[str, Any], values: dict[str, Any]
) -> ml_collections.ConfigDict:
  unknown = sorted(set(values) - set(defaults))
  if unknown:
    raise TypeError(
      f'{group} has no key {unknown[0]!r}; its keys are {", ".join(defaults)}'
    )
  return ml_collections.ConfigDict({**defaults, **values})


def model_group(**values: Any) -> ml_collections.ConfigDict:
  """The ``model`` group of a config: every key with its default.

  The keys, their defaults, and what they set (see
  :class:`jlstm.models.SequenceModel` and :func:`jlstm.unroll_stack`):

  * ``hidden_size`` 256, ``num_layers`` 1; ``embed_size`` 0 (token inputs
    only: the width of an embedding; 0 feeds tokens one-hot).
  * ``init`` ``'uniform'`` (one of ``jlstm.INIT_SCHEMES``), ``init_scale``
    None (the scheme's default), ``forget_bias`` None (the scheme's choice).
  * ``dropout`` 0: on the embeddings, between layers and before the
    readout.
  * Cell variants: ``bidirectional`` False (not for language models),
    ``proj_size`` 0 (LSTMP; 0 for none), ``peepholes`` False,
    ``layer_norm`` False, ``cell_clip`` 0 and ``proj_clip`` 0 (0 for
    none), ``coupled`` False (CIFG).
  * Regularisers inside the recurrence: ``input_dropout`` and
    ``recurrent_dropout`` 0 (variational: one mask per sequence),
    ``zoneout_cell`` and ``zoneout_hidden`` 0.
  * ``unroll`` 1 (time steps per scan iteration), ``remat`` False
    (recompute steps in the backward pass, for long sequences).

  The plain cell with the default run-time options trains through the
  fused fast path; any variant runs the generic scan.

  Args:
    **values: keys to set, e.g. ``hidden_size=128``.

  Returns:
    A ConfigDict with every key.

  Raises:
    TypeError: a key that is not one of the above.

  Example:
    >>> from jlstm.train import config as config_lib
    >>> model = config_lib.model_group(hidden_size=128, layer_norm=True)
    >>> model.hidden_size, model.layer_norm, model.proj_size
    (128, True, 0)
  """
  defaults = {
    'hidden_size': 256,
    'num_layers': 1,
    'embed_size': 0,
    'init': 'uniform',
    'init_scale': config_dict.placeholder(float),
    'forget_bias': config_dict.placeholder(float),
    'dropout': 0.0,
    'bidirectional': False,
    'proj_size': 0,
    'peepholes': False,
    'layer_norm': False,
    'cell_clip': 0.0,
    'proj_clip': 0.0,
    'coupled': False,
    'input_dropout': 0.0,
    'recurrent_dropout': 0.0,
    'zoneout_cell': 0.0,
    'zoneout_hidden': 0.0,
    'unroll': 1,
    'remat': False,
  }
  return _group('model', defaults, values)


def text_data_group(**values: Any) -> ml_collections.ConfigDict:
  """The ``data`` group of a language-model config: every key.

  ``tokenizer`` ``'char'`` or ``'word'`` (whitespace words, line ends as an
  end-of-sentence token); ``path`` ``''`` (a UTF-8 file, cut into
  contiguous train, validation and test parts by ``val_fraction`` 0.1 and
  ``test_fraction`` 0; ``''`` is the built-in ``pydoc_data`` text); or
  ``train_path``, ``val_path`` and an optional ``test_path`` for corpora
  that come pre-split; ``vocab_size`` 0 (the most frequent tokens plus an
  unknown token; 0 keeps every token).

  Example:
    >>> from jlstm.train import config as config_lib
    >>> config_lib.text_data_group(tokenizer='word').val_fraction
    0.1
  """
  defaults = {
    'tokenizer': 'char',
    'path': '',
    'train_path': '',
    'val_path': '',
    'test_path': '',
    'val_fraction': 0.1,
    'test_fraction': 0.0,
    'vocab_size': 0,
  }
  return _group('data', defaults, values)


def optimizer_group(**values: Any) -> ml_collections.ConfigDict:
  """The ``optimizer`` group of a config: every key with its default.

  ``name`` ``'adam'`` (one of ``'adam'``, ``'adamw'``, ``'sgd'``,
  ``'momentum'``); Adam's ``b1`` 0.9, ``b2`` 0.999, ``eps`` 1e-8;
  ``weight_decay`` 0 (adamw only); ``momentum`` 0.9 and ``nesterov``
  False (momentum only); ``grad_clip`` 1.0 (global-norm clipping; 0 turns
  it off).

  Example:
    >>> from jlstm.train import config as config_lib
    >>> config_lib.optimizer_group(name='sgd').grad_clip
    1.0
  """
  defaults = {
    'name': 'adam',
    'b1': 0.9,
    'b2': 0.999,
    'eps': 1e-8,
    'weight_decay': 0.0,
    'momentum': 0.9,
    'nesterov': False,
    'grad_clip': 1.0,
  }
  return _group('optimizer', defaults, values)


def schedule_group(**values: Any) -> ml_collections.ConfigDict:
  """The ``schedule`` group of a config: every key with its default.

  ``name`` ``'warmup_cosine'`` (one of ``'constant'``,
  ``'warmup_cosine'``, ``'step'``); ``warmup_steps`` 100 (linear warmup,
  for ``'constant'`` too); ``end_factor`` 0.05 (final rate / peak rate of
  ``'warmup_cosine'``); ``decay_factor`` 0.5 and ``decay_after`` 4 (the
  ``'step'`` schedule multiplies the rate by ``decay_factor`` at the start
  of every epoch after the first ``decay_after``).

  Example:
    >>> from jlstm.train import config as config_lib
    >>> config_lib.schedule_group(name='step').decay_factor
    0.5
  """
  defaults = {
    'name': 'warmup_cosine',
    'warmup_steps': 100,
    'end_factor': 0.05,
    'decay_factor': 0.5,
    'decay_after': 4,
  }
  return _group('schedule', defaults, values)


def load_config_file(path: str | os.PathLike) -> ml_collections.ConfigDict:
  """Runs a config file's ``get_config()`` and returns its ConfigDict.

  Args:
    path: a Python file defining ``get_config()``.

  Returns:
    The ConfigDict, with its keys locked (new keys cannot be added).

  Raises:
    ConfigError: the file is missing, fails to import, or has no
      ``get_config`` returning a ConfigDict.

  Example:
    >>> from jlstm import train
    >>> config = train.load_config_file('configs/adding.py')
    >>> config.task, config.model.hidden_size, config.is_locked
    ('adding', 128, True)
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ConfigError(f'config file not found: {path}')
  spec = importlib.util.spec_from_file_location('_jlstm_config', path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # noqa: BLE001 - any error in user code is reported
    raise ConfigError(
      f'config file {path} failed to load: {type(e).__name__}: {e}'
    ) from None
  get_config = getattr(module, 'get_config', None)
  if get_config is None:
    raise ConfigError(f'config file {path} defines no get_config()')
  config = get_config()
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(
      f'get_config() in {path} must return an ml_collections.ConfigDict; '
      f'got {type(config).__name__}'
    )
  config.lock()
  return config


def _parse(key: str, text: str, kind: type | None) -> Any:
  """Parses override text as ``kind``, the type the key already has."""
  if kind is bool:
    lowered = text.strip().lower()
    if lowered in ('true', '1', 'yes'):
      return True
    if lowered in ('false', '0', 'no'):
      return False
    raise ConfigError(f'--config.{key} expects a bool; got {text!r}')
  if kind is int:
    try:
      return int(text)
    except ValueError:
      raise ConfigError(
        f'--config.{key} expects an int; got {text!r}'
      ) from None
  if kind is float:
    try:
      return float(text)
    except ValueError:
      raise ConfigError(
        f'--config.{key} expects a float; got {text!r}'
      ) from None
  if kind is str:
    return text
  # Tuples, lists and untyped (None) fields take a Python literal; a bare
  # word that is no literal is kept as a string.
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    if kind in (tuple, list):
      raise ConfigError(
        f'--config.{key} expects a {kind.__name__} literal; got {text!r}'
      ) from None
    return text


def apply_override(
  config: ml_collections.ConfigDict, key: str, text: str
) -> None:
  """Sets ``config.<key>`` from the text of a command-line override.

  Args:
    config: the ConfigDict to change in place.
    key: dotted key, e.g. ``'model.hidden_size'``.
    text: the value as written on the command line, e.g. ``'512'``.

  Raises:
    ConfigError: the key does not exist or the value does not parse as the
      key's type.

  Example:
    >>> import ml_collections
    >>> from jlstm.train import config as config_lib
    >>> c = ml_collections.ConfigDict({'model': {'hidden_size': 8}})
    >>> config_lib.apply_override(c, 'model.hidden_size', '512')
    >>> c.model.hidden_size
    512
  """
  *parents, leaf = key.split('.')
  node = config
  for depth, part in enumerate(parents):
    if part not in node or not isinstance(
      node[part], ml_collections.ConfigDict
    ):
      where = '.'.join(parents[: depth + 1])
      raise ConfigError(f'unknown config key: {where} (in --config.{key})')
    node = node[part]
  if not leaf or leaf not in node:
    known = ', '.join(sorted(node.keys()))
    raise ConfigError(f'unknown config key: {key} (known keys here: {known})')
  if isinstance(node[leaf], ml_collections.ConfigDict):
    raise ConfigError(
      f'config key {key} is a group; set one of its keys instead'
    )
  value = _parse(key, text, node.get_type(leaf))
  try:
    node[leaf] = value
  except TypeError as e:
    raise ConfigError(f'--config.{key}: {e}') from None


def _get(config: ml_collections.ConfigDict, key: str) -> Any:
  node = config
  for part in key.split('.'):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      raise ConfigError(f'config is missing the key {key}')
    node = node[part]
  return node


def _leaves(config: Any, prefix: str = '') -> Iterator[tuple[str, Any]]:
  """(dotted key, value) of every non-group entry of ``config``."""
  for name, value in config.items():
    key = f'{prefix}{name}'
    if isinstance(value, ml_collections.ConfigDict):
      yield from _leaves(value, key + '.')
    else:
      yield key, value


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the keys every config has, and the values they may take.

  Raises:
    ConfigError: naming the first key that is missing or out of range.

  Example:
    >>> from jlstm import train
    >>> config = train.load_config_file('configs/adding.py')
    >>> train.validate(config)  # returns None: the config can run
    >>> config.batch_size = 0
    >>> train.validate(config)
    Traceback (most recent call last):
    ...
    jlstm.train.config.ConfigError: config key batch_size must be positive...
  """
  for key, kind in REQUIRED.items():
    value = _get(config, key)
    ok = isinstance(value, kind) and not (
      kind is int and isinstance(value, bool)
    )
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
      ok = True
    if not ok:
      raise ConfigError(
        f'config key {key} must be a {kind.__name__}; got {value!r}'
      )
  for key, value in _leaves(config):
    if isinstance(value, float) and not math.isfinite(value):
      raise ConfigError(
        f'config key {key} must be a finite number; got {value}'
      )
  for key in (
    'batch_size',
    'seq_len',
    'num_train_steps',
    'eval_every',
    'checkpoint_every',
    'log_every',
    'model.hidden_size',
    'model.num_layers',
  ):
    if _get(config, key) < 1:
      raise ConfigError(
        f'config key {key} must be positive; got {_get(config, key)}'
      )
  if config.learning_rate <= 0:
    raise ConfigError(
      f'config key learning_rate must be positive; got {config.learning_rate}'
    )
  if config.optimizer.grad_clip < 0:
    raise ConfigError(
      'config key optimizer.grad_clip must be >= 0 (0 turns clipping off); '
      f'got {config.optimizer.grad_clip}'
    )
  policy = config.get('on_nonfinite', 'stop')
  if policy not in NONFINITE_POLICIES:
    raise ConfigError(
      f'config key on_nonfinite must be one of {NONFINITE_POLICIES}; got '
      f'{policy!r}'
    )
  choices = {
    'task': TASKS,
    'optimizer.name': OPTIMIZERS,
    'schedule.name': SCHEDULES,
    'dtype': DTYPES,
  }
  for key, allowed in choices.items():
    if _get(config, key) not in allowed:
      raise ConfigError(
        f'config key {key} must be one of {allowed}; got {_get(config, key)!r}'
      )


def to_json(config: ml_collections.ConfigDict) -> str:
  """The config as indented JSON, keys sorted.

  Example:
    >>> import ml_collections
    >>> from jlstm.train import config as config_lib
    >>> c = ml_collections.ConfigDict({'seed': 0, 'model': {'hidden_size': 8}})
    >>> print(config_lib.to_json(c))
    {
      "model": {
        "hidden_size": 8
      },
      "seed": 0
    }
  """
  return config.to_json_best_effort(indent=2, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
  """Rebuilds a ConfigDict from :func:`to_json`'s output.

  Example:
    >>> from jlstm import train
    >>> from jlstm.train import config as config_lib
    >>> config = train.load_config_file('configs/copy.py')
    >>> copy = config_lib.from_json(config_lib.to_json(config))
    >>> copy.to_dict() == config.to_dict(), copy.data.num_symbols
    (True, 8)
  """
  return ml_collections.ConfigDict(json.loads(text))
