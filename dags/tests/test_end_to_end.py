"""Real DAG runs (dag.test) against a real PostgreSQL with the extension and demo
data, connected as the limited Airflow role from examples/airflow_role.sql.

dag.test() runs the DAG's tasks in this process, the sensor in reschedule mode
as the scheduler would: a poke that finds the run going on ends the try as
up_for_reschedule (a task_reschedule row), and the loop runs the sensor again
once its reschedule date has passed. The sensor's poke interval is cut to a
second here, and its timeout to two minutes, so that no test can hang."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import pytest

from conftest import AIRFLOW_ROLE, ROOT, psql, wait_until

TODAY = datetime.now(timezone.utc).date()
YESTERDAY = TODAY - timedelta(days=1)


@pytest.fixture()
def airflow_env(clean_runs, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_PORTFOLIO_DB", json.dumps({
        "conn_type": "postgres", "host": clean_runs["host"], "port": int(clean_runs["port"]),
        "login": AIRFLOW_ROLE, "schema": clean_runs["dbname"]}))
    alerts = tmp_path / "alerts.jsonl"
    monkeypatch.setenv("AIRFLOW_CONN_SNAPSHOT_ALERTS_FILE",
                       json.dumps({"conn_type": "fs", "extra": {"path": str(alerts)}}))
    import portfolio_daily_snapshot

    sensor = portfolio_daily_snapshot.dag.get_task("wait_for_run")
    monkeypatch.setattr(sensor, "poke_interval", 1.0)
    monkeypatch.setattr(sensor, "timeout", 120.0)
    return portfolio_daily_snapshot.dag, alerts


def _states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def _ti(dag_run, task_id: str):
    [ti] = [ti for ti in dag_run.get_task_instances() if ti.task_id == task_id]
    return ti


def _reschedules(after_id: int = 0, ti_id=None) -> int:
    """Rows of Airflow's task_reschedule table after after_id (of one task instance)."""
    from sqlalchemy import func, select

    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session

    with create_session() as session:
        query = select(func.count(TaskReschedule.id)).where(TaskReschedule.id > after_id)
        if ti_id is not None:
            query = query.where(TaskReschedule.ti_id == ti_id)
        return session.scalar(query)


def _last_reschedule_id() -> int:
    from sqlalchemy import func, select

    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.scalar(select(func.max(TaskReschedule.id))) or 0


def _privileges() -> dict[str, str]:
    """Every privilege the role has in the database, through PUBLIC and memberships too."""
    role = AIRFLOW_ROLE
    return {
        "role": psql(f"SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls,"
                     f" (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid)"
                     f" FROM pg_roles r WHERE rolname = '{role}'"),
        "database": psql(f"SELECT has_database_privilege('{role}', current_database(), 'CONNECT'),"
                         f" has_database_privilege('{role}', current_database(), 'CREATE')"),
        "schemas": psql(f"SELECT string_agg(nspname || ' ' || p, ', ' ORDER BY nspname, p) FROM pg_namespace,"
                        f" unnest(ARRAY['USAGE', 'CREATE']) AS p"
                        f" WHERE nspname IN ('snapshot', 'public', 'cron') AND has_schema_privilege('{role}', oid, p)"),
        "functions": psql(f"SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.oid::regprocedure::text)"
                          f" FROM pg_proc p WHERE p.pronamespace IN ('snapshot'::regnamespace, 'public'::regnamespace)"
                          f" AND has_function_privilege('{role}', p.oid, 'EXECUTE')"),
        "relations": psql(f"SELECT string_agg(c.oid::regclass::text || ' ' || p, ', ' ORDER BY c.oid::regclass::text, p)"
                          f" FROM pg_class c, unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',"
                          f" 'REFERENCES', 'TRIGGER']) AS p"
                          f" WHERE c.relnamespace IN ('snapshot'::regnamespace, 'public'::regnamespace)"
                          f" AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
                          f" AND (has_table_privilege('{role}', c.oid, p)"
                          f" OR (p IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')"
                          f" AND has_any_column_privilege('{role}', c.oid, p)))"),
        "sequences": psql(f"SELECT count(*) FILTER (WHERE CASE WHEN c.relkind = 'S' THEN"
                          f" has_sequence_privilege('{role}', c.oid, 'USAGE,SELECT,UPDATE') END), count(*)"
                          f" FROM pg_class c WHERE c.relkind = 'S'"
                          f" AND c.relnamespace IN ('snapshot'::regnamespace, 'public'::regnamespace)"),
    }


