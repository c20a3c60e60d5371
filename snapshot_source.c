/*-------------------------------------------------------------------------
 *
 * snapshot_source.c
 *	  The application's relations a capture reads: their description, the
 *	  catalog checks made on them at configuration and at every capture,
 *	  and the reads themselves, always with their owner's rights.
 *
 * The security model (README.md, "Security model"): the capture functions
 * are SECURITY DEFINER and owned by a superuser, but the relations they read
 * belong to the application's owner, an ordinary role.  Whatever of that
 * role's runs while a relation is read (a view's or rule's query, a function
 * it calls, a cast, an operator, the planner folding an IMMUTABLE function)
 * must run with that role's rights, never the superuser's.  So, as REFRESH
 * MATERIALIZED VIEW and VACUUM do, every read here switches to the owner
 * with SetUserIdAndSecContext(..., SECURITY_RESTRICTED_OPERATION) for the
 * duration of one SPI call (planning and execution alike), in a GUC nest
 * level that undoes whatever settings the owner's code changed, and then
 * switches back.  A switch costs the same whether the call returns one row
 * or ten thousand, so the walk pays it per fetch, not per row.
 *
 * The owner can change a relation without changing its OID (a table turned
 * into a view by CREATE RULE "_RETURN", a column given a type of its own
 * with a cast of its own), so the relations are checked from the catalogs
 * at every capture, under the lock the capture then holds until it ends,
 * before anything is read.  Each column must be of a type a superuser owns
 * (built in, or from an extension a superuser installed) and cast to the
 * type the capture reads by a function a superuser owns.  No query is
 * planned or run to check anything.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/namespace.h"
#include "access/xact.h"
#include "catalog/pg_am.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "parser/parse_coerce.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "tcop/pquery.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/portal.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "snapshot_source.h"

const char *const snapshot_source_roles[SOURCE_RELATIONS] = {
	"portfolios", "assets", "transactions", "prices", "fx_rates",
};

/* A column the capture reads, and the type it reads it as. */
typedef struct SourceColumn
{
	SourceRelation rel;
	const char *name;
	Oid			type;			/* InvalidOid: any orderable type, read as
								 * text */
} SourceColumn;

static const SourceColumn source_columns[] = {
	{SOURCE_PORTFOLIOS, "id", UUIDOID},
	{SOURCE_PORTFOLIOS, "base_currency", TEXTOID},
	{SOURCE_ASSETS, "id", UUIDOID},
	{SOURCE_ASSETS, "symbol", TEXTOID},
	{SOURCE_ASSETS, "currency", TEXTOID},
	{SOURCE_TRANSACTIONS, "id", InvalidOid},
	{SOURCE_TRANSACTIONS, "portfolio_id", UUIDOID},
	{SOURCE_TRANSACTIONS, "asset_id", UUIDOID},
	{SOURCE_TRANSACTIONS, "type", TEXTOID},
	{SOURCE_TRANSACTIONS, "quantity", NUMERICOID},
	{SOURCE_TRANSACTIONS, "price", NUMERICOID},
	{SOURCE_TRANSACTIONS, "fee", NUMERICOID},
	{SOURCE_TRANSACTIONS, "exchange_rate", NUMERICOID},
	{SOURCE_TRANSACTIONS, "transaction_date", TIMESTAMPTZOID},
	{SOURCE_PRICES, "asset_id", UUIDOID},
	{SOURCE_PRICES, "price_date", DATEOID},
	{SOURCE_PRICES, "close", NUMERICOID},
	{SOURCE_FX_RATES, "from_currency", TEXTOID},
	{SOURCE_FX_RATES, "to_currency", TEXTOID},
	{SOURCE_FX_RATES, "rate_date", DATEOID},
	{SOURCE_FX_RATES, "rate", NUMERICOID},
};

#define TRUSTED_DETAIL "A capture evaluates only types, casts and functions that a superuser owns: " \
	"built in, or from an extension a superuser installed."

/*
 * The quoted, schema-qualified name of a relation; 42P01 when it no longer
 * exists (the configuration holds its OID).
 */
char *
snapshot_source_name(Oid relid, const char *role)
{
	char	   *rel = get_rel_name(relid);
	char	   *nsp = rel ? get_namespace_name(get_rel_namespace(relid)) : NULL;

	if (rel == NULL || nsp == NULL)
		ereport(ERROR,
				errcode(ERRCODE_UNDEFINED_TABLE),
				errmsg("the configured %s relation (OID %u) no longer exists", role, relid),
				errhint("Call snapshot_configure() again with the current relation names."));
	return quote_qualified_identifier(nsp, rel);
}

