"""Device time of everything launched in a block of code.

    with cmlang.runtime.profile() as prof:
        o = attention(q, k, v)          # any number of kernel launches
    prof.seconds                         # their summed device time (profiling events)
    prof.by_kernel()                     # {kernel name: (seconds, launches)}

The launcher reports each launch to the profiles that are open; code that enqueues
its own OpenCL kernels (the SIMT baselines) reports their events with ``record``, so
both sides of a comparison are timed the same way.
"""
from __future__ import annotations

import contextlib

_open: list = []


class Profile:
    """The launches made while it was open: (kernel name, event) pairs."""

    def __init__(self):
        self.launches: list = []

    def by_kernel(self) -> dict:
        """{kernel name: (device seconds, launch count)}, in first-launch order."""
        totals: dict = {}
        for name, event in self.launches:
            seconds, count = totals.get(name, (0.0, 0))
            totals[name] = (seconds + event_seconds(event), count + 1)
        return totals

    @property
    def seconds(self) -> float:
        """Summed device time of the launches (waits for them)."""
        return sum(event_seconds(event) for _, event in self.launches)


@contextlib.contextmanager
def profile():
    """Collect the device time of the launches made inside the ``with`` block."""
    found = Profile()
    _open.append(found)
    try:
        yield found
    finally:
        _open.remove(found)


def record(name: str, event) -> None:
    """Report a launch (a cmlang ``Launched`` or a pyopencl event) to the open profiles."""
    for found in _open:
        found.launches.append((name, event))


def recording() -> bool:
    return bool(_open)


def event_seconds(event) -> float:
    """Device seconds of a ``Launched`` (``.seconds``) or a pyopencl event (waits)."""
    if hasattr(event, "profile"):
        event.wait()
        return (event.profile.end - event.profile.start) * 1e-9
    return event.seconds
