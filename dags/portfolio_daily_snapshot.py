"""portfolio_daily_snapshot: value and snapshot every portfolio, daily at 00:00 UTC.

A thin orchestration of the snapshot extension: all valuation logic is in the
database.  Each scheduled run captures the UTC day that has just ended (the
run due at 2026-11-30T00:00Z captures 2026-11-29); a manual run captures the
previous UTC day too, unless its conf says {"snapshot_date": "YYYY-MM-DD"}.

Tasks: resolve_snapshot_date -> start_capture -> wait_for_run -> verify_run.
start_capture starts a run that a background worker in the database owns
and returns its id at once; wait_for_run checks on it every minute and gives
its worker slot back in between (reschedule mode); verify_run reads the
ended run back. Clearing a failed DAG run starts the date again: a run whose
worker died resumes (same run id) after its last committed portfolio.
Setting: the environment variable PORTFOLIO_SNAPSHOT_CONN_ID names the
Airflow connection to the portfolio database (default "portfolio_db").
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import DAG, BaseHook, CronTriggerTimetable, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from snapshot_dates import SnapshotDateError, snapshot_date_for
from snapshot_notifications import send_failure_notification
from snapshot_run_sensor import SnapshotRunSensor

CONN_ID = os.environ.get("PORTFOLIO_SNAPSHOT_CONN_ID", "portfolio_db")

START_SQL = "SELECT snapshot.start_capture(%(snapshot_date)s::date, 'airflow')"
RUN_SQL = (
    "SELECT run_id, snapshot_date::text, status, portfolios, captured, failed"
    " FROM snapshot.snapshot_runs WHERE run_id = %(run_id)s"
)

default_args = {
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=2),
    "on_failure_callback": send_failure_notification,
}


def run_ids(results: list, descriptions: list) -> list:
    """start_capture's output processor: each statement's first cell, so its XCom is the run id."""
    return [rows[0][0] if rows else None for rows in results]


def check_run(run: tuple | list | None) -> str:
    """Raise unless the run succeeded and captured every portfolio it walked."""
    if not run:
        raise AirflowFailException("no run row to verify; see the start_capture task's log")
    run_id, snapshot_date, status, portfolios, captured, failed = run
    if status != "succeeded" or captured != portfolios or failed:
        raise AirflowFailException(
            f"snapshot run {run_id} for {snapshot_date} is {status}: {failed} of {portfolios} "
            f"portfolios failed, {captured} captured; see "
            f"SELECT * FROM snapshot.snapshot_run_errors WHERE run_id = {run_id}"
        )
    return f"snapshot run {run_id} for {snapshot_date} captured all {portfolios} portfolios"


with DAG(
    dag_id="portfolio_daily_snapshot",
    description="Value and snapshot every portfolio for the UTC day that just ended",
    schedule=CronTriggerTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["portfolio", "snapshot"],
    doc_md=__doc__,
) as dag:

    @task(retries=0)
    def resolve_snapshot_date() -> str:
        """The day to capture, validated before any SQL runs."""
        ctx = get_current_context()
        dag_run = ctx["dag_run"]
        due = ctx.get("logical_date") or dag_run.run_after
        try:
            day = snapshot_date_for(due, dag_run.conf, datetime.now(timezone.utc))
        except SnapshotDateError as exc:
            raise AirflowFailException(str(exc)) from None
        return day.isoformat()

    snapshot_date = resolve_snapshot_date()

    start = SQLExecuteQueryOperator(
        task_id="start_capture",
        conn_id=CONN_ID,
        sql=START_SQL,
        # an XComArg in a templated field: resolved at run time, and the dependency is implied
        parameters={"snapshot_date": snapshot_date},
        output_processor=run_ids,
        show_return_value_in_logs=True,
    )

    wait = SnapshotRunSensor(
        task_id="wait_for_run",
        conn_id=CONN_ID,
        run_id=start.output,
        mode="reschedule",
        poke_interval=timedelta(minutes=1),
        timeout=timedelta(hours=2),
        # one poke: two short statements
        execution_timeout=timedelta(minutes=5),
    )

    @task(retries=0)
    def verify_run(snapshot_run_id: int | None) -> str:
        """Fail unless the run succeeded for every portfolio (read back committed)."""
        if snapshot_run_id is None:
            return check_run(None)
        hook = BaseHook.get_connection(CONN_ID).get_hook()
        return check_run(hook.get_first(RUN_SQL, parameters={"run_id": snapshot_run_id}))

    wait >> verify_run(start.output)
