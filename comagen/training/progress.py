"""The training progress bar, whose total is where the run will really end.

With a time budget (`max_minutes`, fine-tuning's --minutes) the step cap is often far out of reach, so
a bar counting toward it would stop at a few percent. Here the total is the step cap or the steps the
budget still allows at this run's pace (evaluations included), whichever comes first: the count, the
percentage and the time left describe the run the clock will stop, and a run the clock stopped ends full.
"""

from __future__ import annotations

import math
import time

from tqdm import tqdm


def reachable_steps(step: int, done: int, elapsed_s: float, left_s: float, max_steps: int) -> int:
    """The step a run at `step` will stop at: `done` steps took `elapsed_s`, and `left_s` of its budget
    is left (a step starts while any budget is left, so a started step counts)."""
    if done <= 0:
        return max_steps
    return min(max_steps, step + math.ceil(max(left_s, 0.0) / (elapsed_s / done)))


class TrainingBar(tqdm):
    """Steps toward the step cap or, sooner, the end of the time budget (see the module)."""

    def __init__(self, step: int, max_steps: int, budget_minutes: float, disable: bool) -> None:
        budget = f" ({budget_minutes:g} min budget)" if budget_minutes else ""
        super().__init__(total=max_steps, initial=step, desc=f"training{budget}", unit="step", disable=disable)
        self.first_step, self.max_steps = step, max_steps
        self.started = time.monotonic()
        self.deadline = self.started + budget_minutes * 60 if budget_minutes else None  # the run's own clock

    def limit_reached(self, steps_done: int, stop_after: int) -> str:
        """Why the run ends before its next step ("" to go on): the time budget, or `stop_after` steps
        done in this invocation."""
        if self.deadline and time.monotonic() > self.deadline:
            return "max_minutes"
        if stop_after and steps_done >= stop_after:
            return "stop_after"
        return ""

    def step_done(self, step: int) -> None:
        """Count a finished step (the run is now at `step`) and re-aim the total at the budget's end."""
        if self.deadline is not None:
            now = time.monotonic()
            self.total = reachable_steps(step, step - self.first_step, now - self.started, self.deadline - now,
                                         self.max_steps)
        self.update()

    def end(self, stopped: str) -> None:
        """Close the bar; one the clock stopped is complete at the steps it made."""
        if stopped == "max_minutes":
            self.total = self.n
        self.close()