/*
 * The owner of a type, function or relation, by its syscache.
 */
static Oid
owner_of(int cacheid, Oid oid)
{
	HeapTuple	tup = SearchSysCache1(cacheid, ObjectIdGetDatum(oid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "snapshot: cache lookup failed for object %u of cache %d", oid, cacheid);
	switch (cacheid)
	{
		case TYPEOID:
			owner = ((Form_pg_type) GETSTRUCT(tup))->typowner;
			break;
		case PROCOID:
			owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
			break;
		default:
			owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
			break;
	}
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Require that a function a read would call (a cast, a type's output
 * function, an ordering operator's) is owned by a superuser.
 */
static void
check_function(Oid funcid, const char *relname, const SourceColumn *col, const char *what)
{
	Oid			owner = owner_of(PROCOID, funcid);

	if (!superuser_arg(owner))
		ereport(ERROR,
				errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				errmsg("column \"%s\" of relation %s is read through function %s, which a superuser does not own",
					   col->name, relname, format_procedure(funcid)),
				errdetail("The function is the column's %s; it is owned by role %s. " TRUSTED_DETAIL,
						  what, GetUserNameFromId(owner, false)),
				errhint("Give the column a built-in type, such as %s.",
						format_type_be(OidIsValid(col->type) ? col->type : TEXTOID)));
}

/*
 * Require that a value of type typid can be cast to target only through
 * what a superuser owns.
 */
static void
check_cast(Oid typid, Oid target, const char *relname, const SourceColumn *col)
{
	Oid			funcid = InvalidOid;
	Oid			output;
	bool		varlena;

	if (typid == target)
		return;
	switch (find_coercion_pathway(target, typid, COERCION_EXPLICIT, &funcid))
	{
		case COERCION_PATH_RELABELTYPE:
			return;
		case COERCION_PATH_FUNC:
			check_function(funcid, relname, col, "cast");
			return;
		case COERCION_PATH_COERCEVIAIO:
			getTypeOutputInfo(typid, &output, &varlena);
			check_function(output, relname, col, "output function");
			return;
		case COERCION_PATH_NONE:
		case COERCION_PATH_ARRAYCOERCE:
			break;
	}
	ereport(ERROR,
			errcode(ERRCODE_DATATYPE_MISMATCH),
			errmsg("column \"%s\" of relation %s has an unusable type", col->name, relname),
			errdetail("The column must be castable to %s.", format_type_be(target)));
}

/*
 * Check one column the capture reads: it exists, its type is a superuser's,
 * and so is what casts it (and, for the ledger's id, orders it).
 */
static void
check_column(Oid relid, const char *relname, const SourceColumn *col)
{
	HeapTuple	tup = SearchSysCacheAttName(relid, col->name);
	Oid			typid;
	Oid			typowner;

	if (!HeapTupleIsValid(tup) || ((Form_pg_attribute) GETSTRUCT(tup))->attnum <= 0)
	{
		if (HeapTupleIsValid(tup))
			ReleaseSysCache(tup);
		ereport(ERROR,
				errcode(ERRCODE_UNDEFINED_COLUMN),
				errmsg("column \"%s\" of relation %s does not exist", col->name, relname),
				OidIsValid(col->type)
				? errdetail("The %s relation needs the column %s of a type castable to %s.",
							snapshot_source_roles[col->rel], col->name, format_type_be(col->type))
				: errdetail("The %s relation needs the column %s.",
							snapshot_source_roles[col->rel], col->name));
	}
	typid = ((Form_pg_attribute) GETSTRUCT(tup))->atttypid;
	ReleaseSysCache(tup);

	typowner = owner_of(TYPEOID, typid);
	if (!superuser_arg(typowner))
		ereport(ERROR,
				errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				errmsg("column \"%s\" of relation %s has type %s, which a superuser does not own",
					   col->name, relname, format_type_be(typid)),
				errdetail("The type is owned by role %s. " TRUSTED_DETAIL,
						  GetUserNameFromId(typowner, false)),
				errhint("Give the column a built-in type, such as %s.",
						format_type_be(OidIsValid(col->type) ? col->type : TEXTOID)));

	if (!OidIsValid(col->type))
	{
		/* the ledger's id: ordered by its default B-tree class, read as text */
		TypeCacheEntry *tce = lookup_type_cache(typid, TYPECACHE_LT_OPR);

		if (!OidIsValid(tce->lt_opr))
			ereport(ERROR,
					errcode(ERRCODE_DATATYPE_MISMATCH),
					errmsg("column \"%s\" of relation %s has an unusable type", col->name, relname),
					errdetail("The column must be orderable."));
		check_function(get_opcode(tce->lt_opr), relname, col, "ordering operator");
		check_cast(typid, TEXTOID, relname, col);
	}
	else
		check_cast(typid, col->type, relname, col);
}

/*
 * Check the configured relations from the catalogs; see the header.
 */
Oid
snapshot_check_sources(const Oid relids[SOURCE_RELATIONS], bool lock,
					   char *names[SOURCE_RELATIONS])
{
	Oid			owner = InvalidOid;
	SourceRelation owner_rel = SOURCE_PORTFOLIOS;

	for (int i = 0; i < SOURCE_RELATIONS; i++)
	{
		HeapTuple	tup;
		Form_pg_class rel;

		names[i] = NULL;
		if (!OidIsValid(relids[i]))
			continue;
		if (lock)
			LockRelationOid(relids[i], AccessShareLock);
		names[i] = snapshot_source_name(relids[i], snapshot_source_roles[i]);
		tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relids[i]));
		if (!HeapTupleIsValid(tup))
			elog(ERROR, "snapshot: cache lookup failed for relation %u", relids[i]);
		rel = (Form_pg_class) GETSTRUCT(tup);
		if (rel->relkind != RELKIND_RELATION && rel->relkind != RELKIND_PARTITIONED_TABLE &&
			rel->relkind != RELKIND_VIEW)
		{
			ReleaseSysCache(tup);
			ereport(ERROR,
					errcode(ERRCODE_WRONG_OBJECT_TYPE),
					errmsg("relation %s is not a table or view", names[i]),
					errdetail("The %s relation must be a table, a partitioned table or a view.",
							  snapshot_source_roles[i]));
		}
		if (!OidIsValid(owner))
		{
			owner = rel->relowner;
			owner_rel = i;
		}
		else if (rel->relowner != owner)
		{
			Oid			other = rel->relowner;

			ReleaseSysCache(tup);
			ereport(ERROR,
					errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					errmsg("the configured relations do not share one owner"),
					errdetail("Relation %s is owned by role %s, relation %s by role %s.",
							  names[owner_rel], GetUserNameFromId(owner, false),
							  names[i], GetUserNameFromId(other, false)),
					errhint("A capture reads the relations with their owner's rights: give them one owner "
							"(ALTER TABLE ... OWNER TO ...), then configure again."));
		}
		ReleaseSysCache(tup);
	}

	for (int c = 0; c < (int) lengthof(source_columns); c++)
	{
		const SourceColumn *col = &source_columns[c];

		if (OidIsValid(relids[col->rel]))
			check_column(relids[col->rel], names[col->rel], col);
	}
	return owner;
}

/*
 * Resolve a relation name as the caller wrote it: a qualified name as
 * given, an unqualified one in the first schema of search_path that has it.
 * InvalidOid when there is none.  Reads the catalogs only.
 */
Oid
snapshot_resolve_relation(const char *name, const List *search_path)
{
	RangeVar   *rv = makeRangeVarFromNameList(stringToQualifiedNameList(name));
	ListCell   *lc;

	if (rv->catalogname != NULL && strcmp(rv->catalogname, get_database_name(MyDatabaseId)) != 0)
		ereport(ERROR,
				errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				errmsg("cross-database references are not implemented: \"%s\"", name));
	if (rv->schemaname != NULL)
	{
		Oid			nsp = LookupExplicitNamespace(rv->schemaname, true);

		return OidIsValid(nsp) ? get_relname_relid(rv->relname, nsp) : InvalidOid;
	}
	foreach(lc, search_path)
	{
		Oid			nsp = LookupExplicitNamespace(strVal(lfirst(lc)), true);
		Oid			relid = OidIsValid(nsp) ? get_relname_relid(rv->relname, nsp) : InvalidOid;

		if (OidIsValid(relid))
			return relid;
	}
	return InvalidOid;
}

/*
 * The access method of an index.
 */
static Oid
index_am(Oid indexoid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(indexoid));
	Oid			am;

	if (!HeapTupleIsValid(tup))
		return InvalidOid;
	am = ((Form_pg_class) GETSTRUCT(tup))->relam;
	ReleaseSysCache(tup);
	return am;
}

