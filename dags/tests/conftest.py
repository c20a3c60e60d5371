"""Shared fixtures of the DAG tests.

scripts/test.sh runs these in a virtual environment with dags/requirements.txt,
an SQLite Airflow metadata database in a temporary AIRFLOW_HOME (migrated
before pytest starts), and a PostgreSQL 15 cluster with pg_cron preloaded whose
socket directory and port are in SNAPSHOT_E2E_PGHOST / SNAPSHOT_E2E_PGPORT.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pytest

DAGS = Path(__file__).resolve().parents[1]
ROOT = DAGS.parent
sys.path.insert(0, str(DAGS))

E2E_DB = "portfolio_e2e"
AIRFLOW_ROLE = "snapshot_airflow"
T = TypeVar("T")


def _pg_env() -> dict[str, str]:
    host = os.environ.get("SNAPSHOT_E2E_PGHOST")
    if not host:
        pytest.skip("no PostgreSQL cluster for the end-to-end tests (run scripts/test.sh)")
    return {
        **os.environ,
        "PGHOST": host,
        "PGPORT": os.environ["SNAPSHOT_E2E_PGPORT"],
        "PGUSER": os.environ.get("SNAPSHOT_E2E_PGUSER", "postgres"),
        "PGDATABASE": E2E_DB,
    }


def psql(sql: str | None = None, *, file: Path | None = None, variables: dict[str, str] | None = None,
         database: str = E2E_DB, user: str | None = None) -> str:
    """Run SQL (or a file) through psql as the superuser (or user); return its unaligned output."""
    cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database]
    if user:
        cmd += ["-U", user]
    for name, value in (variables or {}).items():
        cmd += ["-v", f"{name}={value}"]
    cmd += ["-f", str(file)] if file else ["-c", sql or ""]
    return subprocess.run(cmd, env=_pg_env(), check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="session")
def portfolio_db() -> Iterator[dict[str, str]]:
    """The demo database with the extension, pg_cron and the Airflow role; yields libpq settings."""
    env = _pg_env()
    # the database is pg_cron's (cron.database_name), created with the cluster:
    # empty it rather than drop it from under the pg_cron launcher
    psql("DROP EXTENSION IF EXISTS snapshot; DROP EXTENSION IF EXISTS pg_cron;"
         " DROP TABLE IF EXISTS transactions, asset_prices, fx_rates, assets, portfolios;"
         f" DROP OWNED BY {AIRFLOW_ROLE}; DROP ROLE {AIRFLOW_ROLE}"
         if psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{AIRFLOW_ROLE}'") == "1" else
         "DROP EXTENSION IF EXISTS snapshot; DROP EXTENSION IF EXISTS pg_cron;"
         " DROP TABLE IF EXISTS transactions, asset_prices, fx_rates, assets, portfolios")
    psql(file=ROOT / "examples" / "schema.sql")
    psql(file=ROOT / "examples" / "demo_data.sql", variables={"portfolios": "300"})
    psql("CREATE EXTENSION snapshot; CREATE EXTENSION pg_cron;"
         " SELECT snapshot.snapshot_configure(fx_rates => 'fx_rates')")
    psql(file=ROOT / "examples" / "airflow_role.sql")
    yield {"host": env["PGHOST"], "port": env["PGPORT"], "dbname": E2E_DB}


@pytest.fixture()
def clean_runs(portfolio_db: dict[str, str]) -> dict[str, str]:
    """No runs, no snapshots, no pg_cron jobs: each test starts from the data alone."""
    psql("TRUNCATE snapshot.snapshot_runs, snapshot.snapshot_run_errors, snapshot.portfolio_snapshots;"
         " SELECT cron.unschedule(jobid) FROM cron.job;"
         " DELETE FROM transactions WHERE type = 'sync'")
    return portfolio_db


def wait_until(probe: Callable[[], T], what: str, timeout: float = 60) -> T:
    """Call probe every 0.2 s until it returns something true; return that, or fail naming what."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        time.sleep(0.2)


