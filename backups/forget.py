"""Which versions a keep-schedule keeps, with restic's `forget --keep-*` selection (its
documented rules, doc/060_forget.rst):

- snapshots are taken newest first; `--keep-last n` keeps the n most recent;
- `--keep-hourly|daily|weekly|monthly|yearly n`: for the last n hours/days/weeks/months/years
  that have one or more snapshots, the most recent one of each is kept; calendar boundaries are
  natural (weeks are ISO weeks, Monday to Sunday), not relative to now;
- a snapshot is kept if any rule keeps it (the reasons are listed);
- when a rule still has counts left at the oldest snapshot, the oldest is kept too ("oldest
  daily snapshot").

Here a "snapshot" is one ledger version of one key, at the time it was first seen (UTC).
Pure: no database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

RULES: tuple[tuple[str, str, Callable[[datetime], tuple]], ...] = (
    ("hourly", "hourly snapshot", lambda t: (t.year, t.month, t.day, t.hour)),
    ("daily", "daily snapshot", lambda t: (t.year, t.month, t.day)),
    ("weekly", "weekly snapshot", lambda t: tuple(t.isocalendar()[:2])),
    ("monthly", "monthly snapshot", lambda t: (t.year, t.month)),
    ("yearly", "yearly snapshot", lambda t: (t.year,)),
)


@dataclass(frozen=True)
class Keep:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0

    @property
    def empty(self) -> bool:
        return not any((self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly))

    def describe(self) -> str:
        parts = [f"keep-{name} {getattr(self, name)}" for name in ("last", "hourly", "daily", "weekly", "monthly", "yearly")
                 if getattr(self, name)]  # fmt: skip
        return ", ".join(parts) or "no schedule"


def select(times: Sequence[tuple[object, datetime]], keep: Keep) -> dict[object, list[str]]:
    """{id: reasons} of the snapshots `keep` keeps, from (id, time) pairs in any order. An
    empty schedule keeps everything (as restic refuses to act on an empty policy)."""
    ordered = sorted(times, key=lambda item: item[1], reverse=True)
    if keep.empty:
        return {ident: ["no schedule"] for ident, _ in ordered}
    counts = {name: getattr(keep, name) for name, _, _ in RULES}
    last_value: dict[str, tuple | None] = {name: None for name, _, _ in RULES}
    kept: dict[object, list[str]] = {}
    for number, (ident, when) in enumerate(ordered):
        reasons = []
        if number < keep.last:
            reasons.append("last snapshot")
        for name, reason, bucket in RULES:
            if counts[name] <= 0:
                continue
            value = bucket(when)
            if value != last_value[name]:
                reasons.append(reason)
            elif number == len(ordered) - 1:
                reasons.append(f"oldest {reason}")
            else:
                continue
            last_value[name] = value
            counts[name] -= 1
        if reasons:
            kept[ident] = reasons
    return kept
