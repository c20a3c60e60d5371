"""SnapshotRunSensor's poke, one at a time, as the limited Airflow role against real runs
(held by the gate of conftest.RunGate), and its messages."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from airflow.sdk.exceptions import AirflowFailException

from conftest import AIRFLOW_ROLE, psql, wait_until
from snapshot_run_sensor import Run, SnapshotRunSensor, ended_badly, timed_out

DAY = (datetime.now(timezone.utc).date() - timedelta(days=1)).isoformat()


@pytest.fixture()
def sensor(run_gate, monkeypatch) -> SnapshotRunSensor:
    """A run held at the gate after 200 portfolios, and a sensor of it connected as the Airflow role."""
    monkeypatch.setenv("AIRFLOW_CONN_PORTFOLIO_DB", json.dumps({
        "conn_type": "postgres", "host": run_gate.holder.info.host, "port": run_gate.holder.info.port,
        "login": AIRFLOW_ROLE, "schema": "portfolio_e2e"}))
    run_gate.close(at=200)
    run_id = int(psql(f"SELECT snapshot.start_capture('{DAY}', 'test')", user=AIRFLOW_ROLE))
    assert run_gate.wait_for_run_at_gate(DAY, 200) == run_id
    return SnapshotRunSensor(task_id="probe", conn_id="portfolio_db", run_id=run_id)


def _run_id(sensor: SnapshotRunSensor) -> int:
    return sensor.parameters["run_id"]


def test_a_poke_finds_a_running_run_not_done(sensor) -> None:
    assert sensor.poke({}) is False
    assert sensor.last_run == Run(_run_id(sensor), DAY, "running", None, 200, 200, 0, 300)


def test_the_first_poke_after_the_worker_died_fails(sensor) -> None:
    """The worker terminated, snapshot_runs still says running (nobody has looked); one poke
    records the run as interrupted (its first statement) and fails on it (its second)."""
    run_id = _run_id(sensor)
    pid = psql(f"SELECT worker_pid FROM snapshot.snapshot_runs WHERE run_id = {run_id}")
    assert psql(f"SELECT pg_terminate_backend({pid})") == "t"
    wait_until(lambda: psql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}") == "0", "the worker to exit")
    assert psql(f"SELECT status FROM snapshot.snapshot_runs WHERE run_id = {run_id}") == "running"

    with pytest.raises(AirflowFailException) as failed:
        sensor.poke({})
    assert str(failed.value) == (
        f"snapshot run {run_id} for {DAY} is failed (reason: interrupted) after 200 of 300 portfolios"
        f" committed, 0 failed; its worker is gone; clear this DAG run (from start_capture) to resume"
        f" run {run_id} after its last committed portfolio; failed portfolios:"
        f" SELECT * FROM snapshot.snapshot_run_errors WHERE run_id = {run_id}")
    # recorded by the poke's transaction, committed
    assert psql(f"SELECT status, reason FROM snapshot.snapshot_runs WHERE run_id = {run_id}") == "failed|interrupted"


def test_a_poke_fails_on_a_cancelled_run(sensor) -> None:
    run_id = _run_id(sensor)
    assert psql(f"SELECT snapshot.cancel_capture({run_id})") == "t"
    with pytest.raises(AirflowFailException) as failed:
        sensor.poke({})
    assert str(failed.value) == (
        f"snapshot run {run_id} for {DAY} is cancelled (reason: cancelled) after 200 of 300 portfolios"
        f" committed, 0 failed; snapshot.resume_capture({run_id}) continues it; a cleared DAG run starts"
        f" the date afresh; failed portfolios: SELECT * FROM snapshot.snapshot_run_errors WHERE run_id = {run_id}")


def test_a_poke_is_done_once_the_run_succeeded(sensor, run_gate) -> None:
    run_gate.open()
    wait_until(lambda: sensor.poke({}), "the run to end")
    assert sensor.last_run == Run(_run_id(sensor), DAY, "succeeded", None, 300, 300, 0, 300)


def test_a_poke_of_a_run_that_does_not_exist_fails(sensor) -> None:
    sensor.parameters = {"run_id": 999999}
    with pytest.raises(AirflowFailException, match=r"^snapshot run 999999 does not exist$"):
        sensor.poke({})


def test_a_run_failed_without_a_reason_is_one_whose_portfolios_all_failed() -> None:
    assert ended_badly(Run(7, "2026-11-29", "failed", None, 3, 0, 3, 3)) == (
        "snapshot run 7 for 2026-11-29 is failed (reason: none: every portfolio it valued failed) after"
        " 3 of 3 portfolios committed, 3 failed; fix the cause, then clear this DAG run (it starts the date"
        " afresh); failed portfolios: SELECT * FROM snapshot.snapshot_run_errors WHERE run_id = 7")


def test_a_run_failed_by_its_own_error_names_it() -> None:
    assert ended_badly(Run(8, "2026-11-29", "failed", 'relation "transactions" does not exist', 100, 100, 0, 300)
                       ).startswith('snapshot run 8 for 2026-11-29 is failed (reason: relation "transactions" does'
                                    ' not exist) after 100 of 300 portfolios committed, 0 failed; fix the cause')


def test_a_timeout_before_any_poke_read_the_run_names_its_id() -> None:
    assert timed_out(None, 9, 7200) == "snapshot run 9 did not end within the sensor's timeout of 2:00:00"
