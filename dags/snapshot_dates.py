"""Which UTC day a run of portfolio_daily_snapshot captures.

Kept apart from the DAG file so that the rule is a small, tested function:
a run captures the UTC day that ended when it was due (the run due at
2026-11-30T00:00Z captures 2026-11-29), unless its conf names a day.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Any, Mapping

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class SnapshotDateError(ValueError):
    """The run's conf names no valid snapshot date."""


def snapshot_date_for(
    due: datetime,
    conf: Mapping[str, Any] | None,
    now: datetime,
) -> date:
    """Return the day a run captures.

    due: when the run was due (its logical date, or for a manual run without
    one, when it was triggered); aware. conf: the run's conf; a key
    "snapshot_date" ("YYYY-MM-DD") overrides. now: the current time; a date
    after today (UTC) is refused, as the database would.
    """
    if due.tzinfo is None or now.tzinfo is None:
        raise ValueError("due and now must be timezone-aware")
    today = now.astimezone(timezone.utc).date()
    requested = (conf or {}).get("snapshot_date")
    if requested is None:
        return due.astimezone(timezone.utc).date() - timedelta(days=1)
    if not isinstance(requested, str) or not _ISO_DATE.match(requested):
        raise SnapshotDateError(
            f"conf snapshot_date must be a date written YYYY-MM-DD, got {requested!r}"
        )
    try:
        day = date.fromisoformat(requested)
    except ValueError as exc:
        raise SnapshotDateError(f"conf snapshot_date {requested!r} is not a calendar date: {exc}") from None
    if day > today:
        raise SnapshotDateError(
            f"conf snapshot_date {requested} is in the future (today is {today.isoformat()} in UTC)"
        )
    return day
