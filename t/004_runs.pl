# Runs that own themselves (start_capture): progress seen by another
# session, one run per date, kill -9 of the run's worker half-way and an
# immediate restart (the run is recorded failed/interrupted and resumes with
# the same run id, ending with exactly the figures of an uninterrupted
# capture), cancel_capture, and no free background worker slot.
#
# The configured portfolios relation is a view that stops a run's worker
# walking a batch (not counting the portfolios) at portfolio 201 while the
# test holds advisory lock 4242: with snapshot.commit_every = 100 (and an
# index scan, so that a batch reads no portfolio beyond its own) a run has
# committed exactly two batches (200 portfolios) when it waits there.
use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SnapshotTest;
use Test::More;

# the gate: in a run's process walking a batch, the portfolio the table gate
# names waits for advisory lock 4242 (held by the test's holder session);
# an owner's view may also release every advisory lock of the process
# reading it (table unlock_all)
my $run_gate_function = q{
CREATE OR REPLACE FUNCTION run_gate_passes(id uuid) RETURNS boolean LANGUAGE plpgsql COST 100000 AS $$
BEGIN
    IF EXISTS (SELECT FROM public.unlock_all) THEN
        PERFORM pg_catalog.pg_advisory_unlock_all();
    END IF;
    IF EXISTS (SELECT FROM public.gate g WHERE g.portfolio_id = id AND g.leader_pid <> pg_catalog.pg_backend_pid())
       AND (SELECT a.query FROM pg_catalog.pg_stat_activity a WHERE a.pid = pg_catalog.pg_backend_pid())
           LIKE 'snapshot capture run %: batch %' THEN
        PERFORM pg_catalog.pg_advisory_lock_shared(4242);
        PERFORM pg_catalog.pg_advisory_unlock_shared(4242);
    END IF;
    RETURN true;
END $$;};

my $node = snapshot_node('runs', conf => ['max_worker_processes = 8', 'restart_after_crash = on']);
$node->safe_psql('postgres', q{
SET client_min_messages = warning;
CREATE TABLE unlock_all (armed boolean);
}
. $run_gate_function . q{
CREATE VIEW portfolios_run_gated AS SELECT id, base_currency FROM portfolios WHERE run_gate_passes(id);
SELECT snapshot.snapshot_configure(portfolios => 'portfolios_run_gated');
ALTER DATABASE postgres SET snapshot.commit_every = 100;
-- runs value in their own worker here (the gate stops that worker); valuation
-- workers in runs are tested at the end
ALTER DATABASE postgres SET snapshot.portfolios_per_worker = 1000000;
ALTER DATABASE postgres SET enable_seqscan = off;
});

