# t/SnapshotTest.pm: what the TAP tests of t/ share.  A cluster of their own
# with examples/schema.sql and enough portfolios that a capture of all uses
# two valuation workers, and a gate that stops a capture halfway, with one
# worker still running, for as long as the test holds it.
#
# The data: portfolio n (1 .. 400, id a0000000-0000-0000-0000-<n in 12
# digits>, so in that order) bought n TAP at 10 on 2026-03-02, and TAP closed
# at 12 on 2026-03-04.  A capture of 2026-03-05 values portfolio n at cost
# 10n and market value 12n: 802000 and 962400 in all.
#
# The gate: the portfolios relation the extension reads is a view that calls
# gate_passes(id) for each row.  While the table gate names a portfolio and a
# backend, any other process (a valuation worker) reading that portfolio
# waits for the advisory lock 4242, which the test holds.  With 400,
# snapshot.portfolios_per_worker = 100 and the default snapshot.max_workers
# of 2, worker 1 values portfolios 1 .. 200 and worker 2 starts at 201: gated
# there, the capture writes 200 (in batches of 10) and waits for worker 2.

package SnapshotTest;

use strict;
use warnings FATAL => 'all';

use Exporter 'import';
use File::Basename qw(dirname);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(snapshot_node portfolio_id capture_session start_capture
  close_gate open_gate wait_for_gated_capture wait_for_error no_worker_left
  date_leftovers date_totals);

my $root = dirname(__FILE__) . '/..';

# The id of portfolio n.
sub portfolio_id
{
	my ($n) = @_;
	return sprintf('a0000000-0000-0000-0000-%012d', $n);
}

