"""The pg_cron fallback on a cluster started with pg_cron preloaded."""

from __future__ import annotations

import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest
from conftest import psql

JOB = "portfolio_daily_snapshot_fallback"


def test_scheduling_twice_leaves_one_job(clean_runs) -> None:
    first = psql("SELECT snapshot.schedule_snapshot_fallback()")
    second = psql("SELECT snapshot.schedule_snapshot_fallback('45 2 * * *')")
    assert first == second
    assert psql(f"SELECT jobid, schedule, command, database FROM cron.job WHERE jobname = '{JOB}'") == (
        f"{first}|45 2 * * *|SELECT run_id, status FROM snapshot.capture_all_snapshots_if_missing()|portfolio_e2e")
    assert psql("SELECT count(*) FROM cron.job") == "1"


def test_a_job_fired_by_pg_cron_captures_the_previous_day(clean_runs) -> None:
    yesterday = (datetime.now(timezone.utc).date() - timedelta(days=1)).isoformat()
    psql("SELECT snapshot.schedule_snapshot_fallback('* * * * *')")
    deadline = time.monotonic() + 90
    run = ""
    while time.monotonic() < deadline and not run:
        time.sleep(2)
        run = psql("SELECT snapshot_date, triggered_by, status, portfolios, captured"
                   " FROM snapshot.snapshot_runs WHERE triggered_by = 'pg_cron'")
    assert run == f"{yesterday}|pg_cron|succeeded|300|300", psql("SELECT * FROM cron.job_run_details")
    assert psql(f"SELECT count(*) FROM snapshot.portfolio_snapshots WHERE snapshot_date = '{yesterday}'") == "300"


def test_unscheduling_removes_the_job(clean_runs) -> None:
    psql("SELECT snapshot.schedule_snapshot_fallback()")
    assert psql("SELECT snapshot.unschedule_snapshot_fallback()") == "t"
    assert psql("SELECT count(*) FROM cron.job") == "0"
    assert psql("SELECT snapshot.unschedule_snapshot_fallback()") == "f"


def test_a_malformed_schedule_is_refused_and_the_job_kept(clean_runs) -> None:
    jobid = psql("SELECT snapshot.schedule_snapshot_fallback('30 1 * * *')")
    for schedule in ("30 1 * *", "61 1 * * *", "30 1 * * funday", "30 1 * * * *"):
        with pytest.raises(subprocess.CalledProcessError) as refused:
            psql(f"SELECT snapshot.schedule_snapshot_fallback('{schedule}')", variables={"VERBOSITY": "verbose"})
        assert f'ERROR:  22023: invalid cron schedule "{schedule}"' in refused.value.stderr
    assert psql(f"SELECT jobid, schedule FROM cron.job WHERE jobname = '{JOB}'") == f"{jobid}|30 1 * * *"