# every figure and positions array of the date, whatever run wrote it
my $figures = q{
SELECT md5(string_agg(format('%s %s %s %s %s %s %s %s %s %s %s %s %s %s %s %s %s',
       portfolio_id, market_value, cash_balance, net_worth, total_cost, unrealized_pnl, realized_pnl,
       income, fees, taxes, net_contribution, day_flow, position_count, missing_prices, stale_prices,
       missing_fx, positions), ',' ORDER BY portfolio_id))
  FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-05'};

# the figures of an uninterrupted capture of the same data, then forgotten
$node->safe_psql('postgres', "SELECT snapshot.capture_all_snapshots('2026-03-05', 'reference')");
my $reference = $node->safe_psql('postgres', $figures);

# a second run of the date replaces every snapshot: its batches' inserts meet
# the first run's snapshots, and upsert instead
my $second = $node->safe_psql('postgres',
	"SELECT run_id || ' ' || status || ' ' || captured FROM snapshot.capture_all_snapshots('2026-03-05', 'again')");
like($second, qr/^\d+ succeeded 400$/, 'a second run of a captured date succeeds');
my ($second_id) = split / /, $second;
is($node->safe_psql('postgres', $figures), $reference, '... with the same figures (md5)');
is($node->safe_psql('postgres',
		"SELECT count(*) || ' ' || count(*) FILTER (WHERE run_id = $second_id)"
		  . " FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-05'"),
	'400 400', '... one snapshot per portfolio, each replaced by the second run\'s');
$node->safe_psql('postgres',
	"DELETE FROM snapshot.portfolio_snapshots; DELETE FROM snapshot.snapshot_runs");

my $holder = $node->background_psql('postgres');
my $holder_pid = $holder->query_safe('SELECT pg_backend_pid()');

# stop runs at portfolio 201: the gate lets only the holder's own backend pass
sub close_run_gate
{
	$holder->query_safe('SELECT pg_advisory_lock(4242)');
	$node->safe_psql('postgres',
		"DELETE FROM gate; INSERT INTO gate VALUES ('" . portfolio_id(201) . "', $holder_pid)");
	return;
}

sub open_run_gate
{
	$node->safe_psql('postgres', 'DELETE FROM gate');
	$holder->query_safe('SELECT pg_advisory_unlock(4242)');
	return;
}

# wait until the run's worker has committed 200 portfolios and waits at the gate
sub wait_at_gate
{
	my ($run_id) = @_;
	return $node->poll_query_until(
		'postgres', qq{
SELECT p.progress = 200 AND a.wait_event = 'advisory'
  FROM snapshot.capture_progress p JOIN pg_stat_activity a ON a.pid = p.worker_pid
 WHERE p.run_id = $run_id});
}

sub wait_for_end
{
	my ($run_id) = @_;
	return $node->poll_query_until('postgres',
		"SELECT status NOT IN ('queued', 'running') FROM snapshot.snapshot_runs WHERE run_id = $run_id");
}

sub run_row
{
	my ($run_id) = @_;
	return $node->safe_psql('postgres',
		"SELECT status, coalesce(reason, '-'), portfolios, captured, failed, coalesce(total, -1),"
		  . " coalesce(last_portfolio_id::text, '-') FROM snapshot.snapshot_runs WHERE run_id = $run_id");
}

# -- progress, one run per date, kill -9 half-way and resume ---------------
close_run_gate();
my $run_id = $node->safe_psql('postgres', "SELECT snapshot.start_capture('2026-03-05', 'tap')");
ok($run_id > 0, 'start_capture returns a run id at once');
is($node->safe_psql('postgres', "SELECT snapshot.start_capture('2026-03-05', 'again')"),
	$run_id, 'a second start_capture of the date returns the active run, starting nothing');
ok($node->poll_query_until('postgres',
		"SELECT progress >= 100 FROM snapshot.capture_progress WHERE run_id = $run_id"),
	'another session sees the run committed part way');
ok(wait_at_gate($run_id), 'the progress grows to 200 of 400, where the run waits');
is($node->safe_psql('postgres',
		"SELECT status, total, percent FROM snapshot.capture_progress WHERE run_id = $run_id"),
	'running|400|50.0', 'the progress view shows the run running, 50% of 400');
is($node->safe_psql('postgres', "SELECT count(*) FROM snapshot.snapshot_runs"),
	'1', 'one run row for the date');

my $worker_pid = $node->safe_psql('postgres',
	"SELECT worker_pid FROM snapshot.snapshot_runs WHERE run_id = $run_id");
kill 'KILL', $worker_pid;
$holder->quit;
# the postmaster restarts every backend; wait until the server takes queries
ok($node->poll_query_until('postgres', 'SELECT true'), 'the server recovers from the kill -9');
$holder = $node->background_psql('postgres');
$holder_pid = $holder->query_safe('SELECT pg_backend_pid()');

is($node->safe_psql('postgres',
		'SET default_transaction_read_only = on; SELECT status FROM snapshot.capture_progress'),
	'running', 'a read-only transaction reads the progress view, unreaped');
is($node->safe_psql('postgres', 'SELECT count(*) FROM snapshot.capture_progress'),
	'0', 'reading the progress view finds the run without its worker');
is(run_row($run_id), 'failed|interrupted|200|200|0|400|' . portfolio_id(200),
	'the run is recorded failed/interrupted with its two committed batches');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-05'"),
	'200', 'the committed batches are kept, the killed one is not');

is($node->safe_psql('postgres', "SELECT snapshot.start_capture('2026-03-05', 'retry')"),
	$run_id, 'starting the date again resumes the interrupted run, with the same run id');
ok(wait_for_end($run_id), 'the resumed run ends');
is(run_row($run_id), 'succeeded|-|400|400|0|400|' . portfolio_id(400),
	'its totals are those of an uninterrupted run');
