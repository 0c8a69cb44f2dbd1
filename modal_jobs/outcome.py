"""What carrying out one model's plan came to, as the engine reports it: done, or failed and why.

Executors return outcomes; the rows a summary shows are made from (plan, outcome) in `modal_jobs.rows`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    error: str | None = None  # None: the plan was carried out
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.error is not None
