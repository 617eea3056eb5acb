"""The examples in the docstrings run and print what they claim.

Every name a public module lists in ``__all__`` (and every public method
of the classes among them) has a docstring with an example; this file
collects those examples with :mod:`doctest` and runs each one as a test,
from the repository root so that paths such as ``configs/charlm.py``
resolve.
"""

import doctest
import importlib
import inspect
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Modules whose ``__all__`` is public API. Flax adapters are imported
#: here too, since the test environment has Flax.
PUBLIC_MODULES = (
  'jlstm',
  'jlstm.interop',
  'jlstm.data',
  'jlstm.models',
  'jlstm.train',
  'jlstm.train.config',
  'jlstm.adapters.linen',
  'jlstm.adapters.nnx',
)

#: Exported names that are constants or exceptions: no example to run.
NO_EXAMPLE = (int, float, str, tuple, dict, frozenset)


def _public_objects():
  """(qualified name, object) of every documented public function/class."""
  seen = set()
  for module_name in PUBLIC_MODULES:
    module = importlib.import_module(module_name)
    names = getattr(module, '__all__', None)
    if names is None:
      # No __all__: the public names the module defines itself.
      names = [
        n
        for n, obj in vars(module).items()
        if not n.startswith('_')
        and getattr(obj, '__module__', None) == module_name
      ]
    for name in names:
      obj = getattr(module, name)
      if isinstance(obj, NO_EXAMPLE) or inspect.ismodule(obj):
        continue
      if isinstance(obj, type) and issubclass(obj, BaseException):
        continue
      if id(obj) in seen:
        continue
      seen.add(id(obj))
      yield f'{module_name}.{name}', obj


def _examples():
  finder = doctest.DocTestFinder(exclude_empty=True)
  tests = {}
  for module_name in {m for m in PUBLIC_MODULES} | {
    obj.__module__ for _, obj in _public_objects()
  }:
    module = importlib.import_module(module_name)
    for test in finder.find(module, module_name):
      if test.examples:
        tests[test.name] = test
  return [tests[name] for name in sorted(tests)]


EXAMPLES = _examples()


def test_docs_every_public_name_has_an_example():
  """Each exported function and class shows a runnable example."""
  missing = []
  for name, obj in _public_objects():
    doc = inspect.getdoc(obj) or ''
    if '>>>' not in doc:
      missing.append(name)
  assert not missing, f'no docstring example: {missing}'


@pytest.mark.parametrize('example', EXAMPLES, ids=lambda t: t.name)
def test_docs_example_runs(example, monkeypatch):
  """The docstring's example gives the output it shows."""
  monkeypatch.chdir(ROOT)
  runner = doctest.DocTestRunner(
    optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
  )
  failures = []
  runner.run(example, out=failures.append)
  assert runner.failures == 0, ''.join(failures)
