/*-------------------------------------------------------------------------
 *
 * snapshot_source.h
 *	  The application's relations a capture reads (the sources): which ones,
 *	  the columns each must have, the checks made on them, and the one place
 *	  where a read switches to their owner's rights.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNAPSHOT_SOURCE_H
#define SNAPSHOT_SOURCE_H

#include "executor/spi.h"
#include "nodes/pg_list.h"

/* The relations snapshot_configure() names, in the order of its arguments. */
typedef enum SourceRelation
{
	SOURCE_PORTFOLIOS,
	SOURCE_ASSETS,
	SOURCE_TRANSACTIONS,
	SOURCE_PRICES,
	SOURCE_FX_RATES,			/* optional */
	SOURCE_RELATIONS
} SourceRelation;

/* "portfolios", "assets", ... : how messages name each relation's role */
extern const char *const snapshot_source_roles[SOURCE_RELATIONS];

/*
 * Check the configured relations from the catalogs: they exist, are tables,
 * partitioned tables or views, share one owner, and have every column the
 * capture reads, of a type and with a cast to the type read that a
 * superuser owns.  With lock, each is first locked in AccessShareLock, so
 * that nothing checked can change until the transaction ends.  Returns the
 * owner, and sets names[] to their quoted, qualified names (NULL where a
 * relation is not configured).  relids[SOURCE_FX_RATES] may be InvalidOid.
 */
extern Oid	snapshot_check_sources(const Oid relids[SOURCE_RELATIONS], bool lock,
								   char *names[SOURCE_RELATIONS]);

/*
 * Whether another process (a valuation worker, a run's worker) would read
 * exactly what the current transaction reads: not when the transaction
 * wrote before the capture (wrote_before: the other process cannot see
 * it), not when it holds a lock stronger than ACCESS SHARE on a configured
 * relation (LOCK TABLE takes no transaction id under wal_level = minimal,
 * and what it locked it may be about to change; the other process would
 * wait for it), not when a configured relation is temporary (it belongs to
 * this session), not under SERIALIZABLE (the other's reads would not take
 * part in this transaction's conflict checks), and not when the current
 * user cannot log in (the other process connects as it).  The one place
 * this is decided.
 */
extern bool snapshot_other_process_sees_all(const Oid relids[SOURCE_RELATIONS],
											bool wrote_before);

/* The quoted, schema-qualified name of a relation (42P01 when it is gone). */
extern char *snapshot_source_name(Oid relid, const char *role);

/*
 * A relation name as snapshot_configure() is given it: qualified, as given;
 * else in the first schema of search_path (a list of String) that has it.
 */
extern Oid	snapshot_resolve_relation(const char *name, const List *search_path);

/* Whether a ledger table has an index that serves the ordered walk. */
extern bool snapshot_ledger_has_walk_index(Oid relid);

/* A statement on the extension's own tables, with the capture's rights. */
extern void snapshot_spi_run(const char *sql, int nargs, Oid *types, Datum *values,
							 const char *nulls, bool read_only, int expected);

/*
 * Reads of the sources, always as their owner under
 * SECURITY_RESTRICTED_OPERATION, with any setting the owner's code changes
 * undone afterwards.  Each call switches once, whatever the number of rows:
 * the SQL is read-only, parameterised and schema-qualified.
 */
extern void snapshot_source_query(Oid owner, const char *sql, int nargs,
								  Oid *types, Datum *values, long count);

/*
 * A cursor over the sources.  The owner's code runs while it is open, so its
 * portal has a random name, is hidden from pg_cursors and pinned (no CLOSE
 * can drop it), and before each fetch it is checked to be the same portal at
 * the same position; each fetch is checked to return the column types
 * expected.
 */
typedef struct SourceCursor
{
	Oid			owner;
	Portal		portal;
	char		name[48];
	uint64		position;
	const Oid  *types;			/* of the columns, ntypes of them */
	int			ntypes;
} SourceCursor;

extern void snapshot_source_cursor_open(SourceCursor *cursor, Oid owner, const char *sql,
										int nargs, Oid *types, Datum *values,
										const Oid *result_types, int nresult);
extern uint64 snapshot_source_cursor_fetch(SourceCursor *cursor, long count,
										   DestReceiver *dest);
extern void snapshot_source_cursor_close(SourceCursor *cursor);

#endif							/* SNAPSHOT_SOURCE_H */
