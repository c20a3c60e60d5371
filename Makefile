# Makefile for the snapshot extension (PGXS)

MODULE_big = snapshot
# in layer order, top first (scripts/check_layers.sh checks that calls go down)
OBJS = snapshot.o \
	snapshot_run.o \
	snapshot_leader.o snapshot_worker.o snapshot_performance.o \
	snapshot_walk.o snapshot_writer.o \
	snapshot_reads.o snapshot_source.o \
	snapshot_row.o \
	snapshot_valuation.o snapshot_positions.o \
	snapshot_amount.o

EXTENSION = snapshot
DATA = snapshot--1.5.sql snapshot--1.0.sql snapshot--1.0--1.1.sql snapshot--1.1--1.2.sql snapshot--1.2--1.3.sql \
	snapshot--1.3--1.4.sql snapshot--1.4--1.5.sql
PGFILEDESC = "snapshot - daily portfolio valuation snapshots"

# Every test file runs pgTAP inside pg_regress; see README.md ("Tests").
REGRESS = configure valuation amounts cash ledgers fx prices errors isolation inputs security attacks limits attacks_sessions performance concurrency dump fallback upgrade parallel
REGRESS_OPTS = --load-extension=plpgsql

# -Werror where it is wanted: scripts/test.sh (and so CI) builds with WERROR=-Werror
PG_CFLAGS += -Wall -Wextra -Wno-unused-parameter $(WERROR)

# Export only what the server calls by name (PGDLLEXPORT), as PostgreSQL 16
# builds extensions; snapshot.h says which.
PG_CFLAGS += -fvisibility=hidden '-DPGDLLEXPORT=__attribute__((visibility("default")))'

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies: every object depends on every header
$(OBJS): $(wildcard *.h)
