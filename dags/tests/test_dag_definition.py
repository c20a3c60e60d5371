"""The DAG folder imports, and the DAG is scheduled and guarded as documented."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.dag_processing.dagbag import DagBag
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.providers.common.sql.sensors.sql import SqlSensor
from airflow.sdk import CronTriggerTimetable

import portfolio_daily_snapshot as module
from snapshot_notifications import send_failure_notification
from snapshot_run_sensor import PROGRESS_SQL, RUN_SQL, SnapshotRunSensor

from conftest import DAGS


def test_dag_folder_imports_without_errors() -> None:
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert "portfolio_daily_snapshot" in bag.dag_ids


def test_daily_at_midnight_utc_with_an_explicit_timetable() -> None:
    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.trigger import CronTriggerTimetable as CoreCronTriggerTimetable

    timetable = module.dag.timetable
    assert isinstance(timetable, CronTriggerTimetable)
    assert (timetable.expression, str(timetable.timezone)) == ("0 0 * * *", "UTC")
    # what the scheduler makes of it: the run due after midday on the 29th fires at 00:00Z on the 30th
    core = CoreCronTriggerTimetable(timetable.expression, timezone=timetable.timezone)
    info = core.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc),
                                    latest=None, catchup=True),
    )
    assert info is not None and info.run_after == datetime(2026, 11, 30, 0, 0, tzinfo=timezone.utc)
    assert info.logical_date == info.run_after


def test_run_guards() -> None:
    dag = module.dag
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    start = dag.get_task("start_capture")
    assert start.retries == 2
    assert start.retry_exponential_backoff
    assert start.retry_delay == timedelta(minutes=2)
    assert start.execution_timeout == timedelta(hours=2)
    for task in dag.tasks:
        assert task.execution_timeout is not None
        assert send_failure_notification in _callbacks(task.on_failure_callback), task.task_id


def _callbacks(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def test_start_is_one_parameterised_call_on_portfolio_db() -> None:
    start = module.dag.get_task("start_capture")
    assert isinstance(start, SQLExecuteQueryOperator)
    assert start.conn_id == "portfolio_db"
    assert start.sql == "SELECT snapshot.start_capture(%(snapshot_date)s::date, 'airflow')"
    assert set(start.parameters) == {"snapshot_date"}
    # the resolved date's XCom, passed as an XComArg (which also makes the dependency)
    date_arg = start.parameters["snapshot_date"]
    assert date_arg.operator.task_id == "resolve_snapshot_date" and date_arg.key == "return_value"
    # its XCom is the run id itself: the first cell of the one statement's one row
    assert start._output_processor([[(42,)]], [None]) == [42]


def test_the_sensor_waits_in_reschedule_mode_on_the_started_run() -> None:
    wait = module.dag.get_task("wait_for_run")
    assert isinstance(wait, SnapshotRunSensor) and isinstance(wait, SqlSensor)
    assert wait.conn_id == "portfolio_db"
    assert wait.mode == "reschedule" and wait.reschedule
    assert (wait.poke_interval, wait.timeout) == (60, 2 * 3600)
    assert wait.execution_timeout == timedelta(minutes=5)
    assert wait.sql == [PROGRESS_SQL, RUN_SQL]
    run_arg = wait.parameters["run_id"]
    assert run_arg.operator.task_id == "start_capture" and run_arg.key == "return_value"


def test_tasks_run_in_order() -> None:
    dag = module.dag
    assert dag.get_task("resolve_snapshot_date").downstream_task_ids == {"start_capture"}
    assert dag.get_task("start_capture").downstream_task_ids == {"wait_for_run", "verify_run"}
    assert dag.get_task("wait_for_run").downstream_task_ids == {"verify_run"}
    assert dag.get_task("verify_run").upstream_task_ids == {"start_capture", "wait_for_run"}


def test_connection_id_is_one_setting(monkeypatch) -> None:
    import importlib

    monkeypatch.setenv("PORTFOLIO_SNAPSHOT_CONN_ID", "other_db")
    try:
        reloaded = importlib.reload(module)
        assert reloaded.dag.get_task("start_capture").conn_id == "other_db"
        assert reloaded.dag.get_task("wait_for_run").conn_id == "other_db"
    finally:
        monkeypatch.delenv("PORTFOLIO_SNAPSHOT_CONN_ID")
        importlib.reload(module)


def test_check_run_names_run_failed_count_and_where_to_look() -> None:
    import pytest
    from airflow.sdk.exceptions import AirflowFailException

    assert module.check_run((7, "2026-11-29", "succeeded", 3, 3, 0)).startswith("snapshot run 7")
    with pytest.raises(AirflowFailException, match=r"snapshot run 8 for 2026-11-29 is partial: 1 of 3 portfolios failed.*snapshot_run_errors WHERE run_id = 8"):
        module.check_run((8, "2026-11-29", "partial", 3, 2, 1))
    with pytest.raises(AirflowFailException):
        module.check_run(None)


def test_backfill_command_plans_one_run_per_day(tmp_path) -> None:
    """The README's backfill command, as a dry run: one run per date, due at 00:00 UTC."""
    import subprocess
    import sys
    from pathlib import Path

    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "dags", "reserialize"], check=True, capture_output=True)
    out = subprocess.run(
        [airflow, "backfill", "create", "--dag-id", "portfolio_daily_snapshot",
         "--from-date", "2026-11-02", "--to-date", "2026-11-05", "--dry-run"],
        check=True, capture_output=True, text=True).stdout
    planned = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| 2026-")]
    assert planned == [f"2026-11-0{d} 00:00:00+00:00" for d in (2, 3, 4, 5)]
