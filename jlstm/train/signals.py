"""Stopping a run cleanly: SIGINT and SIGTERM end it at a step boundary.

While :class:`StopRequests` is active, the first SIGINT (Ctrl-C, a
notebook's interrupt button) or SIGTERM (a scheduler's preemption notice)
only records the request; the training loop finishes the step in flight,
writes a checkpoint and raises :class:`Interrupted`. A second signal
raises ``KeyboardInterrupt`` at once, for a user who will not wait; the
checkpoint being written then is discarded whole (writes are atomic), and
the one before it stays.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

#: The signals that ask a run to stop.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
  """A run stopped on a signal after writing its checkpoint.

  A ``KeyboardInterrupt``, so code that already handles Ctrl-C handles it.

  Attributes:
    signum: the signal's number.
    step: the last step taken, and the step of the checkpoint.
    checkpoint_dir: where the checkpoint was written.
  """

  def __init__(self, signum: int, step: int, checkpoint_dir: str):
    self.signum = signum
    self.step = step
    self.checkpoint_dir = checkpoint_dir
    super().__init__(
      f'{signal.Signals(signum).name} received: stopped after step {step} '
      f'and saved a checkpoint in {checkpoint_dir}; run the same command '
      'again to resume'
    )

  @property
  def exit_code(self) -> int:
    """128 + the signal's number, the shell's code for a signalled exit."""
    return 128 + self.signum


class StopRequests:
  """Context manager that turns stop signals into a flag.

  Outside the main thread Python cannot install signal handlers; there the
  signals keep their usual effect and :attr:`signum` stays None.

  Example:
    >>> import os, signal
    >>> from jlstm.train.signals import StopRequests
    >>> with StopRequests() as stop:
    ...   os.kill(os.getpid(), signal.SIGTERM)
    ...   stop.signum == signal.SIGTERM
    True
  """

  def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS):
    self._signals = signals
    self._previous: dict[int, object] = {}
    #: The first stop signal received, or None.
    self.signum: int | None = None

  def _handle(self, signum: int, frame: FrameType | None) -> None:
    del frame
    if self.signum is not None:
      raise KeyboardInterrupt
    self.signum = signum

  def __enter__(self) -> StopRequests:
    if threading.current_thread() is threading.main_thread():
      for signum in self._signals:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous.clear()