/*
 * Whether the ledger relation has a B-tree index, without a predicate,
 * leading with (portfolio_id, transaction_date): the order of the walk.
 * A view has none, and needs none of its own.
 */
bool
snapshot_ledger_has_walk_index(Oid relid)
{
	Relation	rel;
	List	   *indexes;
	ListCell   *lc;
	bool		found = false;
	char		relkind = get_rel_relkind(relid);

	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		return true;
	rel = relation_open(relid, AccessShareLock);
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Oid			indexoid = lfirst_oid(lc);
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
		Form_pg_index index;

		if (!HeapTupleIsValid(tup))
			continue;
		index = (Form_pg_index) GETSTRUCT(tup);
		if (index->indnkeyatts >= 2 &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL) &&
			index_am(indexoid) == BTREE_AM_OID &&
			index->indkey.values[0] > 0 && index->indkey.values[1] > 0 &&
			strcmp(get_attname(relid, index->indkey.values[0], false), "portfolio_id") == 0 &&
			strcmp(get_attname(relid, index->indkey.values[1], false), "transaction_date") == 0)
			found = true;
		ReleaseSysCache(tup);
		if (found)
			break;
	}
	list_free(indexes);
	relation_close(rel, AccessShareLock);
	return found;
}

/*
 * Run one statement through SPI with parameters, with the capture's own
 * rights, and check its result code: every statement on the extension's
 * own tables goes through here or through a prepared plan checked the same
 * way.  Reads of the sources go through snapshot_source_query() instead.
 */
