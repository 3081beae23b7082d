"""What a scenario reports: figures next to their floor or peer, targets met or missed, samples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .stats import ratio, summarize

OK = "ok"
NOT_RUN = "not run"
FAILED = "failed"


@dataclass
class Row:
    """One measured figure, with the floor or peer it is compared to (if any)."""

    figure: str
    value: float
    unit: str
    reference: str = ""
    reference_value: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.reference_value is None:
            return None
        return ratio(self.value, self.reference_value)

    def as_dict(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "value": self.value,
            "unit": self.unit,
            "reference": self.reference,
            "reference_value": self.reference_value,
            "ratio": self.ratio,
        }


@dataclass
class Target:
    """A target from the issue: the measured value, the limit, and whether it is met."""

    text: str
    value: float
    limit: float
    met: bool

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.text, "value": self.value, "limit": self.limit, "met": self.met}


@dataclass
class ScenarioResult:
    key: str
    title: str
    status: str = OK
    reason: str = ""
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    #: Latency samples (ms) per series, for the chart; the JSON keeps their summaries.
    samples: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def row(
        self, figure: str, value: float, unit: str, reference: str = "", ref: float | None = None
    ) -> Row:
        added = Row(figure, value, unit, reference, ref)
        self.rows.append(added)
        return added

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "status": self.status,
            "reason": self.reason,
            "seconds": round(self.seconds, 1),
            "rows": [r.as_dict() for r in self.rows],
            "targets": [t.as_dict() for t in self.targets],
            "latency_ms": {k: summarize(v).as_dict() for k, v in self.samples.items() if v},
            "notes": self.notes,
            "extra": self.extra,
        }


class NotRun(Exception):
    """A dependency of the scenario is missing: the scenario reports why instead of numbers."""