def test_the_airflow_role_has_exactly_what_the_dag_uses(clean_runs) -> None:
    """examples/airflow_role.sql: start a run, watch it, read it back; nothing else. Run again, it
    also takes back what its earlier versions granted (capture_all_snapshots, snapshot_run_errors)."""
    psql(f"GRANT EXECUTE ON FUNCTION snapshot.capture_all_snapshots(date, text) TO {AIRFLOW_ROLE};"
         f" GRANT SELECT ON snapshot.snapshot_run_errors TO {AIRFLOW_ROLE}")
    psql(file=ROOT / "examples" / "airflow_role.sql")
    assert _privileges() == {
        "role": "f|f|f|f|f|0",
        "database": "t|f",
        "schemas": "public USAGE, snapshot USAGE",  # public: PostgreSQL 15's default for every role
        "functions": "snapshot.capture_progress_rows(), snapshot.start_capture(date,text)",
        "relations": "snapshot.capture_progress SELECT, snapshot.snapshot_runs SELECT",
        "sequences": "0|2",
    }


def _refused(sql: str, user: str | None = AIRFLOW_ROLE) -> str:
    """The error psql prints when user (the Airflow role; None: the superuser) runs sql, which must fail."""
    with pytest.raises(subprocess.CalledProcessError) as refused:
        psql(sql, user=user, variables={"VERBOSITY": "verbose"})
    return refused.value.stderr


def test_what_the_airflow_role_can_do_to_runs(run_gate) -> None:
    """The README's attacker's look at the role, each claim tried as the role itself."""
    days = [(TODAY - timedelta(days=n)).isoformat() for n in (40, 41, 42, 43, 44)]
    run_gate.close(at=200)
    # it starts runs of any past date, saying whatever it likes as triggered_by
    run_ids = [psql(f"SELECT snapshot.start_capture('{day}', 'pg_cron')", user=AIRFLOW_ROLE) for day in days[:4]]
    for day in days[:4]:
        run_gate.wait_for_run_at_gate(day, 200)
    assert psql("SELECT string_agg(DISTINCT triggered_by, ',') FROM snapshot.snapshot_runs") == "pg_cron"
    # and so holds every run slot (snapshot.max_runs = 4): nobody's run starts meanwhile, not even the
    # superuser's, nor a start-and-wait capture_all_snapshots
    for sql in (f"SELECT snapshot.start_capture('{days[4]}', 'airflow')",
                f"SELECT status FROM snapshot.capture_all_snapshots('{days[4]}', 'manual')"):
        assert "ERROR:  53400: 4 capture runs are under way, as many as snapshot.max_runs allows" in _refused(
            sql, user=None), sql
    assert "ERROR:  53400: 4 capture runs" in _refused(f"SELECT snapshot.start_capture('{days[4]}', 'airflow')")
    # it cannot cancel, resume or terminate a run: no grant, and the worker is the extension owner's
    for sql, expected in (
            (f"SELECT snapshot.cancel_capture({run_ids[0]})", "ERROR:  42501: permission denied for function cancel_capture"),
            (f"SELECT snapshot.resume_capture({run_ids[0]})", "ERROR:  42501: permission denied for function resume_capture"),
            (f"SELECT pg_terminate_backend(worker_pid) FROM snapshot.snapshot_runs WHERE run_id = {run_ids[0]}",
             "ERROR:  42501: must be a superuser to terminate superuser process")):
        assert expected in _refused(sql), sql
    # nor read what the runs write, nor their errors
    for sql in ("SELECT count(*) FROM snapshot.portfolio_snapshots", "SELECT count(*) FROM snapshot.snapshot_run_errors",
                "SELECT count(*) FROM portfolios"):
        assert "ERROR:  42501: permission denied for" in _refused(sql), sql
    assert psql("SELECT count(*) FROM snapshot.capture_progress") == "4"
    # a date whose run the owner cancelled, it starts again, as a new run
    assert psql(f"SELECT snapshot.cancel_capture({run_ids[0]})") == "t"
    again = psql(f"SELECT snapshot.start_capture('{days[0]}', 'airflow')", user=AIRFLOW_ROLE)
    assert again != run_ids[0] and run_gate.wait_for_run_at_gate(days[0], 200) == int(again)
    assert psql(f"SELECT string_agg(run_id || ' ' || status, ', ' ORDER BY run_id) FROM snapshot.snapshot_runs"
                f" WHERE snapshot_date = '{days[0]}'") == f"{run_ids[0]} cancelled, {again} running"