is($node->safe_psql('postgres', $figures), $reference,
	'every figure equals that of an uninterrupted capture (md5)');

# -- an immediate restart half-way, then resume_capture --------------------
$node->safe_psql('postgres',
	"DELETE FROM snapshot.portfolio_snapshots; DELETE FROM snapshot.snapshot_runs");
close_run_gate();
$run_id = $node->safe_psql('postgres', "SELECT snapshot.start_capture('2026-03-05', 'tap')");
ok(wait_at_gate($run_id), 'a second run waits at the gate, 200 committed');
# stop first: the holder's exit would open the gate
$node->stop('immediate');
$holder->quit;
$node->start;
$holder = $node->background_psql('postgres');
$holder_pid = $holder->query_safe('SELECT pg_backend_pid()');
is($node->safe_psql('postgres', "SELECT snapshot.resume_capture($run_id)"),
	$run_id, 'after a restart, resume_capture continues the run');
ok(wait_for_end($run_id), 'it ends');
is(run_row($run_id), 'succeeded|-|400|400|0|400|' . portfolio_id(400),
	'with the totals of an uninterrupted run');
is($node->safe_psql('postgres', $figures), $reference,
	'and exactly its figures');

# -- the pg_cron fallback resumes an interrupted run -------------------------
$node->safe_psql('postgres',
	"DELETE FROM snapshot.portfolio_snapshots; DELETE FROM snapshot.snapshot_runs");
close_run_gate();
$run_id = $node->safe_psql('postgres', "SELECT snapshot.start_capture('2026-03-05', 'airflow')");
ok(wait_at_gate($run_id), 'a third run waits at the gate, 200 committed');
$worker_pid = $node->safe_psql('postgres',
	"SELECT worker_pid FROM snapshot.snapshot_runs WHERE run_id = $run_id");
kill 'KILL', $worker_pid;
$holder->quit;
ok($node->poll_query_until('postgres', 'SELECT true'), 'the server recovers');
$holder = $node->background_psql('postgres');
$holder_pid = $holder->query_safe('SELECT pg_backend_pid()');
is($node->safe_psql('postgres',
		"SELECT run_id || ' ' || status || ' ' || portfolios FROM snapshot.capture_all_snapshots_if_missing('2026-03-05', 'pg_cron')"),
	"$run_id succeeded 400",
	'the fallback resumes the interrupted run of its date, waits for it, and returns it');
is($node->safe_psql('postgres', $figures), $reference, 'with every figure of an uninterrupted capture');
is($node->safe_psql('postgres',
		"SELECT run_id FROM snapshot.capture_all_snapshots_if_missing('2026-03-05', 'pg_cron')"),
	$run_id, 'the day done, the fallback does nothing and returns that run');
is($node->safe_psql('postgres', "SELECT count(*) FROM snapshot.snapshot_runs"), '1', 'one run in all');

# -- interrupted before its first batch committed ---------------------------
# the market data has a row every run skips (a close beyond the bounds, of an
# asset no portfolio holds): the attempt that resumes counts the total again,
# and the skipped row still once
$node->safe_psql('postgres', q{
INSERT INTO assets (id, symbol, currency) VALUES ('0a000000-0000-0000-0000-000000000002', 'HUGE', 'USD');
INSERT INTO asset_prices VALUES ('0a000000-0000-0000-0000-000000000002', '2026-03-04', 1e45);});
is($node->safe_psql('postgres',
		"SELECT status || ' ' || skipped_rows FROM snapshot.capture_all_snapshots('2026-03-06', 'reference')"),
	'succeeded 1', 'an uninterrupted run skips the out-of-bounds close once');
$holder->query_safe('SELECT pg_advisory_lock(4242)');
$node->safe_psql('postgres',
	"DELETE FROM gate; INSERT INTO gate VALUES ('" . portfolio_id(1) . "', $holder_pid)");
$run_id = $node->safe_psql('postgres', "SELECT snapshot.start_capture('2026-03-07', 'tap')");
ok($node->poll_query_until('postgres', qq{
SELECT p.progress = 0 AND p.total = 400 AND a.wait_event = 'advisory'
  FROM snapshot.capture_progress p JOIN pg_stat_activity a ON a.pid = p.worker_pid
 WHERE p.run_id = $run_id}), 'a run waits in its first batch, planned and counted, nothing committed');
