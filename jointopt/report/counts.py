"""How many trials a study's storage holds, so the report's numbers add up to the storage's.

A search stores more than the configs it measured: repeats of an earlier config (which reuse
that trial's measurement), configs the space rejected, and failed, pruned or unfinished trials.
The report plots each measured config once and says what else the storage holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrialCounts"]


@dataclass(frozen=True)
class TrialCounts:
    """Counts over every trial of a study.

    Attributes:
        total: trials in the storage, in any state.
        states: trials per state name (COMPLETE, FAIL, RUNNING, ...).
        complete: finished trials with a config.
        invalid: complete trials whose config the search space rejected (nothing measured).
        repeats: complete trials that reused an earlier trial's measurement of the same config.
        measured: complete trials measured on their own: complete - invalid - repeats.
        distinct: distinct configs among the complete, valid trials.
    """

    total: int
    complete: int
    invalid: int
    repeats: int
    distinct: int
    states: Mapping[str, int] = field(default_factory=dict)

    @property
    def measured(self) -> int:
        return self.complete - self.invalid - self.repeats

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "states": dict(self.states), "complete": self.complete,
                "distinct": self.distinct, "repeats": self.repeats, "invalid": self.invalid,
                "measured": self.measured}

    @classmethod
    def from_trials(cls, trials: Sequence[Any]) -> TrialCounts:
        """From Optuna FrozenTrials (``study.get_trials()``)."""
        states = Counter(t.state.name for t in trials)
        done = [t.user_attrs for t in trials
                if t.state.name == "COMPLETE" and "config" in t.user_attrs]
        valid = [a for a in done if "invalid" not in a]
        return cls(total=len(trials), complete=len(done), invalid=len(done) - len(valid),
                   repeats=sum(1 for a in valid if "repeat_of" in a),
                   distinct=len({_key(a) for a in valid}), states=dict(sorted(states.items())))

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> TrialCounts:
        """From report records alone (no storage at hand): every record is a complete trial."""
        valid = [r for r in records if r.get("valid", True)]
        return cls(total=len(records), complete=len(records), invalid=len(records) - len(valid),
                   repeats=0, distinct=len({_key(r) for r in valid}),
                   states={"COMPLETE": len(records)} if records else {})

    def sentence(self) -> str:
        """One sentence that accounts for every trial in the storage."""
        parts = [f"{self.complete} complete"]
        parts += [f"{n} {s.lower()}" for s, n in self.states.items() if s != "COMPLETE" and n]
        text = f"The storage holds {_n(self.total, 'trial')}: {', '.join(parts)}."
        if self.complete:
            detail = [_n(self.distinct, "distinct config")]
            if self.repeats:
                detail.append(f"{_n(self.repeats, 'repeat')} of an earlier config (reusing its "
                              "measurement, shown once)")
            if self.invalid:
                detail.append(f"{_n(self.invalid, 'invalid config')} (rejected by the search "
                              "space, not measured)")
            again = self.measured - self.distinct
            if again > 0:
                detail.append(f"{_n(again, 'config')} measured more than once, each measurement "
                              "shown")
            text += " Of the complete ones: " + "; ".join(detail) + "."
        return text


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _key(attrs: Mapping[str, Any]) -> str:
    if "config_key" in attrs:
        return str(attrs["config_key"])
    cfg = attrs.get("config") or {}
    return repr(sorted((k, repr(v)) for k, v in cfg.items()))
