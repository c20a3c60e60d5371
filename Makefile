# Makefile for the snapshot extension (PGXS)

MODULE_big = snapshot
OBJS = snapshot.o snapshot_amount.o snapshot_capture.o snapshot_parallel.o snapshot_performance.o snapshot_source.o snapshot_valuation.o

EXTENSION = snapshot
DATA = snapshot--1.0.sql snapshot--1.0--1.1.sql snapshot--1.1--1.2.sql snapshot--1.2--1.3.sql
PGFILEDESC = "snapshot - daily portfolio valuation snapshots"

# The tests (README.md, "Tests"): pgTAP inside pg_regress (sql/, expected/);
# isolation specs for what sessions do to each other (specs/, expected/), run
# by pg_isolation_regress; TAP tests with PostgreSQL::Test::Cluster for what
# needs process control (t/*.pl; they start clusters of their own, so run
# them as the user that may run the server: scripts/test.sh does).
REGRESS = configure valuation amounts cash fx prices errors isolation inputs security attacks limits attacks_sessions performance dump fallback upgrade parallel
REGRESS_OPTS = --load-extension=plpgsql
ISOLATION = concurrency fallback_wait lock_queue
TAP_TESTS = 1

# -Werror where it is wanted: scripts/test.sh (and so CI) builds with WERROR=-Werror
PG_CFLAGS += -Wall -Wextra -Wno-unused-parameter $(WERROR)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