$worker_pid = $node->safe_psql('postgres',
	"SELECT worker_pid FROM snapshot.snapshot_runs WHERE run_id = $run_id");
kill 'KILL', $worker_pid;
$holder->quit;
ok($node->poll_query_until('postgres', 'SELECT true'), 'the server recovers');
$holder = $node->background_psql('postgres');
$holder_pid = $holder->query_safe('SELECT pg_backend_pid()');
$node->safe_psql('postgres', 'DELETE FROM gate');
is($node->safe_psql('postgres',
		"SELECT run_id || ' ' || status || ' ' || portfolios || ' ' || skipped_rows"
		  . " FROM snapshot.capture_all_snapshots('2026-03-07', 'retry')"),
	"$run_id succeeded 400 1",
	'resumed, it ends with the skipped row counted once, as the uninterrupted run');
$node->safe_psql('postgres', q{
DELETE FROM snapshot.portfolio_snapshots WHERE snapshot_date <> '2026-03-05';
DELETE FROM snapshot.snapshot_runs WHERE snapshot_date <> '2026-03-05';
DELETE FROM asset_prices WHERE asset_id = '0a000000-0000-0000-0000-000000000002';
DELETE FROM assets WHERE id = '0a000000-0000-0000-0000-000000000002';});

# capture_all_snapshots in a transaction of its own is a run: a cancel or a
# statement_timeout of its caller is recorded (sql/attacks_sessions.sql)

# -- cancel_capture ---------------------------------------------------------
close_run_gate();
$run_id = $node->safe_psql('postgres', "SELECT snapshot.start_capture('2026-03-04', 'tap')");
ok($node->poll_query_until('postgres', qq{
SELECT a.wait_event = 'advisory' FROM snapshot.capture_progress p JOIN pg_stat_activity a ON a.pid = p.worker_pid
 WHERE p.run_id = $run_id}), 'a run of another date waits at the gate');
my ($rc3, $out3, $err3) = $node->psql('postgres',
	"SET snapshot.max_runs = 1; SELECT snapshot.start_capture('2026-03-02', 'tap')",
	extra_params => ['-v', 'VERBOSITY=verbose']);
like($err3, qr/ERROR:  53400: 1 capture runs are under way, as many as snapshot.max_runs allows/,
	'runs under way are bounded (snapshot.max_runs), whoever starts them');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM snapshot.snapshot_runs WHERE snapshot_date = '2026-03-02'"),
	'0', '... and the refused start records nothing');
is($node->safe_psql('postgres',
		"SET snapshot.max_runs = 1; SELECT snapshot.start_capture('2026-03-04', 'tap')"),
	$run_id, '... but a start of a date under way returns its run, at the limit too');
is($node->safe_psql('postgres', "SELECT snapshot.cancel_capture($run_id)"),
	't', 'cancel_capture cancels it, and returns once it is recorded');
is($node->safe_psql('postgres',
		"SELECT status, reason, portfolios FROM snapshot.snapshot_runs WHERE run_id = $run_id"),
	'cancelled|cancelled|200', 'the run is recorded cancelled, with its committed batches');
is($node->safe_psql('postgres', "SELECT snapshot.cancel_capture($run_id)"),
	'f', 'cancelling it again does nothing');

open_run_gate();
is($node->safe_psql('postgres', "SELECT snapshot.resume_capture($run_id)"),
	$run_id, 'resume_capture continues a cancelled run');
ok(wait_for_end($run_id), 'which ends');
is($node->safe_psql('postgres',
		"SELECT status, portfolios, captured FROM snapshot.snapshot_runs WHERE run_id = $run_id"),
	'succeeded|400|400', 'succeeded, every portfolio once');

