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


def place_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, Any]:
  """Puts a host batch on the mesh, each array split along its batch axis.

  Every process passes its own slice of the global batch (on one host, the
  whole batch).

  Args:
    batch: dict of NumPy arrays, [B] or time-major [T, B, ...].
    mesh: from :func:`make_mesh`.

  Returns:
    The same dict of global ``jax.Array``.
  """
  return {
    name: jax.make_array_from_process_local_data(
      NamedSharding(mesh, batch_spec(value.ndim)), value
    )
    for name, value in batch.items()
  }


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Puts every array of ``tree`` whole on every device of the mesh."""
  return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_rows(tree: Any, mesh: Mesh) -> Any:
  """Splits every [B, ...] array of ``tree`` (the carried state) by rows."""
  return jax.device_put(tree, NamedSharding(mesh, P(DATA_AXIS)))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """Raises ValueError unless the batch splits evenly over the mesh."""
  devices = mesh.devices.size
  if batch_size % devices:
    raise ValueError(
      f'batch_size={batch_size} must be a multiple of the number of '
      f'devices, {devices}'
    )
