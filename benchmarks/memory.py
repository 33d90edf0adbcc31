"""Peak resident memory of this process while a block runs, for the benchmark scripts (Linux)."""

from __future__ import annotations

import threading

MIB = 1024 * 1024


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/status (VmRSS)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError("no VmRSS line in /proc/self/status (this benchmark needs Linux)")


class PeakRSS:
    """Samples RSS on a background thread while the ``with`` block runs."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.before = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakRSS:
        self.before = self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
