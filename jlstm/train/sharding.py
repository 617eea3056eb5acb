"""Device placement: one mesh with a ``data`` axis, batches split over it.

Parameters and optimizer state are replicated on every device; batches and
the carried LSTM state are split along their batch axis. XLA inserts the
gradient all-reduce itself, so the train step is an ordinary ``jax.jit``
and the same code runs on one CPU, the 8 cores of a TPU board or many
hosts.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

#: The mesh axis that batches are split over.
DATA_AXIS = 'data'


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over ``devices`` (all devices when None), axis ``'data'``.

  Example:
    >>> from jlstm.train import sharding
    >>> sharding.make_mesh().axis_names
    ('data',)
  """
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh(
    (len(devices),),
    (DATA_AXIS,),
    axis_types=(jax.sharding.AxisType.Auto,),
    devices=devices,
  )


def batch_axis(ndim: int) -> int:
  """The batch axis of a batch array: 0 for [B], 1 for time-major [T, B, ...].

  Example:
    >>> from jlstm.train import sharding
    >>> sharding.batch_axis(1), sharding.batch_axis(3)
    (0, 1)
  """
  return 0 if ndim == 1 else 1


def batch_spec(ndim: int) -> P:
  """The PartitionSpec that splits an array's batch axis over ``data``."""
  spec = [None] * ndim
  spec[batch_axis(ndim)] = DATA_AXIS
  return P(*spec)


def process_rows(mesh: Mesh, batch_size: int) -> slice:
  """The rows of a global batch that this process's devices hold.

  On one host that is every row; with several processes each gets the
  contiguous block its devices cover on the ``data`` axis.

  Args:
    mesh: from :func:`make_mesh`.
    batch_size: B, rows of the global batch.

  Returns:
    A ``slice`` of the batch axis.

  Example:
    >>> from jlstm.train import sharding
    >>> sharding.process_rows(sharding.make_mesh(), 8)
    slice(0, 8, None)
  """
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  index = sharding.addressable_devices_indices_map((batch_size,))
  starts = [rows[0].indices(batch_size) for rows in index.values()]
  start = min(s for s, _, _ in starts)
  stop = max(e for _, e, _ in starts)
  covered = sum(e - s for s, e, _ in set(starts))
  if covered != stop - start:
    raise ValueError(
      f'the devices of process {jax.process_index()} hold rows that are not '
      f'one contiguous block of the batch: {sorted(set(starts))}'
    )
  return slice(start, stop)


def place_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, Any]:
  """Puts a global host batch on the mesh, split along its batch axis.

  Every process holds the same global batch (built from the run's seed)
  and feeds only its own rows (:func:`process_rows`) through
  ``jax.make_array_from_process_local_data``; on one host that is the whole
  batch.

  Args:
    batch: dict of NumPy arrays, [B] or time-major [T, B, ...], the
      global batch.
    mesh: from :func:`make_mesh`.

  Returns:
    The same dict of global ``jax.Array``.

  Example:
    >>> import numpy as np
    >>> from jlstm import train
    >>> batch = {
    ...   'inputs': np.zeros((5, 8, 2), np.float32),
    ...   'targets': np.zeros((8,), np.float32),
    ... }
    >>> placed = train.place_batch(batch, train.make_mesh())
    >>> placed['inputs'].shape, tuple(placed['inputs'].sharding.spec)
    ((5, 8, 2), (None, 'data', None))
    >>> tuple(placed['targets'].sharding.spec)
    ('data',)
  """
  placed = {}
  for name, value in batch.items():
    axis = batch_axis(value.ndim)
    rows = process_rows(mesh, value.shape[axis])
    local = value[(slice(None),) * axis + (rows,)]
    placed[name] = jax.make_array_from_process_local_data(
      NamedSharding(mesh, batch_spec(value.ndim)), local, value.shape
    )
  return placed


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Puts every array of ``tree`` whole on every device of the mesh."""
  return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_rows(tree: Any, mesh: Mesh) -> Any:
  """Splits every [B, ...] array of ``tree`` (the carried state) by rows."""
  return jax.device_put(tree, NamedSharding(mesh, P(DATA_AXIS)))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  """The sharding of parameters, optimizer state and metrics: whole."""
  return NamedSharding(mesh, P())


def rows_sharding(mesh: Mesh) -> NamedSharding:
  """The sharding of the carried state's [B, ...] arrays: split by rows."""
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """Raises ValueError unless the batch splits evenly over the mesh."""
  devices = mesh.devices.size
  if batch_size % devices:
    lower = batch_size // devices * devices
    near = [n for n in (lower, lower + devices) if n > 0]
    raise ValueError(
      f'batch_size={batch_size} does not split over {devices} devices; use '
      f'a multiple of {devices}, e.g. batch_size='
      + ' or '.join(str(n) for n in near)
    )
