"""Per-process limits on work that can hold a web thread or a lot of memory for long.

A web process has a handful of threads (gunicorn `--threads`). Decoding an upload or converting an image
holds up to 160 MB and a core for a second or more; a ZIP download holds its thread for as long as the
person's connection takes. Left alone, a few of either can take every thread and all the memory, so each
kind of work takes a slot first. A decode waits a few seconds for one (most decodes take well under a
second); a ZIP does not wait (a slot may stay taken for minutes). Either way, no slot means `Busy`, which
the request middleware answers with 503 and a plain "try again", rather than a queue that never drains.

Slots are per process and sized by settings, read when first used (and again if a test changes them).
"""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings

BUSY = "The workspace is busy right now; try again in a moment."


class Busy(Exception):
    """No slot came free in time; the request is refused with 503 (see workspace.middleware)."""

    def __init__(self, message: str = BUSY):
        super().__init__(message)


class Slots:
    """A BoundedSemaphore sized by a setting, re-entrant per thread for `hold()`."""

    def __init__(self, size_setting: str, wait_setting: str | None = None):
        self.size_setting = size_setting
        self.wait_setting = wait_setting
        self._lock = threading.Lock()
        self._size: int | None = None
        self._semaphore: threading.BoundedSemaphore | None = None
        self._local = threading.local()

    def _current(self) -> threading.BoundedSemaphore:
        size = getattr(settings, self.size_setting)
        with self._lock:
            if self._semaphore is None or size != self._size:
                self._semaphore, self._size = threading.BoundedSemaphore(size), size
            return self._semaphore

    def take(self) -> Callable[[], None]:
        """Take a slot (waiting up to the wait setting) and return the function that gives it back once.

        Raises Busy when none came free.
        """
        semaphore = self._current()
        wait = float(getattr(settings, self.wait_setting)) if self.wait_setting else 0.0
        got = semaphore.acquire(timeout=wait) if wait > 0 else semaphore.acquire(blocking=False)
        if not got:
            raise Busy
        released = threading.Event()

        def release() -> None:
            if not released.is_set():
                released.set()
                semaphore.release()  # the semaphore it came from, even if the setting changed since

        return release

    @contextmanager
    def hold(self) -> Iterator[None]:
        """One slot for the block; a thread already holding one (a batch of uploads) does not take two."""
        if getattr(self._local, "depth", 0):
            self._local.depth += 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        release = self.take()
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0
            release()


# Decoding an upload, a mask or an image to convert: memory and CPU, seconds at most.
DECODES = Slots("MAX_CONCURRENT_DECODES", "DECODE_WAIT_SECONDS")
# Streaming a ZIP download: a web thread for as long as the download lasts.
ZIP_STREAMS = Slots("MAX_CONCURRENT_ZIPS")