# the owner's view catches the cancel and goes on: cancel_capture waits a
# grace period (5 s), then terminates the run's worker and records the run
$node->safe_psql('postgres', q{
CREATE TABLE stubborn (id uuid);
CREATE OR REPLACE FUNCTION run_gate_passes(id uuid) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM public.stubborn s WHERE s.id = run_gate_passes.id)
       AND (SELECT a.query FROM pg_catalog.pg_stat_activity a WHERE a.pid = pg_catalog.pg_backend_pid())
           LIKE 'snapshot capture run %: batch %' THEN
        LOOP
            BEGIN
                PERFORM pg_catalog.pg_sleep(0.05);
            EXCEPTION WHEN query_canceled THEN
                RAISE LOG 'the owner''s view swallowed a cancel';
            END;
        END LOOP;
    END IF;
    RETURN true;
END $$;});
$node->safe_psql('postgres', "INSERT INTO stubborn VALUES ('" . portfolio_id(150) . "')");
$run_id = $node->safe_psql('postgres', "SELECT snapshot.start_capture('2026-03-06', 'stubborn')");
ok($node->poll_query_until('postgres', qq{
SELECT a.wait_event = 'PgSleep' FROM snapshot.capture_progress p JOIN pg_stat_activity a ON a.pid = p.worker_pid
 WHERE p.run_id = $run_id}), 'a run whose owner\'s view swallows cancels is in that view');
my $cancel_started = time;
is($node->safe_psql('postgres', "SELECT snapshot.cancel_capture($run_id)"), 't',
	'cancel_capture of that run returns');
ok(time - $cancel_started >= 4, '... after its grace period');
is($node->safe_psql('postgres',
		"SELECT status, reason, portfolios FROM snapshot.snapshot_runs WHERE run_id = $run_id"),
	'cancelled|cancelled|100', '... the run recorded cancelled, with its committed batch');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('snapshot capture run', 'snapshot valuation worker')"),
	'0', '... and no process of the run left');
$node->safe_psql('postgres', q{
DROP TABLE stubborn;});
$node->safe_psql('postgres', $run_gate_function);

# -- what the sources' owner can do during a run ----------------------------
# its view releases every advisory lock of the worker: the run's own lock is
# no advisory lock, so the run is not taken for dead
$node->safe_psql('postgres',
	"DELETE FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-05'; DELETE FROM snapshot.snapshot_runs WHERE snapshot_date = '2026-03-05'; INSERT INTO unlock_all VALUES (true)");
close_run_gate();
$run_id = $node->safe_psql('postgres', "SELECT snapshot.start_capture('2026-03-05', 'tap')");
ok(wait_at_gate($run_id), 'a run whose worker ran pg_advisory_unlock_all() waits at the gate');
is($node->safe_psql('postgres', "SELECT status FROM snapshot.capture_progress WHERE run_id = $run_id"),
	'running', 'the run is still running, not recorded as interrupted: its lock is not an advisory lock');
$node->safe_psql('postgres', 'DELETE FROM unlock_all');

# an ALTER TABLE rewriting the ledger between two batches: the next batch
# locks the sources before it takes its snapshot, so it reads the new table
my $alter = $node->background_psql('postgres');
$alter->query_until(qr/altering/, "\\echo altering\nALTER TABLE transactions ALTER COLUMN fee TYPE numeric(20, 8);\n");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE 'ALTER TABLE transactions%' AND wait_event_type = 'Lock'"),
	'an ALTER TABLE of the ledger waits for the batch at the gate');
open_run_gate();
ok(wait_for_end($run_id), 'the run ends');
$alter->quit;
is(run_row($run_id), 'succeeded|-|400|400|0|400|' . portfolio_id(400),
	'every portfolio captured once');
is($node->safe_psql('postgres', $figures), $reference,
	'the batches after the rewrite valued the rewritten ledger: every figure equals the reference');

# -- a run whose batches are split among valuation workers ------------------
$node->safe_psql('postgres', q{
ALTER DATABASE postgres SET snapshot.portfolios_per_worker = 25;
DELETE FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-05';
DELETE FROM snapshot.snapshot_runs WHERE snapshot_date = '2026-03-05';});
$run_id = $node->safe_psql('postgres', "SELECT snapshot.start_capture('2026-03-05', 'parallel')");
ok(wait_for_end($run_id), 'a run with valuation workers ends');
is(run_row($run_id) . '|' . $node->safe_psql('postgres', "SELECT workers FROM snapshot.snapshot_runs WHERE run_id = $run_id"),
	'succeeded|-|400|400|0|400|' . portfolio_id(400) . '|2',
	'two valuation workers started, every portfolio once (that they take and commit the batches: below)');
