-- examples/airflow_role.sql: the login role the Airflow DAG connects as, with
-- only what the DAG does: start a run (start_capture), watch it (the
-- capture_progress view and its function) and read it back (snapshot_runs).
--   psql -d portfolio_db -v airflow_password="'…'" -f examples/airflow_role.sql
-- Without airflow_password the role has no password (for peer/trust set-ups).
-- Run it again after an upgrade: it also revokes what earlier versions of this
-- script granted and the DAG no longer uses.
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
-- start_capture: the start_capture task
GRANT EXECUTE ON FUNCTION snapshot.start_capture(date, text) TO :"airflow_role";
-- the view and the function behind it: the wait_for_run sensor (a view's
-- function is checked against the role that reads the view)
GRANT EXECUTE ON FUNCTION snapshot.capture_progress_rows() TO :"airflow_role";
GRANT SELECT ON snapshot.capture_progress TO :"airflow_role";
-- the run's row: the sensor and verify_run
GRANT SELECT ON snapshot.snapshot_runs TO :"airflow_role";

-- what earlier versions of this script granted, before the DAG started runs
REVOKE EXECUTE ON FUNCTION snapshot.capture_all_snapshots(date, text) FROM :"airflow_role";
REVOKE SELECT ON snapshot.snapshot_run_errors FROM :"airflow_role";
