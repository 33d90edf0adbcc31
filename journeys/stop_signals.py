"""Ctrl-C and SIGTERM stop a command with one line, wherever in Beam they land.

The handler records the signal and raises ``Stopped`` in the main thread. Beam re-raises an
exception from inside a running step as a RuntimeError that names the step, so the command asks
``take()`` which signal came rather than trusting the type of the exception that reaches it.

Python drops an exception raised inside a ``__del__`` or a weakref callback (it prints "Exception
ignored in ..." and goes on), and a signal can land there: a library's finaliser run by the garbage
collector. The run would then carry on and finish as if never told to stop. So a dropped
``Stopped`` is not printed but delivered again (``_thread.interrupt_main``, from a short-lived
thread: called from the hook itself, the handler would run inside the hook and be dropped again).
"""

from __future__ import annotations

import _thread
import logging
import signal
import sys
import threading
import time

_received: list[int] = []
_previous: dict[int, object] = {}  # signal -> its handler before install
_previous_unraisable_hook = sys.unraisablehook
_taken = threading.Event()  # the command has caught the stop: later signals are only recorded
_delivering = threading.Lock()  # a delivery again and take() never cross


class Stopped(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def install() -> None:
    """Handle SIGTERM, and SIGINT unless the process was started ignoring it (a shell's background
    job). Only the main thread can: elsewhere (a command run from a test's thread) nothing changes."""
    global _previous_unraisable_hook
    _received.clear()
    _taken.clear()
    if threading.current_thread() is not threading.main_thread():
        return
    _previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, _on_signal)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        _previous[signal.SIGINT] = signal.signal(signal.SIGINT, _on_signal)
    _previous_unraisable_hook = sys.unraisablehook
    sys.unraisablehook = _deliver_dropped_stop_again


def take() -> int | None:
    """The first signal that arrived since ``install``, if any. From now on the command is ending:
    a signal is recorded but raises nothing, so the line the command prints is not cut short."""
    with _delivering:
        _taken.set()
    return _received[0] if _received else None


def restore() -> None:
    """Put back the handlers, logging and hooks as they were before ``install``."""
    take()
    for signum, previous in _previous.items():
        signal.signal(signum, previous)
    if _previous:
        sys.unraisablehook = _previous_unraisable_hook
    _previous.clear()
    if _received:
        logging.disable(logging.NOTSET)
        threading.excepthook = threading.__excepthook__


def _on_signal(signum, frame):
    if signum not in _received:
        _received.append(signum)
    if _taken.is_set():
        return
    # What Beam logs or its threads print while it unwinds (each running step's error, a worker
    # that went away, with tracebacks) says nothing the user needs: the one line the command prints does.
    logging.disable(logging.CRITICAL)
    threading.excepthook = lambda _args: None
    raise Stopped(signum)


def _deliver_dropped_stop_again(unraisable) -> None:
    if not isinstance(unraisable.exc_value, Stopped):
        _previous_unraisable_hook(unraisable)
        return
    _thread.start_new_thread(_deliver_again, (unraisable.exc_value.signum,))


def _deliver_again(signum: int) -> None:
    time.sleep(0.05)  # the main thread is out of the hook by then, back in the code it was running
    with _delivering:
        if not _taken.is_set():
            _thread.interrupt_main(signum)
