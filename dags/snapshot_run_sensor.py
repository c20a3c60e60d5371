"""SnapshotRunSensor: wait for one run of snapshot.start_capture() to end.

The common-sql SqlSensor, given a run id and the SQL that watches a run. Each
poke is one short transaction on the portfolio database, as the DAG's role,
of two statements:

1. the run's row of ``snapshot.capture_progress`` (percent, rate, ETA, its
   worker's state), for the log. Reading the view first records every active
   run whose worker is gone (killed, crashed, terminated, the server
   restarted) as failed with reason 'interrupted';
2. the run's row of ``snapshot.snapshot_runs``: its status. A statement of its
   own so that it sees what the first one recorded: a single statement would
   read the run under one snapshot, taken before the view recorded anything,
   and a dead worker's run would look running until the next poke.

Queued or running: not done yet; in reschedule mode the task gives its
worker slot back until the next poke. Succeeded or partial: done (verify_run
judges a partial run). Failed or cancelled: the task fails at once, without
retries (a retry would read the same ended run), naming the run, its status
and reason, what to do, and snapshot.snapshot_run_errors. At its timeout the
task fails naming the run and how far it got; the run goes on.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, NamedTuple

from airflow.providers.common.sql.hooks.handlers import fetch_all_handler
from airflow.providers.common.sql.sensors.sql import SqlSensor
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

PROGRESS_SQL = (
    "SELECT percent, portfolios_per_second, eta::text, worker_state"
    " FROM snapshot.capture_progress WHERE run_id = %(run_id)s"
)
RUN_SQL = (
    "SELECT run_id, snapshot_date::text, status, reason, portfolios, captured, failed, total"
    " FROM snapshot.snapshot_runs WHERE run_id = %(run_id)s"
)

ACTIVE = frozenset({"queued", "running"})
ENDED_BADLY = frozenset({"failed", "cancelled"})


class Run(NamedTuple):
    """A run's row as RUN_SQL reads it."""

    run_id: int
    snapshot_date: str
    status: str
    reason: str | None
    portfolios: int
    captured: int
    failed: int
    total: int | None


def _errors(run: Run) -> str:
    return f"SELECT * FROM snapshot.snapshot_run_errors WHERE run_id = {run.run_id}"


def _so_far(run: Run) -> str:
    if run.total is None:
        return f"{run.portfolios} portfolios committed (total not counted yet), {run.failed} failed"
    return f"{run.portfolios} of {run.total} portfolios committed, {run.failed} failed"


def describe(run: Run, progress: tuple | None) -> str:
    """One line for the sensor's log: the run's status and progress."""
    line = f"snapshot run {run.run_id} for {run.snapshot_date} is {run.status}: {_so_far(run)}"
    if progress is not None:
        percent, rate, eta, worker_state = progress
        line += f" ({percent if percent is not None else '?'}%, {rate or 0} portfolios/s, ETA {eta or '?'}; worker {worker_state or 'starting'})"
    return line


def ended_badly(run: Run) -> str:
    """Why the sensor fails for a failed or cancelled run, and what to do."""
    reason = run.reason or "none: every portfolio it valued failed"
    if run.reason == "interrupted":
        todo = (f"its worker is gone; clear this DAG run (from start_capture) to resume run {run.run_id}"
                " after its last committed portfolio")
    elif run.status == "cancelled":
        todo = (f"snapshot.resume_capture({run.run_id}) continues it; a cleared DAG run starts the date"
                " afresh")
    else:
        todo = "fix the cause, then clear this DAG run (it starts the date afresh)"
    return (f"snapshot run {run.run_id} for {run.snapshot_date} is {run.status} (reason: {reason})"
            f" after {_so_far(run)}; {todo}; failed portfolios: {_errors(run)}")


def timed_out(run: Run | None, run_id: Any, timeout: float) -> str:
    """Why the sensor fails at its timeout; the run itself goes on."""
    waited = timedelta(seconds=round(timeout))
    if run is None:
        return f"snapshot run {run_id} did not end within the sensor's timeout of {waited}"
    return (f"snapshot run {run.run_id} for {run.snapshot_date} is still {run.status} after the sensor's"
            f" timeout of {waited}: {_so_far(run)}. The run goes on: watch SELECT * FROM"
            f" snapshot.capture_progress WHERE run_id = {run.run_id} (a queued run waits for a lock:"
            f" see worker_state), clear this DAG run to wait for it again (start_capture joins it),"
            f" or end it with snapshot.cancel_capture({run.run_id}) as the database owner")


class SnapshotRunSensor(SqlSensor):
    """Wait until run run_id (templated: an XComArg of start_capture's run id) ends."""

    def __init__(self, *, conn_id: str, run_id: Any, **kwargs: Any) -> None:
        super().__init__(conn_id=conn_id, sql=[PROGRESS_SQL, RUN_SQL],  # type: ignore[arg-type]
                         parameters={"run_id": run_id}, **kwargs)
        self.last_run: Run | None = None

    def poke(self, context: Any) -> bool:
        progress, rows = self._get_hook().run(list(self.sql), parameters=self.parameters,
                                              handler=fetch_all_handler)
        if not rows:
            raise AirflowFailException(f"snapshot run {self.parameters['run_id']} does not exist")
        run = self.last_run = Run(*rows[0])
        self.log.info("%s", describe(run, progress[0] if progress else None))
        if run.status in ACTIVE:
            return False
        if run.status in ENDED_BADLY:
            raise AirflowFailException(ended_badly(run))
        return True

    def execute(self, context: Any) -> Any:
        try:
            return super().execute(context)
        except AirflowSensorTimeout as timeout:
            raise AirflowSensorTimeout(timed_out(self.last_run, self.parameters["run_id"],
                                                 self.timeout)) from timeout