void
snapshot_spi_run(const char *sql, int nargs, Oid *types, Datum *values,
				 const char *nulls, bool read_only, int expected)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls,
										   read_only, 0);

	if (rc != expected)
		elog(ERROR, "snapshot: SPI_execute_with_args returned %s for: %s",
			 SPI_result_code_string(rc), sql);
}

/*
 * Whether the current transaction holds a lock on relid stronger than
 * ACCESS SHARE.
 */
static bool
locked_beyond_access_share(Oid relid)
{
	LOCKTAG		tag;

	SET_LOCKTAG_RELATION(tag, MyDatabaseId, relid);
	for (LOCKMODE mode = RowShareLock; mode <= MaxLockMode; mode++)
		if (LockHeldByMe(&tag, mode))
			return true;
	return false;
}

/* See snapshot_source.h. */
bool
snapshot_other_process_sees_all(const Oid relids[SOURCE_RELATIONS], bool wrote_before)
{
	HeapTuple	tup;
	bool		canlogin;

	if (wrote_before || !IsUnderPostmaster || IsolationIsSerializable())
		return false;
	for (int i = 0; i < SOURCE_RELATIONS; i++)
		if (OidIsValid(relids[i]) &&
			(get_rel_persistence(relids[i]) == RELPERSISTENCE_TEMP ||
			 locked_beyond_access_share(relids[i])))
			return false;
	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(GetUserId()));
	if (!HeapTupleIsValid(tup))
		return false;
	canlogin = ((Form_pg_authid) GETSTRUCT(tup))->rolcanlogin;
	ReleaseSysCache(tup);
	return canlogin;
}

/* The rights a read switched from, to switch back to. */
typedef struct OwnerSwitch
{
	Oid			userid;
	int			sec_context;
	int			nestlevel;
} OwnerSwitch;

/*
 * Become the sources' owner, restricted as REFRESH MATERIALIZED VIEW
 * restricts a view's owner, in a GUC nest level of its own.
 */
static void
become_owner(Oid owner, OwnerSwitch *sw)
{
	GetUserIdAndSecContext(&sw->userid, &sw->sec_context);
	SetUserIdAndSecContext(owner, sw->sec_context | SECURITY_RESTRICTED_OPERATION);
	sw->nestlevel = NewGUCNestLevel();
}

/*
 * Undo become_owner(), with every setting the owner's code changed.  On an
 * error in between, (sub)transaction abort does the same.
 */
