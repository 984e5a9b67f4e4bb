"""Wait for a condition instead of sleeping for a guess: loaded CI machines are slow by any amount."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

# Generous on purpose: the cap only decides how long a broken run takes to fail.
DEFAULT_CAP_S = 60.0


def wait_until(condition: Callable[[], T], what: str, cap_s: float = DEFAULT_CAP_S, every_s: float = 0.02) -> T:
    """Poll `condition` until it returns something truthy, and return that; fail after `cap_s`.

    Example:
        >>> calls = iter([0, 0, 3])
        >>> wait_until(lambda: next(calls), "the third call")
        3
        >>> wait_until(lambda: False, "never", cap_s=0.05)
        Traceback (most recent call last):
        ...
        TimeoutError: gave up after 0.05 s waiting for never
    """
    deadline = time.monotonic() + cap_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"gave up after {cap_s} s waiting for {what}")
        time.sleep(every_s)