def test_scheduled_run_captures_the_previous_utc_day(airflow_env) -> None:
    dag, alerts = airflow_env
    due = datetime.combine(TODAY, time(0, 0), tzinfo=timezone.utc)
    dag_run = dag.test(logical_date=due)
    assert str(dag_run.state) == "success", _states(dag_run)
    run = psql("SELECT run_id, snapshot_date, triggered_by, status, portfolios, captured, failed"
               " FROM snapshot.snapshot_runs").split("|")
    assert run[1:] == [YESTERDAY.isoformat(), "airflow", "succeeded", "300", "300", "0"]
    assert psql(f"SELECT count(*), count(DISTINCT portfolio_id) FROM snapshot.portfolio_snapshots"
                f" WHERE snapshot_date = '{YESTERDAY}'") == "300|300"
    assert psql("SELECT count(*) FROM portfolios") == "300"
    assert not alerts.exists()

    # the pg_cron fallback then finds the day done and does no work
    fallback = psql("SELECT run_id, triggered_by FROM snapshot.capture_all_snapshots_if_missing()")
    assert fallback == f"{run[0]}|airflow"
    assert psql("SELECT count(*) FROM snapshot.snapshot_runs") == "1"


def test_manual_run_with_conf_captures_that_day(airflow_env) -> None:
    dag, _ = airflow_env
    day = (TODAY - timedelta(days=10)).isoformat()
    dag_run = dag.test(run_conf={"snapshot_date": day})
    assert str(dag_run.state) == "success", _states(dag_run)
    assert psql("SELECT snapshot_date, triggered_by, status FROM snapshot.snapshot_runs") == f"{day}|airflow|succeeded"


def test_broken_portfolio_fails_verification_and_notifies(airflow_env) -> None:
    dag, alerts = airflow_env
    broken = psql("SELECT id FROM portfolios ORDER BY id LIMIT 1")
    psql("INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, transaction_date)"
         f" VALUES ('{broken}', NULL, 'sync', 1, 1, now() - interval '3 days')")
    dag_run = dag.test(run_conf={"snapshot_date": YESTERDAY.isoformat()})
    states = _states(dag_run)
    assert str(dag_run.state) == "failed"
    assert (states["start_capture"].endswith("success") and states["wait_for_run"].endswith("success")
            and states["verify_run"].endswith("failed")), states

    run_id, status, failed = psql("SELECT run_id, status, failed FROM snapshot.snapshot_runs").split("|")
    assert (status, failed) == ("partial", "1")
    assert psql("SELECT portfolio_id, sqlstate FROM snapshot.snapshot_run_errors") == f"{broken}|22023"

    [line] = alerts.read_text().splitlines()
    message = json.loads(line)
    assert message["task_id"] == "verify_run"
    assert message["snapshot_date"] == YESTERDAY.isoformat()
    assert f"snapshot run {run_id} for {YESTERDAY} is partial: 1 of 300 portfolios failed" in message["exception"]
    assert "snapshot_run_errors" in message["exception"]


def test_future_conf_date_fails_before_any_sql(airflow_env) -> None:
    dag, alerts = airflow_env
    tomorrow = (TODAY + timedelta(days=1)).isoformat()
    dag_run = dag.test(run_conf={"snapshot_date": tomorrow})
    states = _states(dag_run)
    assert str(dag_run.state) == "failed"
    assert states["resolve_snapshot_date"].endswith("failed") and "success" not in states["start_capture"], states
    assert psql("SELECT count(*) FROM snapshot.snapshot_runs") == "0"
    message = json.loads(alerts.read_text().splitlines()[0])
    assert message["task_id"] == "resolve_snapshot_date" and "is in the future" in message["exception"]


def test_malformed_conf_date_fails_before_any_sql(airflow_env) -> None:
    dag, _ = airflow_env
    dag_run = dag.test(run_conf={"snapshot_date": "29/11/2026"})
    assert str(dag_run.state) == "failed"
    assert psql("SELECT count(*) FROM snapshot.snapshot_runs") == "0"


