#!/usr/bin/env bash
# scripts/test.sh: the whole test suite.  Installs what is missing, builds the
# extension with -Werror, starts a throwaway cluster in .tmp/test and runs,
# through PGXS's installcheck, the pg_regress files (pgTAP inside) and the
# isolation specs against it, then the TAP tests of t/ (each starts clusters
# of its own), then the DAG's pytest suite; prints the diffs and logs of what
# failed and ends with "N passed, M failed": each pg_regress file, spec, TAP
# file and pytest test counts once.
source "$(dirname "$0")/lib.sh"
export SNAPSHOT_WERROR=1

ensure_packages
install_extension
bash "$ROOT/scripts/check_layers.sh"

passed=0
failed=0
failures=()
# tally NAME...: count each test NAME as passed when ok_in NAME says so, else
# as failed (it failed, or never ran)
tally() {
    local name
    for name in "$@"; do
        if ok_in "$name"; then
            passed=$((passed + 1))
        else
            failed=$((failed + 1))
            failures+=("$name")
        fi
    done
}
# run_ok LOG NAME: whether pg_regress or pg_isolation_regress reported test
# NAME passed; PostgreSQL 15 prints "test NAME ... ok", 16 on "ok N - NAME"
run_ok() {
    grep -qE "^(test +| +)$2 +\.\.\. ok( |\$)|^ok [0-9]+ +[-+] $2( |\$)" "$1"
}

start_cluster test "${SNAPSHOT_TEST_PORT:-54332}"
trap 'stop_cluster test' EXIT

regress=$(sed -n 's/^REGRESS = //p' "$ROOT/Makefile")
log "pg_regress: $regress"
set +e
make -C "$ROOT" -s PG_CONFIG="$PGBIN/pg_config" installcheck ISOLATION= TAP_TESTS= 2>&1 |
    tee "$ROOT/.tmp/test/installcheck.log"
set -e
failed_before=$failed
ok_in() { run_ok "$ROOT/.tmp/test/installcheck.log" "$1"; }
tally $regress
if [ "$failed" -gt "$failed_before" ] && [ -s "$ROOT/regression.diffs" ]; then
    echo "---- regression.diffs ----"
    cat "$ROOT/regression.diffs"
fi

# Every spec counts, listed in ISOLATION or not.  The specs carry a copy of
# examples/schema.sql in their setup (a spec cannot include a file): a spec
# whose copy differs from the file fails.
isolation=$(sed -n 's/^ISOLATION = //p' "$ROOT/Makefile")
specs=$( (cd "$ROOT/specs" && ls -- *.spec; printf '%s.spec\n' $isolation) | sed 's/\.spec$//' | sort -u)
log "pg_isolation_regress: $isolation"
set +e
make -C "$ROOT" -s PG_CONFIG="$PGBIN/pg_config" installcheck REGRESS= TAP_TESTS= 2>&1 |
    tee "$ROOT/.tmp/test/isolation.log"
set -e
failed_before=$failed
current_copy() {
    [ -f "$ROOT/specs/$1.spec" ] || { echo "specs/$1.spec does not exist" >&2; return 1; }
    perl -0777 -e 'open my $s, "<", $ARGV[0] or exit 1; open my $e, "<", $ARGV[1] or exit 1;
                   exit(index(<$s>, <$e>) < 0 ? 1 : 0)' "$ROOT/specs/$1.spec" "$ROOT/examples/schema.sql" ||
        { echo "specs/$1.spec: its copy of examples/schema.sql differs from the file" >&2; return 1; }
}
ok_in() { run_ok "$ROOT/.tmp/test/isolation.log" "$1" && current_copy "$1"; }
tally $specs
if [ "$failed" -gt "$failed_before" ] && [ -s "$ROOT/output_iso/regression.diffs" ]; then
    echo "---- output_iso/regression.diffs ----"
    cat "$ROOT/output_iso/regression.diffs"
fi
stop_cluster test

# TAP: each t/*.pl starts (and kills) clusters of its own, which only the
# server's OS user may run, so prove (PGXS's installcheck with TAP_TESTS = 1)
# runs as that user; as root, in a copy of what the tests read, in a
# directory that user owns.
tap_dir=$ROOT
if [ "$(id -u)" -eq 0 ]; then
    tap_dir=$(server_dir tap)
    cp -r "$ROOT/Makefile" "$ROOT/t" "$ROOT/examples" "$tap_dir/"
    chown -R postgres: "$tap_dir"
fi
tap_files=$(cd "$ROOT" && ls -- t/*.pl)
log "TAP: $(echo $tap_files)"
set +e
as_server make -C "$tap_dir" -s PG_CONFIG="$PGBIN/pg_config" installcheck REGRESS= ISOLATION= 2>&1 |
    tee "$ROOT/.tmp/tap.log"
set -e
# prove prints "t/NAME.pl .. ok" for a file whose tests all passed, as many
# as it planned, and that exited 0; anything else (a failed test, a wrong
# plan, a death, a file that never ran) fails the file: its logs are printed
failed_before=$failed
ok_in() { grep -qE "^$1 \.+ ok( |\$)" "$ROOT/.tmp/tap.log"; }
tally $tap_files
if [ "$failed" -gt "$failed_before" ]; then
    for file in $tap_files; do
        ok_in "$file" && continue
        for f in "$tap_dir/tmp_check/log/regress_log_$(basename "$file" .pl)" \
                 "$tap_dir/tmp_check/log/$(basename "$file" .pl)"_*.log; do
            [ -f "$f" ] || continue
            echo "---- ${f#"$tap_dir/"} ----"
            cat "$f"
        done
    done
fi

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
[ "$py_failed" -eq 0 ] || failures+=("pytest ($py_failed)")
[ ${#failures[@]} -eq 0 ] || echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