class RunGate:
    """Stops a run's worker at one portfolio for as long as it is closed.

    The configured portfolios relation is a view that calls run_gate_passes(id)
    for each row. In a run's worker walking a batch (pg_stat_activity says
    "snapshot capture run N: batch k of n"), the row the table run_gate names
    waits for advisory lock 4242, which the gate's own session holds while
    closed (t/004_runs.pl stops runs the same way). With snapshot.commit_every
    = 100, snapshot.batch_size = 10 (the walk fetches 100 portfolios at a time)
    and index scans, a run closed at the portfolio of rank 200 (in id order)
    has committed two batches, 200 portfolios, and is running. Closed at None,
    a run's worker waits at the first portfolio it reads (its first batch
    counts them before it walks): nothing committed, the run still queued.
    """

    LOCK = 4242

    def __init__(self) -> None:
        import psycopg2

        env = _pg_env()
        self.holder = psycopg2.connect(host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"],
                                       dbname=E2E_DB)
        self.holder.autocommit = True
        self.closed = False

    def close(self, at: int | None) -> None:
        """Close the gate at the portfolio of rank at, or (None) at the first a run reads."""
        with self.holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (self.LOCK,))
        self.closed = True
        psql("DELETE FROM run_gate; " + (
            "INSERT INTO run_gate VALUES (NULL)" if at is None else
            f"INSERT INTO run_gate SELECT id FROM portfolios ORDER BY id OFFSET {int(at)} LIMIT 1"))

    def open(self) -> None:
        psql("DELETE FROM run_gate")
        if self.closed:
            with self.holder.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (self.LOCK,))
            self.closed = False

    def wait_for_run_at_gate(self, snapshot_date: str, committed: int) -> int:
        """The id of the date's run once its worker waits at the gate with committed portfolios.

        Reads snapshot_runs and pg_stat_activity only: never capture_progress,
        which would record a dead worker's run.
        """
        def at_gate() -> int:
            row = psql("SELECT r.run_id FROM snapshot.snapshot_runs r JOIN pg_stat_activity a ON a.pid = r.worker_pid"
                       f" WHERE r.snapshot_date = '{snapshot_date}' AND r.portfolios = {int(committed)}"
                       " AND a.wait_event = 'advisory'")
            return int(row) if row else 0
        return wait_until(at_gate, f"the run of {snapshot_date} waiting at the gate, {committed} committed")


@pytest.fixture()
def run_gate(clean_runs: dict[str, str]) -> Iterator[RunGate]:
    """The demo data read through RunGate's view; afterwards the gate open, every run ended, as before."""
    psql("""
CREATE TABLE run_gate (portfolio_id uuid);
CREATE FUNCTION run_gate_passes(id uuid) RETURNS boolean LANGUAGE plpgsql COST 100000 AS $$
DECLARE
    me record;
BEGIN
    IF EXISTS (SELECT FROM public.run_gate) THEN
        SELECT a.backend_type, a.query INTO me
          FROM pg_catalog.pg_stat_activity a WHERE a.pid = pg_catalog.pg_backend_pid();
        IF me.backend_type = 'snapshot capture run'
           AND EXISTS (SELECT FROM public.run_gate g
                        WHERE g.portfolio_id IS NULL
                           OR (g.portfolio_id = id AND me.query LIKE 'snapshot capture run %: batch %')) THEN
            PERFORM pg_catalog.pg_advisory_lock_shared(4242);
            PERFORM pg_catalog.pg_advisory_unlock_shared(4242);
        END IF;
    END IF;
    RETURN true;
END $$;
CREATE VIEW portfolios_run_gated AS SELECT id, base_currency FROM portfolios WHERE run_gate_passes(id);
SET client_min_messages = warning;
SELECT snapshot.snapshot_configure(portfolios => 'portfolios_run_gated', fx_rates => 'fx_rates');
ALTER DATABASE portfolio_e2e SET snapshot.commit_every = 100;
ALTER DATABASE portfolio_e2e SET snapshot.batch_size = 10;
ALTER DATABASE portfolio_e2e SET enable_seqscan = off;""")
    gate = RunGate()
    try:
        yield gate
    finally:
        gate.open()
        gate.holder.close()
        wait_until(lambda: psql("SELECT count(*) FROM snapshot.capture_progress") == "0",
                   "every run to end after the test")
        psql("""
SET client_min_messages = warning;
SELECT snapshot.snapshot_configure(fx_rates => 'fx_rates');
DROP VIEW portfolios_run_gated; DROP FUNCTION run_gate_passes(uuid); DROP TABLE run_gate;
ALTER DATABASE portfolio_e2e RESET snapshot.commit_every;
ALTER DATABASE portfolio_e2e RESET snapshot.batch_size;
ALTER DATABASE portfolio_e2e RESET enable_seqscan;""")