def test_backfill_runs_capture_one_day_each(airflow_env) -> None:
    """What each run of `airflow backfill create` does: one snapshot run per logical date."""
    dag, _ = airflow_env
    days = [TODAY - timedelta(days=n) for n in (4, 3, 2)]
    for due in days:
        dag_run = dag.test(logical_date=datetime.combine(due, time(0, 0), tzinfo=timezone.utc))
        assert str(dag_run.state) == "success", _states(dag_run)
    assert psql("SELECT string_agg(snapshot_date::text || ' ' || status, ', ' ORDER BY run_id)"
                " FROM snapshot.snapshot_runs") == ", ".join(f"{d - timedelta(days=1)} succeeded" for d in days)
    assert psql("SELECT count(*) FROM snapshot.portfolio_snapshots") == str(300 * len(days))


def test_the_run_due_at_2026_11_30_midnight_captures_2026_11_29(airflow_env) -> None:
    dag, _ = airflow_env
    dag_run = dag.test(logical_date=datetime(2026, 11, 30, 0, 0, tzinfo=timezone.utc))
    assert str(dag_run.state) == "success", _states(dag_run)
    [resolve] = [ti for ti in dag_run.get_task_instances() if ti.task_id == "resolve_snapshot_date"]
    assert resolve.xcom_pull(task_ids="resolve_snapshot_date") == "2026-11-29"
    assert psql("SELECT snapshot_date, triggered_by FROM snapshot.snapshot_runs") == "2026-11-29|airflow"


# -- runs that own themselves: start, wait (reschedule mode), verify --------

def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=timezone.utc)


def test_the_sensor_gives_its_slot_back_while_the_run_goes_on(airflow_env, run_gate) -> None:
    """A run held half-way: the sensor pokes, finds it running, and is rescheduled (no process
    waits); once the run goes on, the sensor ends and verify_run reads the run back."""
    dag, alerts = airflow_env
    run_gate.close(at=200)
    baseline = _last_reschedule_id()

    def release() -> tuple[int, str]:
        try:
            run_id = run_gate.wait_for_run_at_gate(YESTERDAY.isoformat(), 200)
            wait_until(lambda: _reschedules(baseline) >= 2, "two reschedules of the sensor")
            return run_id, psql(f"SELECT status, portfolios FROM snapshot.snapshot_runs WHERE run_id = {run_id}")
        finally:
            run_gate.open()

    with ThreadPoolExecutor(1) as pool:
        watcher = pool.submit(release)
        dag_run = dag.test(logical_date=_midnight(TODAY))
        run_id, while_held = watcher.result(timeout=10)
    assert while_held == "running|200"
    assert str(dag_run.state) == "success", _states(dag_run)
    sensor = _ti(dag_run, "wait_for_run")
    assert _reschedules(ti_id=sensor.id) >= 2
    assert sensor.try_number == 1  # rescheduled, never retried
    assert _ti(dag_run, "start_capture").xcom_pull(task_ids="start_capture") == run_id
    assert psql(f"SELECT status, portfolios, captured, failed FROM snapshot.snapshot_runs WHERE run_id = {run_id}") == (
        "succeeded|300|300|0")
    assert psql("SELECT count(*) FROM snapshot.snapshot_runs") == "1"
    assert not alerts.exists()


