# Makefile for the snapshot extension (PGXS)

MODULE_big = snapshot
# the objects, listed by layer; the layers and their order are written in
# scripts/check_layers.sh, which checks that every call goes down
OBJS = snapshot.o \
	snapshot_run.o \
	snapshot_leader.o snapshot_worker.o snapshot_performance.o \
	snapshot_batches.o \
	snapshot_walk.o snapshot_writer.o \
	snapshot_reads.o snapshot_source.o \
	snapshot_row.o \
	snapshot_valuation.o snapshot_positions.o \
	snapshot_amount.o

EXTENSION = snapshot
DATA = snapshot--1.5.sql snapshot--1.0.sql snapshot--1.0--1.1.sql snapshot--1.1--1.2.sql snapshot--1.2--1.3.sql \
	snapshot--1.3--1.4.sql snapshot--1.4--1.5.sql
PGFILEDESC = "snapshot - daily portfolio valuation snapshots"

# The tests (README.md, "Tests"): pgTAP inside pg_regress (sql/, expected/);
# isolation specs for what sessions do to each other (specs/, expected/), run
# by pg_isolation_regress; TAP tests with PostgreSQL::Test::Cluster for what
# needs process control (t/*.pl; they start clusters of their own, so run
# them as the user that may run the server: scripts/test.sh does).
REGRESS = configure valuation amounts cash ledgers fx prices errors isolation inputs security attacks limits writes attacks_sessions performance dump fallback upgrade parallel
REGRESS_OPTS = --load-extension=plpgsql
ISOLATION = concurrency fallback_wait lock_queue run_writes
TAP_TESTS = 1

# -Werror where it is wanted: scripts/test.sh (and so CI) builds with WERROR=-Werror
PG_CFLAGS += -Wall -Wextra -Wno-unused-parameter $(WERROR)

# The valuation's fixed-point arithmetic and the positions encoder are the
# capture's own CPU: -O3 (after the server's -O2) took 2-4% off a capture
# (bench notes in the README's Performance section).  SNAPSHOT_OPT= (empty)
# keeps the server's flags, e.g. for a debug, coverage or sanitizer build.
SNAPSHOT_OPT ?= -O3
PG_CFLAGS += $(SNAPSHOT_OPT)

# Export only what the server calls by name (PGDLLEXPORT), as PostgreSQL 16
# builds extensions; snapshot.h says which.
PG_CFLAGS += -fvisibility=hidden '-DPGDLLEXPORT=__attribute__((visibility("default")))'

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies: every object depends on every header
$(OBJS): $(wildcard *.h)
