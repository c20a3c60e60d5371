#!/usr/bin/env bash
# scripts/lib.sh: shared helpers of scripts/demo.sh and scripts/test.sh.
# Installs what is missing (as root, from Debian), builds and installs the
# extension, and runs throwaway PostgreSQL clusters under .tmp/ in the project.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_MAJOR=15
# SNAPSHOT_PGBIN: another installation's bin directory to build, install and test with
PGBIN=${SNAPSHOT_PGBIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
# perl (prove) and libipc-run-perl: the TAP tests of t/ (PostgreSQL::Test::Cluster
# comes with postgresql-client-$PG_MAJOR, pg_isolation_regress with the server-dev)
DEBIAN_PACKAGES=(postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-$PG_MAJOR-pgtap
                 postgresql-$PG_MAJOR-cron libtap-parser-sourcehandler-pgtap-perl make gcc
                 perl libipc-run-perl python3 python3-venv)
VENV="$ROOT/.tmp/venv"
BENCH_VENV="$ROOT/.tmp/bench-venv"

log() { printf '==> %s\n' "$*" >&2; }

# Install the Debian packages the project needs, when any is missing.
ensure_packages() {
    local missing=()
    for p in "${DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "missing packages ${missing[*]}; install them as root" >&2; exit 1; }
        sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Build (with -Werror when SNAPSHOT_WERROR is set, as scripts/test.sh sets
# it) and install the extension into the PostgreSQL tree.
install_extension() {
    log "building and installing the extension"
    make -C "$ROOT" -s PG_CONFIG="$PGBIN/pg_config" ${SNAPSHOT_WERROR:+WERROR=-Werror} >/dev/null
    local sharedir; sharedir=$("$PGBIN/pg_config" --sharedir)
    if [ -w "$sharedir/extension" ]; then
        make -C "$ROOT" -s PG_CONFIG="$PGBIN/pg_config" install >/dev/null
    else
        sudo make -C "$ROOT" -s PG_CONFIG="$PGBIN/pg_config" install >/dev/null
    fi
}

# The OS user that runs the server: postgres when we are root.
server_user() { if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi; }
as_server() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# server_dir NAME: a fresh, empty .tmp/NAME that the server's OS user owns
# and can reach; prints its physical path.
server_dir() {
    local name=$1
    local dir="$ROOT/.tmp/$name"
    rm -rf "$dir" "$(readlink "$dir" 2>/dev/null || true)"
    mkdir -p "$ROOT/.tmp"
    if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$ROOT/.tmp" 2>/dev/null; then
        chmod 755 "$ROOT/.tmp" 2>/dev/null || true
    fi
    if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$ROOT/.tmp" 2>/dev/null; then
        # the checkout is not reachable by the postgres user (a private
        # parent folder): keep the directory in /tmp, linked from .tmp/NAME
        local real; real=$(mktemp -d "/tmp/snapshot-$name.XXXXXX")
        chmod 755 "$real"
        ln -s "$real" "$dir"
    fi
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown -R postgres: "$dir/"
    (cd "$dir" && pwd -P)
}

# start_cluster NAME PORT [extra postgresql.conf lines]: a fresh cluster in
# .tmp/NAME, listening only on a Unix socket in .tmp/NAME/run.  Exports
# PGHOST, PGPORT, PGUSER and PGDATABASE for the callers' psql.
start_cluster() {
    local name=$1 port=$2; shift 2
    local dir
    stop_cluster "$name"
    dir=$(server_dir "$name")
    as_server mkdir -p "$dir/run"
    as_server "$PGBIN/initdb" -D "$dir/data" -U "$(server_user)" --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1
    {
        echo "listen_addresses = ''"
        echo "unix_socket_directories = '$dir/run'"
        echo "port = $port"
        echo "timezone = 'UTC'"
        echo "max_connections = 50"
        echo "fsync = off"
        for line in "$@"; do echo "$line"; done
    } >>"$dir/data/postgresql.conf"
    as_server "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
    export PGHOST="$dir/run" PGPORT=$port PGUSER=$(server_user) PGDATABASE=postgres
    log "cluster $name is up (PGHOST=$PGHOST PGPORT=$PGPORT)"
}

stop_cluster() {
    local dir="$ROOT/.tmp/$1"
    [ -f "$dir/data/postmaster.pid" ] || return 0
    as_server "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# A virtual environment with dags/requirements.txt and, for the tests,
# dags/requirements-test.txt (both pinned by dags/constraints.txt), and an
# SQLite Airflow metadata database in a fresh AIRFLOW_HOME under .tmp/.
# Reuses the environment while the pins are unchanged.
ensure_airflow() {
    local stamp; stamp=$(cat "$ROOT/dags/requirements.txt" "$ROOT/dags/requirements-test.txt" \
                            "$ROOT/dags/constraints.txt" | sha256sum | cut -c1-16)
    if [ "$(cat "$VENV/.pins" 2>/dev/null)" != "$stamp" ]; then
        log "installing Airflow and the providers into $VENV"
        rm -rf "$VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check \
            -r "$ROOT/dags/requirements.txt" -r "$ROOT/dags/requirements-test.txt" -c "$ROOT/dags/constraints.txt"
        echo "$stamp" >"$VENV/.pins"
    fi
    export AIRFLOW_HOME="$ROOT/.tmp/airflow_home"
    rm -rf "$AIRFLOW_HOME"; mkdir -p "$AIRFLOW_HOME"
    export AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags" \
           AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db" \
           AIRFLOW__CORE__UNIT_TEST_MODE=False
    log "airflow db migrate (SQLite in $AIRFLOW_HOME)"
    "$VENV/bin/airflow" db migrate >"$AIRFLOW_HOME/migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/migrate.log"; return 1; }
}

# A virtual environment with bench/requirements.txt (pinned by
# bench/constraints.txt): the benchmark's driver and the charts.  Reused while
# the pins are unchanged.
ensure_bench_venv() {
    local stamp; stamp=$(cat "$ROOT/bench/requirements.txt" "$ROOT/bench/constraints.txt" | sha256sum | cut -c1-16)
    if [ "$(cat "$BENCH_VENV/.pins" 2>/dev/null)" != "$stamp" ]; then
        log "installing the benchmark's Python packages into $BENCH_VENV"
        rm -rf "$BENCH_VENV"; python3 -m venv "$BENCH_VENV"
        "$BENCH_VENV/bin/pip" install -q --disable-pip-version-check \
            -r "$ROOT/bench/requirements.txt" -c "$ROOT/bench/constraints.txt"
        echo "$stamp" >"$BENCH_VENV/.pins"
    fi
}
