"""The day each run captures: snapshot_dates.snapshot_date_for."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from snapshot_dates import SnapshotDateError, snapshot_date_for

UTC = timezone.utc
NOW = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)


def test_scheduled_run_at_midnight_captures_the_day_that_ended() -> None:
    assert snapshot_date_for(datetime(2026, 11, 30, 0, 0, tzinfo=UTC), None, NOW) == date(2026, 11, 29)


def test_the_day_is_the_utc_day_whatever_the_timezone_of_the_timestamp() -> None:
    # 2026-11-29T19:00-05:00 is 2026-11-30T00:00Z
    due = datetime.fromisoformat("2026-11-29T19:00:00-05:00")
    assert snapshot_date_for(due, {}, NOW) == date(2026, 11, 29)


def test_manual_run_without_a_date_captures_the_previous_utc_day() -> None:
    assert snapshot_date_for(datetime(2026, 11, 30, 13, 45, tzinfo=UTC), {}, NOW) == date(2026, 11, 29)


def test_conf_date_overrides() -> None:
    conf = {"snapshot_date": "2026-11-20"}
    assert snapshot_date_for(datetime(2026, 11, 30, tzinfo=UTC), conf, NOW) == date(2026, 11, 20)


def test_conf_may_name_today() -> None:
    assert snapshot_date_for(NOW, {"snapshot_date": "2026-11-30"}, NOW) == date(2026, 11, 30)


@pytest.mark.parametrize("bad", ["2026-13-01", "2026-02-30", "20261120", "2026-11-20T00:00", "", 20261120, None])
def test_malformed_conf_dates_are_refused(bad: object) -> None:
    conf = {"snapshot_date": bad}
    if bad is None:  # an explicit null means "not given"
        assert snapshot_date_for(NOW, conf, NOW) == date(2026, 11, 29)
        return
    with pytest.raises(SnapshotDateError, match="snapshot_date"):
        snapshot_date_for(NOW, conf, NOW)


def test_future_conf_date_is_refused_with_todays_date() -> None:
    with pytest.raises(SnapshotDateError, match=r"2026-12-01 is in the future \(today is 2026-11-30 in UTC\)"):
        snapshot_date_for(NOW, {"snapshot_date": "2026-12-01"}, NOW)


def test_naive_datetimes_are_a_programming_error() -> None:
    with pytest.raises(ValueError):
        snapshot_date_for(datetime(2026, 11, 30), None, NOW)
