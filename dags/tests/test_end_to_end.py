"""Real DAG runs (dag.test) against a real PostgreSQL with the extension and demo
data, connected as the limited Airflow role from examples/airflow_role.sql.

The sensor's poke interval is cut to a second here, and its timeout to two
minutes, so that no test can hang."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone

import pytest

from conftest import AIRFLOW_ROLE, ROOT, psql

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

