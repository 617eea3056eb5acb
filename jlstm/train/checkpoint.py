"""Checkpoints with orbax: the latest train state, and the best by validation.

A run's ``checkpoints/`` folder holds two orbax checkpoint managers:

* ``latest/``: the most recent state, written every ``checkpoint_every``
  steps and at the end, read to resume;
* ``best/``: the state with the lowest validation loss so far, read by
  ``jlstm eval`` and ``jlstm sample``.

Each checkpoint stores the :class:`~jlstm.train.state.TrainState` pytree
and a JSON dict of run metadata (the data stream's position, the best
validation loss, the wall time so far), so a resumed run continues exactly
where the saved one stood. All orbax use lives in this module.

A checkpoint is written into a temporary folder and renamed into place
once complete, so a run killed at any moment (SIGKILL, power loss aside)
leaves the previous checkpoint loadable; the older one is deleted only
after the newer one is in place. Leftover temporary folders are removed
when the next run opens the folder.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

#: The two kinds of checkpoint a run keeps.
KINDS = ('latest', 'best')


class CheckpointError(OSError):
  """A checkpoint could not be written; the earlier one is intact."""


def _shapes(tree: Any) -> dict[str, tuple[int, ...] | None]:
  """Leaf path (``params.lstm.0.0.w_h``) to shape, for saved and live trees
  alike: attribute, key and index steps all print as plain names."""
  shapes = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    name = '.'.join(
      str(getattr(k, 'name', getattr(k, 'key', getattr(k, 'idx', k))))
      for k in path
    )
    shape = getattr(leaf, 'shape', None)
    shapes[name] = None if shape is None else tuple(shape)
  return shapes


def _difference(saved: Any, target: Any) -> str | None:
  """The first leaf that differs between a saved tree and ``target``."""
  have, want = _shapes(saved), _shapes(target)
  for name in sorted(set(have) | set(want)):
    if name not in have:
      return f'{name} is not in the checkpoint'
    if name not in want:
      return f'{name} is in the checkpoint but not in this config'
    if have[name] != want[name]:
      return (
        f'{name} is {have[name]} in the checkpoint, {want[name]} for this '
        'config'
      )
  return None


class Checkpointer:
  """Saves and restores a run's train state and metadata.

  Args:
    directory: the run's checkpoint folder (created if missing).

  Example:
    >>> import tempfile, jax.numpy as jnp
    >>> from jlstm.train.checkpoint import Checkpointer
    >>> ckpt = Checkpointer(tempfile.mkdtemp())
    >>> ckpt.save('latest', 3, {'w': jnp.ones(2)}, {'epoch': 0})
    >>> state, meta = ckpt.restore('latest', {'w': jnp.zeros(2)})
    >>> state['w'], meta
    (Array([1., 1.], dtype=float32), {'epoch': 0})
    >>> ckpt.close()
  """

  def __init__(self, directory: str | os.PathLike):
    self.directory = os.path.abspath(os.fspath(directory))
    # Synchronous saves: the train step donates the state it is given, so
    # its buffers must not be read after the next step starts.
    options = ocp.CheckpointManagerOptions(
      max_to_keep=1,
      create=True,
      enable_async_checkpointing=False,
      cleanup_tmp_directories=True,
    )
    # Naming the handlers lets the saved shapes be read before a restore.
    self._managers = {
      kind: ocp.CheckpointManager(
        os.path.join(self.directory, kind),
        options=options,
        item_handlers={
          'state': ocp.StandardCheckpointHandler(),
          'meta': ocp.JsonCheckpointHandler(),
        },
      )
      for kind in KINDS
    }

  def _manager(self, kind: str) -> ocp.CheckpointManager:
    if kind not in KINDS:
      raise ValueError(f'kind must be one of {KINDS}; got {kind!r}')
    return self._managers[kind]

  def step(self, kind: str = 'latest') -> int | None:
    """The step of the ``kind`` checkpoint, or None when there is none."""
    return self._manager(kind).latest_step()

  def save(
    self, kind: str, step: int, state: Any, meta: dict[str, Any]
  ) -> None:
    """Writes ``state`` and ``meta`` as the ``kind`` checkpoint of ``step``.

    The previous checkpoint of that kind is deleted once the new one is
    complete. Saving a step that already exists does nothing.

    Raises:
      CheckpointError: the write failed (a full disk, no permission, ...);
        the previous checkpoint is left as it was.
    """
    manager = self._manager(kind)
    previous = manager.latest_step()
    if previous == step:
      return
    try:
      manager.save(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
        ),
      )
      manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001 - any failure of the write
      kept = (
        f'the checkpoint of step {previous} is intact'
        if previous is not None
        else 'there is no earlier checkpoint'
      )
      raise CheckpointError(
        f'could not write the {kind} checkpoint of step {step} to '
        f'{os.path.join(self.directory, kind)}: {type(e).__name__}: {e}; '
        f'{kept}'
      ) from e

  def restore(
    self, kind: str, target: Any, step: int | None = None
  ) -> tuple[Any, dict[str, Any]]:
    """Reads the ``kind`` checkpoint into the structure of ``target``.

    Args:
      kind: ``'latest'`` or ``'best'``.
      target: a pytree like the saved state; its arrays give the shapes,
        dtypes and shardings to restore to.
      step: the step to read; the newest when None.

    Returns:
      ``(state, meta)``.

    Raises:
      FileNotFoundError: no checkpoint of that kind.
      ValueError: the checkpoint does not match ``target``.
    """
    manager = self._manager(kind)
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(
        f'no {kind} checkpoint in {os.path.join(self.directory, kind)}'
      )
    # Compare shapes first: a restore that fails halfway leaves orbax
    # reads pending, which complain on stderr at exit.
    difference = _difference(manager.item_metadata(step)['state'], target)
    if difference:
      raise ValueError(
        f'the {kind} checkpoint at step {step} in {self.directory} does not '
        f'match this config: {difference}'
      )
    try:
      restored = manager.restore(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
        ),
      )
    except (ValueError, KeyError, TypeError) as e:
      raise ValueError(
        f'the {kind} checkpoint at step {step} in {self.directory} does not '
        f'match this config (different model or optimizer?): {e}'
      ) from None
    return restored.state, dict(restored.meta)

  def close(self) -> None:
    """Waits for pending writes and releases the managers."""
    for manager in self._managers.values():
      manager.wait_until_finished()
      manager.close()