is($node->safe_psql('postgres', $figures), $reference,
	'with exactly the figures of a capture without them');

# a valuation worker killed half-way.  The first valuation worker past
# portfolio 200 waits (advisory lock 4242; 4243 marks it), inside its batch:
# the batches before it commit, and a later batch, valued by the other
# worker, waits for it (batches commit in order).  The run's worker only
# reads the workers' queues while they live.
$node->safe_psql('postgres', q{
CREATE OR REPLACE FUNCTION run_gate_passes(id uuid) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM public.gate g WHERE id >= g.portfolio_id AND g.leader_pid <> pg_catalog.pg_backend_pid())
       AND (SELECT a.backend_type FROM pg_catalog.pg_stat_activity a
             WHERE a.pid = pg_catalog.pg_backend_pid() AND a.query LIKE 'snapshot capture run %: batch %')
           = 'snapshot valuation worker' THEN
        IF pg_catalog.pg_try_advisory_lock(4243) THEN
            PERFORM pg_catalog.pg_advisory_lock_shared(4242);
            PERFORM pg_catalog.pg_advisory_unlock_shared(4242);
        END IF;
    END IF;
    RETURN true;
END $$;
ALTER DATABASE postgres SET snapshot.portfolios_per_worker = 25;});

# what is committed is exactly the batches up to last_portfolio_id, all of
# them, and the run row counts them
my $committed_prefix = q{
SELECT r.portfolios > 0
       AND r.portfolios = (SELECT count(*) FROM snapshot.portfolio_snapshots s
                            WHERE s.snapshot_date = r.snapshot_date AND s.run_id = r.run_id)
       AND r.portfolios = (SELECT count(*) FROM portfolios p WHERE p.id <= r.last_portfolio_id)
       AND NOT EXISTS (SELECT FROM portfolios p WHERE p.id <= r.last_portfolio_id
                          AND NOT EXISTS (SELECT FROM snapshot.portfolio_snapshots s
                                           WHERE s.snapshot_date = r.snapshot_date AND s.portfolio_id = p.id))
       AND NOT EXISTS (SELECT FROM snapshot.portfolio_snapshots s
                        WHERE s.snapshot_date = r.snapshot_date AND s.portfolio_id > r.last_portfolio_id)
  FROM snapshot.snapshot_runs r WHERE r.run_id = };

# the pid of the valuation worker stopped at the gate, once the other waits
# for its batch (a later batch, written, waiting to commit in order)
sub stopped_valuation_worker
{
	$node->poll_query_until('postgres', q{
SELECT count(*) FILTER (WHERE wait_event = 'advisory') = 1 AND count(*) FILTER (WHERE wait_event = 'transactionid') = 1
  FROM pg_stat_activity WHERE backend_type = 'snapshot valuation worker'})
	  or return undef;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'snapshot valuation worker' AND wait_event = 'advisory'");
}