# A started cluster with the extension, the schema, the data and the gate
# above, configured; conf => [postgresql.conf lines].
sub snapshot_node
{
	my ($name, %params) = @_;

	# SNAPSHOT_TAP_PORT: a port to use instead of one PostgreSQL's modules pick
	my $node = PostgreSQL::Test::Cluster->new($name,
		defined $ENV{SNAPSHOT_TAP_PORT} ? (port => $ENV{SNAPSHOT_TAP_PORT}) : ());
	$node->init;
	$node->append_conf('postgresql.conf',
		join("\n", "timezone = 'UTC'", @{ $params{conf} // [] }));
	$node->start;

	$node->safe_psql('postgres', slurp_file("$root/examples/schema.sql"));
	$node->safe_psql(
		'postgres', qq{
SET client_min_messages = warning;
CREATE EXTENSION snapshot;
INSERT INTO assets (id, symbol, currency) VALUES ('0a000000-0000-0000-0000-000000000001', 'TAP', 'USD');
INSERT INTO portfolios (id, name, base_currency)
SELECT ('a0000000-0000-0000-0000-' || lpad(n::text, 12, '0'))::uuid, 'tap ' || n, 'USD'
  FROM generate_series(1, 400) AS n;
INSERT INTO transactions (portfolio_id, asset_id, type, quantity, price, fee, exchange_rate, transaction_date)
SELECT ('a0000000-0000-0000-0000-' || lpad(n::text, 12, '0'))::uuid, '0a000000-0000-0000-0000-000000000001',
       'BUY', n, 10, 0, NULL, '2026-03-02 09:00+00'
  FROM generate_series(1, 400) AS n;
INSERT INTO asset_prices VALUES ('0a000000-0000-0000-0000-000000000001', '2026-03-04', 12);

CREATE TABLE gate (portfolio_id uuid NOT NULL, leader_pid integer NOT NULL);
CREATE FUNCTION gate_passes(id uuid) RETURNS boolean LANGUAGE plpgsql AS \$\$
BEGIN
    IF EXISTS (SELECT FROM public.gate g
                WHERE g.portfolio_id = id AND g.leader_pid <> pg_catalog.pg_backend_pid()) THEN
        PERFORM pg_catalog.pg_advisory_lock_shared(4242);
        PERFORM pg_catalog.pg_advisory_unlock_shared(4242);
    END IF;
    RETURN true;
END \$\$;
CREATE VIEW portfolios_gated AS SELECT id, base_currency FROM portfolios WHERE gate_passes(id);
SELECT snapshot.snapshot_configure(portfolios => 'portfolios_gated');
ALTER DATABASE postgres SET snapshot.portfolios_per_worker = 100;
ALTER DATABASE postgres SET snapshot.batch_size = 10;
VACUUM ANALYZE;
});
	return $node;
}

# A psql session in the background that reports errors with their SQLSTATE;
# returns it and its backend's pid.
sub capture_session
{
	my ($node) = @_;
	my $session = $node->background_psql('postgres', on_error_stop => 0);
	$session->query_safe('\set VERBOSITY verbose');
	return ($session, $session->query_safe('SELECT pg_backend_pid()'));
}

# Start a capture of all of 2026-03-05 in a session and return at once.
sub start_capture
{
	my ($session, $triggered_by) = @_;
	$session->query_until(qr/capturing/, "\\echo capturing
BEGIN;
SELECT status FROM snapshot.capture_all_snapshots('2026-03-05', '$triggered_by');
COMMIT;
");
	return;
}

# Close the gate at portfolio 201 for every process but leader_pid's: the
# holder session takes the advisory lock the gate waits on.
sub close_gate
{
	my ($node, $holder, $leader_pid) = @_;
	$holder->query_safe('SELECT pg_advisory_lock(4242)');
	$node->safe_psql('postgres',
		"DELETE FROM gate; INSERT INTO gate VALUES ('"
		  . portfolio_id(201)
		  . "', $leader_pid)");
	return;
}

sub open_gate
{
	my ($node, $holder) = @_;
	$node->safe_psql('postgres', 'DELETE FROM gate');
	$holder->query_safe('SELECT pg_advisory_unlock(4242)');
	return;
}

# Wait until the capture in backend pid has written 200 of the 400
# portfolios and waits for its second worker, the only one left, which
# waits at the gate.  True when it does.
sub wait_for_gated_capture
{
	my ($node, $pid) = @_;
	return $node->poll_query_until(
		'postgres', qq{
SELECT (SELECT query FROM pg_stat_activity WHERE pid = $pid) = 'capture_all_snapshots: 200/400 portfolios'
   AND (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'snapshot valuation worker') = 1
   AND (SELECT count(*) FROM pg_stat_activity
         WHERE backend_type = 'snapshot valuation worker' AND wait_event = 'advisory') = 1});
}

# Wait until the statement a session runs in the background fails; returns
# what the session wrote to stderr (psql's "ERROR:  SQLSTATE: message" and
# what follows it), and forgets it.
sub wait_for_error
{
	my ($session) = @_;
	pump_until($session->{run}, $session->{timeout}, \$session->{stderr},
		qr/ERROR:  .*\n/);
	my $stderr = $session->{stderr};
	$session->{stderr} = '';
	return $stderr;
}

# Wait until no valuation worker runs; true when none does.
sub no_worker_left
{
	my ($node) = @_;
	return $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'snapshot valuation worker'"
	);
}

# What there is of 2026-03-05: "snapshots|runs|date lock rows".
sub date_leftovers
{
	my ($node) = @_;
	return $node->safe_psql(
		'postgres', q{
SELECT (SELECT count(*) FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-05'),
       (SELECT count(*) FROM snapshot.snapshot_runs WHERE snapshot_date = '2026-03-05'),
       (SELECT count(*) FROM snapshot.capture_date_locks WHERE snapshot_date = '2026-03-05')});
}

# The snapshots of 2026-03-05: "rows|portfolios|sum of costs|sum of market
# values"; all of them: 400|400|802000.00000000|962400.00000000.
sub date_totals
{
	my ($node) = @_;
	return $node->safe_psql(
		'postgres', q{
SELECT count(*), count(DISTINCT portfolio_id), sum(total_cost), sum(market_value)
  FROM snapshot.portfolio_snapshots WHERE snapshot_date = '2026-03-05'});
}

1;
