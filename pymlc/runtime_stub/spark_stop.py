"""Stopping a batch job: SIGTERM, SIGINT or SIGHUP stop it cleanly, and never tear its swap.

On the first signal the job interrupts every Spark operation of its session
(``SparkSession.interruptAll``, in a thread of its own: never py4j from a signal handler), the
running step fails, and the job drops its staging table and exits ``128 + signal``; the
destination is left exactly as it was. A job told to stop never *starts* its swap; a signal that
arrives once the swap has started (a few metastore statements) lets it finish, so the table is
never left half-swapped. ``pymlc batch`` forwards the signals it gets to the job and, if it is
killed itself, the job gets SIGTERM from the kernel (``PR_SET_PDEATHSIG``); the job's JVM and
its Python workers exit with it (the JVM stops when its driver's pipe closes).

``PYMLC_BATCH_TEST_PAUSE_BEFORE_SWAP=SECONDS`` makes the job wait that long (or until told to
stop) between its complete staging table and its swap: a fault-injection point for tests, which
cannot otherwise hit the few milliseconds in between.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["PAUSE_ENV", "JobStopped", "Stopper"]

PAUSE_ENV = "PYMLC_BATCH_TEST_PAUSE_BEFORE_SWAP"
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class JobStopped(Exception):
    """The job was told to stop (``signum``) before it swapped anything."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class Stopper:
    """Catches the stop signals of a batch job while installed (``with stopper:``).

    Signals are caught only when the job runs in the main thread (as ``batch_job.py`` does);
    elsewhere (a notebook's thread) the stopper only answers "not stopped".
    """

    def __init__(self) -> None:
        self._signum: int | None = None
        self._event = threading.Event()
        self._critical = False
        self._interrupt: Callable[[], Any] | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Stopper:
        if threading.current_thread() is threading.main_thread():
            for signum in _SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def on_stop(self, interrupt: Callable[[], Any]) -> None:
        """What interrupts the job's Spark operations (set once the session exists)."""
        self._interrupt = interrupt
        if self._signum is not None and not self._critical:
            self._start_interrupt()

    @property
    def signum(self) -> int | None:
        """The signal that stopped the job, if any."""
        return self._signum

    def check(self) -> None:
        """Raise ``JobStopped`` if the job was told to stop."""
        if self._signum is not None:
            raise JobStopped(self._signum)

    @contextmanager
    def critical(self) -> Iterator[None]:
        """A step that must not be interrupted once started (the swap)."""
        self._critical = True
        try:
            yield
        finally:
            self._critical = False

    def pause_before_swap(self, say: Callable[[str], None]) -> None:
        """The tests' fault-injection point (``PYMLC_BATCH_TEST_PAUSE_BEFORE_SWAP``)."""
        seconds = float(os.environ.get(PAUSE_ENV) or 0)
        if seconds > 0:
            say(f"pausing {seconds:g} s before the swap ({PAUSE_ENV})")
            self._event.wait(seconds)

    def _handle(self, signum: int, frame: Any) -> None:
        if self._signum is not None:  # already stopping: one interruption is enough
            return
        self._signum = signum
        self._event.set()
        if not self._critical:
            self._start_interrupt()

    def _start_interrupt(self) -> None:
        if self._interrupt is not None:
            threading.Thread(target=self._quietly, args=(self._interrupt,),
                             name="pymlc-stop", daemon=True).start()

    @staticmethod
    def _quietly(interrupt: Callable[[], Any]) -> None:
        try:
            interrupt()
        except Exception:  # the session may be gone already; the job is stopping anyway
            pass
