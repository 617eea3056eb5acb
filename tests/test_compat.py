"""The dependency floors in pyproject.toml are true: core tests pass on them.

Colab's TPU runtime ships jax 0.7.2, flax 0.11.2, optax 0.2.8 and chex
0.1.90, and installing jlstm there must keep them. This test builds a fresh
virtual environment, installs exactly those floors together with jlstm from
this working tree (so pip must resolve jlstm's own requirements against
them, never upgrading one), and runs the core tests in it.

It needs PyPI (or the mirror the machine's pip configuration names: pip
reads its usual config files and ``PIP_*`` variables) and takes one to
three minutes, most of it downloading wheels.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: Packages whose floor is pinned in the old environment: the JAX stack
#: that Colab's TPU runtime preinstalls. The rest of jlstm's dependencies
#: resolve to whatever versions are compatible with these.
PINNED = ('jax', 'jaxlib', 'flax', 'optax', 'chex')

#: Test files of the functional core and the dtype policy (which also
#: runs a bfloat16 train step); each one present in the tree runs against
#: the floors. The cell variants' tests are left out to keep this test
#: within about four minutes on two cores.
CORE_TESTS = (
  'test_cell.py',
  'test_unroll.py',
  'test_seed.py',
  'test_precision.py',
)

#: Test-only packages the core tests import (chex is pinned above).
TEST_PACKAGES = ('pytest', 'hypothesis')

PIP_TIMEOUT_S = 600
PYTEST_TIMEOUT_S = 600


def floor_pins(pyproject: pathlib.Path) -> dict[str, str]:
  """``{name: version}`` for each :data:`PINNED` ``name>=version`` floor."""
  with open(pyproject, 'rb') as f:
    dependencies = tomllib.load(f)['project']['dependencies']
  pins = {}
  for requirement in dependencies:
    match = re.fullmatch(
      r'([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)', requirement
    )
    if match and match.group(1).lower() in PINNED:
      pins[match.group(1).lower()] = match.group(2)
  return pins


def _run(command: list[str], *, cwd, env, timeout: float) -> str:
  """Runs ``command``; fails the test with its output's tail if it fails."""
  try:
    done = subprocess.run(
      command,
      cwd=cwd,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
      timeout=timeout,
    )
  except subprocess.TimeoutExpired as e:
    tail = (e.stdout or '')[-4000:] if isinstance(e.stdout, str) else ''
    pytest.fail(f'{command[:4]} ran past {timeout}s:\n{tail}')
  if done.returncode:
    pytest.fail(
      f'{" ".join(command[:6])} ... exited {done.returncode}:\n'
      f'{done.stdout[-6000:]}'
    )
  return done.stdout


def _clean_env() -> dict[str, str]:
  """This process's environment, minus what would leak the outer venv."""
  env = dict(os.environ)
  for name in ('PYTHONPATH', 'VIRTUAL_ENV', 'PYTHONHOME', 'XLA_FLAGS'):
    env.pop(name, None)
  env['PYTHONDONTWRITEBYTECODE'] = '1'
  return env


def test_floor_pins_cover_the_jax_stack():
  """pyproject.toml states a >= floor for every package Colab preinstalls."""
  pins = floor_pins(ROOT / 'pyproject.toml')
  assert sorted(pins) == sorted(PINNED)
  assert pins['jax'] == pins['jaxlib']


@pytest.mark.slow
def test_compat_core_tests_pass_on_dependency_floors(tmp_path):
  """A fresh venv with jax/flax/optax/chex at their floors passes core tests."""
  pins = floor_pins(ROOT / 'pyproject.toml')
  env = _clean_env()
  venv = tmp_path / 'venv'
  _run(
    [sys.executable, '-m', 'venv', str(venv)],
    cwd=tmp_path,
    env=env,
    timeout=PIP_TIMEOUT_S,
  )
  python = str(venv / 'bin' / 'python')
  env['VIRTUAL_ENV'] = str(venv)
  env['PATH'] = f'{venv / "bin"}{os.pathsep}{env.get("PATH", "")}'

  # One resolve for everything: jlstm's requirements must accept the pins,
  # and nothing may be upgraded past them.
  _run(
    [
      python,
      '-m',
      'pip',
      'install',
      '--quiet',
      str(ROOT),
      *(f'{name}=={version}' for name, version in pins.items()),
      *TEST_PACKAGES,
    ],
    cwd=tmp_path,
    env=env,
    timeout=PIP_TIMEOUT_S,
  )
  listing = _run(
    [
      python,
      '-c',
      'import importlib.metadata as m, json; print(json.dumps('
      '{d.metadata["Name"].lower().replace("_", "-"): d.version '
      'for d in m.distributions()}))',
    ],
    cwd=tmp_path,
    env=env,
    timeout=60,
  )
  installed = json.loads(listing.strip().splitlines()[-1])
  assert {name: installed.get(name) for name in pins} == pins
  assert 'torch' not in installed
  assert 'jlstm' in installed

  tests = [str(ROOT / 'tests' / t) for t in CORE_TESTS]
  tests = [t for t in tests if os.path.exists(t)]
  # The tests' own folder goes first on sys.path (pytest's prepend mode),
  # not the tree's root, so `import jlstm` finds the installed package.
  out = _run(
    [
      python,
      '-m',
      'pytest',
      '-q',
      '-p',
      'no:cacheprovider',
      f'--rootdir={ROOT}',
      '-c',
      str(ROOT / 'pyproject.toml'),
      *tests,
    ],
    cwd=tmp_path,
    env=env,
    timeout=PYTEST_TIMEOUT_S,
  )
  assert re.search(r'\d+ passed', out), out[-2000:]
  where = _run(
    [python, '-c', 'import jlstm; print(jlstm.__file__)'],
    cwd=tmp_path,
    env=env,
    timeout=60,
  )
  assert str(venv) in where
