-- examples/airflow_role.sql: the login role the Airflow DAG connects as, with
-- only what the DAG needs: run capture_all_snapshots and read the run tables.
--   psql -d portfolio_db -v airflow_password="'…'" -f examples/airflow_role.sql
-- Without airflow_password the role has no password (for peer/trust set-ups).
\if :{?airflow_role}
\else
\set airflow_role snapshot_airflow
\endif

SELECT format('CREATE ROLE %I LOGIN', :'airflow_role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'airflow_role') \gexec
\if :{?airflow_password}
ALTER ROLE :"airflow_role" PASSWORD :airflow_password;
\endif
GRANT CONNECT ON DATABASE :"DBNAME" TO :"airflow_role";
GRANT USAGE ON SCHEMA snapshot TO :"airflow_role";
GRANT EXECUTE ON FUNCTION snapshot.capture_all_snapshots(date, text) TO :"airflow_role";
GRANT SELECT ON snapshot.snapshot_runs, snapshot.snapshot_run_errors TO :"airflow_role";
