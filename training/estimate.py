"""How long a CPU run will take, from its first steps, said once at its start.

The first step of an invocation pays for allocation and worker start-up, so it is left out;
the next `TIMED_STEPS` steps are timed (loading included, evaluation and saving not), and the
line says the steps left times their mean, plus how many evaluations come on top.

Example:
    >>> timer = StepTimer(steps=102, pairs_per_step=32, evaluations=2)
    >>> [timer.took(s) for s in (9.0, 3.0)]
    [None, None]
    >>> timer.took(5.0)
    'estimate: 102 steps of 32 pairs at 4.0 s a step (steps 2-3 timed): about 6.6 min more of training (8 pairs/s), plus 2 evaluations'
    >>> timer.took(4.0) is None   # said once
    True
    >>> StepTimer(steps=2, pairs_per_step=8, evaluations=0).took(1.0) is None   # the first step is not timed
    True
"""

from __future__ import annotations

TIMED_STEPS = 2


class StepTimer:
    """Collects the seconds of each step of one invocation and says, once, how long all of them take."""

    def __init__(self, steps: int, pairs_per_step: int, evaluations: int) -> None:
        self.steps, self.pairs_per_step, self.evaluations = steps, pairs_per_step, evaluations
        self.seconds: list[float] = []
        self.said = False

    def took(self, seconds: float) -> str | None:
        """Record one step's seconds; the estimate line once enough steps are timed (None before and after)."""
        self.seconds.append(seconds)
        timed = self.seconds[1:]
        if self.said or len(timed) < min(TIMED_STEPS, self.steps - 1) or not timed:
            return None
        self.said = True
        per_step = sum(timed) / len(timed)
        left = (self.steps - len(self.seconds)) * per_step
        more = f"plus {self.evaluations} evaluation{'s' if self.evaluations != 1 else ''}" if self.evaluations else ""
        return (f"estimate: {self.steps} steps of {self.pairs_per_step} pairs at {per_step:.1f} s a step "
                f"({'step 2' if len(timed) == 1 else f'steps 2-{len(self.seconds)}'} timed): about {_duration(left)} more of training "
                f"({self.pairs_per_step / per_step:,.0f} pairs/s)" + (f", {more}" if more else ""))


def _duration(seconds: float) -> str:
    """
    Example:
        >>> _duration(42), _duration(400), _duration(7300)
        ('42 s', '6.7 min', '2.0 h')
    """
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