def test_a_run_whose_worker_dies_fails_the_sensor_and_the_cleared_dag_run_resumes_it(airflow_env, run_gate) -> None:
    """pg_terminate_backend of the run's worker while the sensor waits: the sensor's next poke
    fails the task (no retry) naming the run; the notification fires. Cleared and run again (dag.test
    of the same logical date clears the DAG run, as Clear does), the DAG run starts the date again:
    the same run, resumed after its 200 committed portfolios, ends with each portfolio captured once."""
    dag, alerts = airflow_env
    day = YESTERDAY.isoformat()
    run_gate.close(at=200)
    baseline = _last_reschedule_id()

    def kill() -> int:
        try:
            run_id = run_gate.wait_for_run_at_gate(day, 200)
            wait_until(lambda: _reschedules(baseline) >= 1, "a reschedule of the sensor")
            pid = psql(f"SELECT worker_pid FROM snapshot.snapshot_runs WHERE run_id = {run_id}")
            assert psql(f"SELECT pg_terminate_backend({pid})") == "t"
            return run_id
        except BaseException:
            run_gate.open()  # let the DAG run end, so that the test fails instead of hanging
            raise

    with ThreadPoolExecutor(1) as pool:
        killer = pool.submit(kill)
        dag_run = dag.test(logical_date=_midnight(TODAY))
        run_id = killer.result(timeout=10)
    states = _states(dag_run)
    assert str(dag_run.state) == "failed"
    assert (states["start_capture"].endswith("success") and states["wait_for_run"].endswith("failed")
            and states["verify_run"].endswith("upstream_failed")), states
    assert _ti(dag_run, "wait_for_run").try_number == 1  # failed at once, not retried
    assert psql(f"SELECT status, reason, portfolios, captured, failed, total FROM snapshot.snapshot_runs"
                f" WHERE run_id = {run_id}") == "failed|interrupted|200|200|0|300"
    [line] = alerts.read_text().splitlines()
    message = json.loads(line)
    assert message["task_id"] == "wait_for_run" and message["snapshot_date"] == day
    assert message["exception"].startswith(
        f"AirflowFailException: snapshot run {run_id} for {day} is failed (reason: interrupted)"
        f" after 200 of 300 portfolios committed, 0 failed; its worker is gone; clear this DAG run"
        f" (from start_capture) to resume run {run_id} after its last committed portfolio;"), message
    assert message["exception"].endswith(f"SELECT * FROM snapshot.snapshot_run_errors WHERE run_id = {run_id}")

    # the README's command clears start_capture and what follows it, not the date's resolution
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "tasks", "clear", "portfolio_daily_snapshot", "-s", TODAY.isoformat(),
                    "-e", TODAY.isoformat(), "-t", "start_capture", "-d", "-y"], check=True, capture_output=True)
    dag_run.refresh_from_db()
    assert _states(dag_run) == {"resolve_snapshot_date": "success", "start_capture": "None",
                                "wait_for_run": "None", "verify_run": "None"}, _states(dag_run)

    run_gate.open()
    cleared_at = psql("SELECT clock_timestamp()")
    dag_run = dag.test(logical_date=_midnight(TODAY))
    assert str(dag_run.state) == "success", _states(dag_run)
    assert _ti(dag_run, "start_capture").xcom_pull(task_ids="start_capture") == run_id
    assert psql(f"SELECT run_id, status, coalesce(reason, '-'), portfolios, captured, failed, total"
                f" FROM snapshot.snapshot_runs WHERE snapshot_date = '{day}'") == f"{run_id}|succeeded|-|300|300|0|300"
    assert psql(f"SELECT count(*), count(DISTINCT portfolio_id), count(*) FILTER (WHERE captured_at < '{cleared_at}')"
                f" FROM snapshot.portfolio_snapshots WHERE snapshot_date = '{day}'") == "300|300|200"
    assert len(alerts.read_text().splitlines()) == 1


def test_a_run_stuck_queued_times_the_sensor_out(airflow_env, run_gate, monkeypatch) -> None:
    """A run whose worker waits before its first batch commits stays queued: at its timeout the
    sensor fails (no retry) naming the run and where to look; the run itself goes on."""
    dag, alerts = airflow_env
    monkeypatch.setattr(dag.get_task("wait_for_run"), "timeout", 4.0)
    run_gate.close(at=None)
    dag_run = dag.test(logical_date=_midnight(TODAY))
    states = _states(dag_run)
    assert str(dag_run.state) == "failed"
    assert states["wait_for_run"].endswith("failed") and states["verify_run"].endswith("upstream_failed"), states
    sensor = _ti(dag_run, "wait_for_run")
    assert sensor.try_number == 1 and _reschedules(ti_id=sensor.id) >= 1
    run_id = _ti(dag_run, "start_capture").xcom_pull(task_ids="start_capture")
    message = json.loads(alerts.read_text().splitlines()[0])
    assert message["task_id"] == "wait_for_run"
    assert message["exception"].startswith(
        f"AirflowSensorTimeout: snapshot run {run_id} for {YESTERDAY} is still queued after the sensor's"
        f" timeout of 0:00:04: 0 portfolios committed (total not counted yet), 0 failed. The run goes on:"
        f" watch SELECT * FROM snapshot.capture_progress WHERE run_id = {run_id}"), message
    assert f"snapshot.cancel_capture({run_id})" in message["exception"]

    assert psql(f"SELECT status, progress FROM snapshot.capture_progress WHERE run_id = {run_id}") == "queued|0"
    run_gate.open()
    wait_until(lambda: psql(f"SELECT status FROM snapshot.snapshot_runs WHERE run_id = {run_id}") == "succeeded",
               "the run to go on and succeed")
