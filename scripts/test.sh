#!/usr/bin/env bash
# scripts/test.sh: the whole test suite.  Installs what is missing, builds the
# extension with -Werror, starts a throwaway cluster in .tmp/test, runs the
# pg_regress suite (pgTAP inside), prints regression.diffs on failure, and
# ends with "N passed, M failed".
source "$(dirname "$0")/lib.sh"
export SNAPSHOT_WERROR=1

ensure_packages
install_extension
bash "$ROOT/scripts/check_layers.sh"
start_cluster test "${SNAPSHOT_TEST_PORT:-54332}"
trap 'stop_cluster test' EXIT

log "pg_regress: $(sed -n 's/^REGRESS = //p' "$ROOT/Makefile")"
set +e
make -C "$ROOT" -s PG_CONFIG="$PGBIN/pg_config" installcheck 2>&1 | tee "$ROOT/.tmp/test/installcheck.log"
set -e
# pg_regress of PostgreSQL 15 prints "test NAME ... ok"; from 16 on, TAP lines "ok N - NAME"
passed=$(grep -cE '^(test| ) .* \.\.\. ok|^ok [0-9]+ +[-+] ' "$ROOT/.tmp/test/installcheck.log" || true)
failed=$(grep -cE '^(test| ) .* \.\.\. FAILED|^not ok [0-9]+ +[-+] ' "$ROOT/.tmp/test/installcheck.log" || true)
expected=$(sed -n 's/^REGRESS = //p' "$ROOT/Makefile" | wc -w)
if [ $((passed + failed)) -ne "$expected" ]; then
    echo "pg_regress ran $((passed + failed)) of $expected tests" >&2
    failed=$((expected - passed))
fi
if [ "$failed" -gt 0 ] && [ -s "$ROOT/regression.diffs" ]; then
    echo "---- regression.diffs ----"
    cat "$ROOT/regression.diffs"
fi
stop_cluster test

# The DAG and the pg_cron fallback: real Airflow (pinned, in a virtual
# environment with an SQLite metadata database) against a real cluster with
# pg_cron preloaded.
ensure_airflow
start_cluster e2e "${SNAPSHOT_E2E_PORT:-54333}" "shared_preload_libraries = 'pg_cron'" \
    "cron.database_name = 'portfolio_e2e'" "cron.use_background_workers = on" "max_worker_processes = 20"
trap 'stop_cluster test; stop_cluster e2e' EXIT
createdb portfolio_e2e
export SNAPSHOT_E2E_PGHOST=$PGHOST SNAPSHOT_E2E_PGPORT=$PGPORT SNAPSHOT_E2E_PGUSER=$PGUSER
log "pytest: dags/tests"
set +e
(cd "$ROOT/dags" && "$VENV/bin/python" -m pytest -p no:cacheprovider -q tests) 2>&1 | tee "$ROOT/.tmp/pytest.log"
set -e
summary=$( (grep -E '^(=+ )?[0-9]+ (passed|failed)|^(=+ )?no tests ran' "$ROOT/.tmp/pytest.log" || true) | tail -1)
py_passed=$( (echo "$summary" | grep -oE '[0-9]+ passed' || true) | awk '{n += $1} END {print n + 0}')
py_failed=$( (echo "$summary" | grep -oE '[0-9]+ (failed|error|errors)' || true) | awk '{n += $1} END {print n + 0}')
[ -n "$py_passed" ] || py_passed=0
[ -n "$py_failed" ] || py_failed=0
[ "$py_passed" -gt 0 ] || py_failed=$((py_failed + 1))   # pytest that ran nothing has failed

passed=$((passed + py_passed))
failed=$((failed + py_failed))
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
