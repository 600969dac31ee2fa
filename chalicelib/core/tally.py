"""A case's score: Σ over distinct reporters of weight × 0.5^(age / half-life).

Weight is the reporter's rank (an operator's local override wins over what credentials proved) times a
reputation factor that verification outcomes move. Each reporter appears once per case, so repeating a
report can refresh a reporter's contribution but never multiply it. Age counts in whole hours, so a
fresh report weighs exactly its weight and "verify at the first weighted report" (verify_at: 1) holds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from .ports import Case, Contribution

RANKS = ("noc", "trusted", "anonymous", "muted")
DEFAULT_WEIGHTS = MappingProxyType({"noc": 10.0, "trusted": 3.0, "anonymous": 1.0, "muted": 0.0})


@dataclass(frozen=True)
class TallyRules:
    weights: MappingProxyType = field(default_factory=lambda: DEFAULT_WEIGHTS)
    half_life_hours: float = 7 * 24
    count_window_hours: float = 24

    def effective_rank(self, contribution: Contribution) -> str:
        return contribution.rank_override or contribution.rank

    def weight(self, contribution: Contribution, now: datetime) -> float:
        base = self.weights.get(self.effective_rank(contribution), 0.0) * contribution.reputation
        age_hours = max(0, int((now - contribution.observed).total_seconds() // 3600))
        return base * 0.5 ** (age_hours / self.half_life_hours)

    def score(self, case: Case, now: datetime) -> float:
        return sum(self.weight(c, now) for c in case.contributions)