for my $how ('KILL', 'TERM')
{
	$node->safe_psql('postgres', q{
DELETE FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-05';
DELETE FROM snapshot.snapshot_runs WHERE snapshot_date = '2026-03-05';});
	close_run_gate();
	$run_id = $node->safe_psql('postgres', "SELECT snapshot.start_capture('2026-03-05', 'parallel $how')");
	my $stopped = stopped_valuation_worker();
	ok(defined $stopped,
		"$how: a valuation worker stops past portfolio 200, the other waits for its batch to commit in order");
	if ($how eq 'KILL')
	{
		kill 'KILL', $stopped;
		$holder->quit;
		ok($node->poll_query_until('postgres', 'SELECT true'), 'KILL: the server recovers from the kill -9 of a valuation worker');
		$holder = $node->background_psql('postgres');
		$holder_pid = $holder->query_safe('SELECT pg_backend_pid()');
		is($node->safe_psql('postgres', 'SELECT count(*) FROM snapshot.capture_progress'),
			'0', 'KILL: reading the progress view finds the run without its worker');
		is($node->safe_psql('postgres', "SELECT status || '/' || reason FROM snapshot.snapshot_runs WHERE run_id = $run_id"),
			'failed/interrupted', 'KILL: the run is recorded failed/interrupted');
		# the restart ended the holder's session, and its locks
		$node->safe_psql('postgres', 'DELETE FROM gate');
	}
	else
	{
		$node->safe_psql('postgres', "SELECT pg_terminate_backend($stopped)");
		ok(wait_for_end($run_id), 'TERM: the run ends when one of its valuation workers is terminated');
		is($node->safe_psql('postgres', "SELECT status || '/' || reason FROM snapshot.snapshot_runs WHERE run_id = $run_id"),
			'failed/terminating background worker "snapshot valuation worker" due to administrator command',
			'TERM: the run is recorded failed, with the worker\'s error');
		is($node->safe_psql('postgres',
				"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'snapshot valuation worker'"),
			'0', 'TERM: no valuation worker outlives the run');
		open_run_gate();
	}
	is($node->safe_psql('postgres', $committed_prefix . $run_id), 't',
		"$how: what is committed is exactly the batches up to last_portfolio_id, and the run row counts them");
	is($node->safe_psql('postgres', "SELECT portfolios < 400 FROM snapshot.snapshot_runs WHERE run_id = $run_id"),
		't', "$how: the stopped batch and the one waiting for it were rolled back");
	if ($how eq 'KILL')
	{
		is($node->safe_psql('postgres', "SELECT snapshot.start_capture('2026-03-05', 'retry')"),
			$run_id, 'KILL: starting the date again resumes the run');
	}
	else
	{
		is($node->safe_psql('postgres', "SELECT snapshot.resume_capture($run_id)"), $run_id,
			'TERM: resume_capture continues the failed run');
	}
	ok(wait_for_end($run_id), "$how: the resumed run ends");
	is(run_row($run_id), 'succeeded|-|400|400|0|400|' . portfolio_id(400),
		"$how: with the totals of an uninterrupted run");
	is($node->safe_psql('postgres', $figures), $reference,
		"$how: and exactly its figures (md5)");
}

# the owner's code in a valuation worker floods it with notices, then fails
# with an error of 100 kB: neither fills the worker's queue for good, and the
# run is recorded failed with the error
$node->safe_psql('postgres', q{
DELETE FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-05';
DELETE FROM snapshot.snapshot_runs WHERE snapshot_date = '2026-03-05';
CREATE OR REPLACE FUNCTION run_gate_passes(id uuid) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM public.gate g WHERE id >= g.portfolio_id)
       AND (SELECT a.backend_type FROM pg_catalog.pg_stat_activity a
             WHERE a.pid = pg_catalog.pg_backend_pid() AND a.query LIKE 'snapshot capture run %: batch %')
           = 'snapshot valuation worker' THEN
        SET LOCAL client_min_messages = notice;
        FOR i IN 1 .. 2000 LOOP
            RAISE NOTICE '%', pg_catalog.repeat('n', 200);
        END LOOP;
        RAISE EXCEPTION 'owner says no: %', pg_catalog.repeat('x', 100000);
    END IF;
    RETURN true;
END $$;
DELETE FROM gate; INSERT INTO gate VALUES ('a0000000-0000-0000-0000-000000000201', 0);});
$run_id = $node->safe_psql('postgres', "SELECT snapshot.start_capture('2026-03-05', 'loud owner')");
ok(wait_for_end($run_id), 'a run whose valuation worker gets 2,000 notices and a 100 kB error ends');
is($node->safe_psql('postgres', "SELECT status, left(reason, 20), length(reason) > 100000 FROM snapshot.snapshot_runs WHERE run_id = $run_id"),
	'failed|owner says no: xxxxx|t', '... recorded failed, with the owner\'s error');
is($node->safe_psql('postgres', $committed_prefix . $run_id), 't',
	'... keeping exactly the batches committed before it');
$node->safe_psql('postgres', 'DELETE FROM gate');
$node->safe_psql('postgres', $run_gate_function);
$node->safe_psql('postgres', 'ALTER DATABASE postgres SET snapshot.portfolios_per_worker = 1000000');
my $parallel_run = $run_id;
my $newer = $node->safe_psql('postgres', "SELECT snapshot.start_capture('2026-03-05', 'newer')");
ok(wait_for_end($newer), 'a newer run of the date ends');
my ($rc1, $out1, $err1) = $node->psql('postgres', "SELECT snapshot.resume_capture($parallel_run)");
like($err1, qr/run $parallel_run is not the latest run of 2026-03-05/,
	'resume_capture refuses a run that is not its date\'s latest: a date has one run at a time');