static void
restore_user(OwnerSwitch *sw)
{
	AtEOXact_GUC(false, sw->nestlevel);
	SetUserIdAndSecContext(sw->userid, sw->sec_context);
}

/*
 * Run one read-only query over the sources as their owner; the rows are in
 * SPI_tuptable.
 */
void
snapshot_source_query(Oid owner, const char *sql, int nargs, Oid *types, Datum *values,
					  long count)
{
	OwnerSwitch sw;
	int			rc;

	become_owner(owner, &sw);
	rc = SPI_execute_with_args(sql, nargs, types, values, NULL, true, count);
	restore_user(&sw);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "snapshot: SPI_execute_with_args returned %s for: %s",
			 SPI_result_code_string(rc), sql);
}

/*
 * Open a no-scroll, read-only cursor over the sources, planned as their
 * owner, under the active snapshot; see SourceCursor.
 */
void
snapshot_source_cursor_open(SourceCursor *cursor, Oid owner, const char *sql, int nargs,
							Oid *types, Datum *values, const Oid *result_types, int nresult)
{
	OwnerSwitch sw;
	uint8		random[16];

	if (!pg_strong_random(random, sizeof(random)))
		elog(ERROR, "snapshot: could not generate a cursor name");
	snprintf(cursor->name, sizeof(cursor->name), "snapshot_");
	for (int i = 0; i < (int) sizeof(random); i++)
		snprintf(cursor->name + 9 + 2 * i, 3, "%02x", random[i]);
	cursor->owner = owner;
	cursor->position = 0;
	cursor->types = result_types;
	cursor->ntypes = nresult;

	become_owner(owner, &sw);
	cursor->portal = SPI_cursor_open_with_args(cursor->name, sql, nargs, types, values, NULL,
											   true, CURSOR_OPT_NO_SCROLL);
	restore_user(&sw);
	if (cursor->portal == NULL)
		elog(ERROR, "snapshot: SPI_cursor_open_with_args failed for: %s", sql);
	cursor->portal->visible = false;
	PinPortal(cursor->portal);
}

/*
 * Fail unless the cursor is still the portal it opened, where it left it:
 * code the capture ran (the owner's) must not have closed, replaced or moved
 * it.
 */
static void
check_cursor(const SourceCursor *cursor)
{
	if (GetPortalByName(cursor->name) != cursor->portal ||
		cursor->portal->status != PORTAL_READY ||
		cursor->portal->portalPos != cursor->position)
		ereport(ERROR,
				errcode(ERRCODE_INVALID_CURSOR_STATE),
				errmsg("a cursor of the capture was closed or moved while it read the sources"),
				errdetail("Code that ran during the read, such as a function a configured view calls, used the capture's cursor."));
}

/*
 * Fetch the next count rows of a source cursor as the owner into dest;
 * returns their number.  The cursor's row type is checked before, and the
 * cursor before and after (it moved by the rows returned, no more).
 */
uint64
snapshot_source_cursor_fetch(SourceCursor *cursor, long count, DestReceiver *dest)
{
	OwnerSwitch sw;
	TupleDesc	desc;
	uint64		n;

	check_cursor(cursor);
	desc = cursor->portal->tupDesc;
	if (desc == NULL || desc->natts != cursor->ntypes)
		elog(ERROR, "snapshot: a source cursor returns %d columns, not %d",
			 desc ? desc->natts : 0, cursor->ntypes);
	for (int i = 0; i < cursor->ntypes; i++)
		if (TupleDescAttr(desc, i)->atttypid != cursor->types[i])
			elog(ERROR, "snapshot: column %d of a source cursor has type %u, not %u",
				 i + 1, TupleDescAttr(desc, i)->atttypid, cursor->types[i]);
	become_owner(cursor->owner, &sw);
	n = PortalRunFetch(cursor->portal, FETCH_FORWARD, count, dest);
	restore_user(&sw);
	cursor->position += n;
	check_cursor(cursor);
	return n;
}

/*
 * Close a source cursor as the owner (ending its executor runs its code's
 * clean-up).
 */
void
snapshot_source_cursor_close(SourceCursor *cursor)
{
	OwnerSwitch sw;

	check_cursor(cursor);
	UnpinPortal(cursor->portal);
	become_owner(cursor->owner, &sw);
	SPI_cursor_close(cursor->portal);
	restore_user(&sw);
	cursor->portal = NULL;
}
