#!/usr/bin/env bash
# scripts/test.sh: the whole test suite.  Installs what is missing, builds the
# extension with -Werror, starts a throwaway cluster in .tmp/test, runs the
# pg_regress suite (pgTAP inside), prints regression.diffs on failure, and
# ends with "N passed, M failed".
source "$(dirname "$0")/lib.sh"

ensure_packages
install_extension
start_cluster test "${SNAPSHOT_TEST_PORT:-54332}"
trap 'stop_cluster test' EXIT

passed=0 failed=0
log "pg_regress: $(sed -n 's/^REGRESS = //p' "$ROOT/Makefile")"
set +e
make -C "$ROOT" -s PG_CONFIG="$PGBIN/pg_config" installcheck 2>&1 | tee "$ROOT/.tmp/test/installcheck.log"
set -e
passed=$(grep -cE '^(test| ) .* \.\.\. ok' "$ROOT/.tmp/test/installcheck.log" || true)
failed=$(grep -cE '^(test| ) .* \.\.\. FAILED' "$ROOT/.tmp/test/installcheck.log" || true)
expected=$(sed -n 's/^REGRESS = //p' "$ROOT/Makefile" | wc -w)
if [ $((passed + failed)) -ne "$expected" ]; then
    echo "pg_regress ran $((passed + failed)) of $expected tests" >&2
    failed=$((expected - passed))
fi
if [ -s "$ROOT/regression.diffs" ] && [ "$failed" -gt 0 ]; then
    echo "---- regression.diffs ----"
    cat "$ROOT/regression.diffs"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