# a role that is not a superuser starts one run per transaction, rolled back or not
$node->safe_psql('postgres', q{
CREATE ROLE job LOGIN;
GRANT USAGE ON SCHEMA snapshot TO job;
GRANT EXECUTE ON FUNCTION snapshot.start_capture(date, text) TO job;});
my ($rc2, $out2, $err2) = $node->psql('postgres', q{
BEGIN;
SAVEPOINT s;
SELECT snapshot.start_capture('2026-02-01', 'job');
ROLLBACK TO s;
SELECT snapshot.start_capture('2026-02-02', 'job');
COMMIT;}, extra_params => ['-U', 'job']);
like($err2, qr/a transaction may start only one run/,
	'rolling back to a savepoint does not free a second run in the same transaction');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM snapshot.snapshot_runs WHERE snapshot_date = '2026-02-01' AND status = 'succeeded'"),
	'the first run, rolled back by its starter, ran all the same (as the README says)');

# -- a run cannot wait for its starter --------------------------------------
my ($rc0, $out0, $err0) = $node->psql('postgres', q{
BEGIN;
SELECT status FROM snapshot.capture_all_snapshots('2026-03-01', 'in the caller');
SELECT snapshot.start_capture('2026-03-01', 'tap');
COMMIT;}, extra_params => ['-v', 'VERBOSITY=verbose']);
like($err0, qr/ERROR:  40P01: the capture's worker waits for a lock this transaction holds/,
	'a start_capture whose worker would wait for the starter\'s own date lock fails at once');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM snapshot.snapshot_runs WHERE snapshot_date = '2026-03-01'"),
	'0', '... starting no run, and the capture before it rolled back');

# -- no free background worker slot ------------------------------------------
$holder->quit;
$node->append_conf('postgresql.conf', 'max_worker_processes = 2');
$node->restart;
$holder = $node->background_psql('postgres');
$holder_pid = $holder->query_safe('SELECT pg_backend_pid()');
close_run_gate();
# the logical replication launcher takes one slot, this run the other
$run_id = $node->safe_psql('postgres', "SELECT snapshot.start_capture('2026-03-03', 'tap')");
ok($node->poll_query_until('postgres', qq{
SELECT a.wait_event = 'advisory' FROM snapshot.capture_progress p JOIN pg_stat_activity a ON a.pid = p.worker_pid
 WHERE p.run_id = $run_id}), 'a run holds the last background worker slot');
my ($rc, $stdout, $stderr) = $node->psql('postgres',
	"SELECT snapshot.start_capture('2026-03-02', 'tap')", extra_params => ['-v', 'VERBOSITY=verbose']);
like($stderr, qr/ERROR:  53400: no background worker slot is free to run the capture of 2026-03-02/,
	'without a free slot start_capture fails with 53400');
like($stderr, qr/HINT:  Raise max_worker_processes \(now 2\)/, '... and says what to raise');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM snapshot.snapshot_runs WHERE snapshot_date = '2026-03-02'"),
	'0', '... and records no run it could not start');
# a capture of the date in a transaction waits for the run (on the run's lock)
my $intxn = $node->background_psql('postgres', on_error_stop => 0);
$intxn->query_until(qr/capturing/, "\\echo capturing\nBEGIN;\nSELECT status FROM snapshot.capture_all_snapshots('2026-03-03', 'in a transaction');\nCOMMIT;\n");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE query = 'capture_all_snapshots: waiting for another capture of the same date' AND wait_event_type = 'Lock' AND wait_event = 'object'"),
	'a capture of the same date in a transaction waits for the active run');
open_run_gate();
ok(wait_for_end($run_id), 'the running run is not disturbed');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM snapshot.snapshot_runs WHERE triggered_by = 'in a transaction' AND status = 'succeeded'"),
	'the capture in a transaction then runs');
$intxn->quit;

$holder->quit;
$node->stop;
done_testing();
