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
from pathlib import Path
from typing import Iterator

import pytest

DAGS = Path(__file__).resolve().parents[1]
ROOT = DAGS.parent
sys.path.insert(0, str(DAGS))

E2E_DB = "portfolio_e2e"
AIRFLOW_ROLE = "snapshot_airflow"


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
         database: str = E2E_DB) -> str:
    """Run SQL (or a file) through psql as the superuser; return its unaligned output."""
    cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database]
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
