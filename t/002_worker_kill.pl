# t/002_worker_kill.pl: a valuation worker terminated mid-capture fails the
# capture with the worker's own error (nothing of it committed) while the
# calling session lives on; a capturing backend killed with SIGKILL makes the
# server restart, and after crash recovery nothing of that capture is left.
# Each time the next capture of the date values every portfolio.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SnapshotTest;
use Test::More;

my $node = snapshot_node('kill', conf => ['restart_after_crash = on']);
my $holder = $node->background_psql('postgres');
my ($capture, $pid) = capture_session($node);

my $next_capture = q{
SELECT status, portfolios, captured, failed, workers
  FROM snapshot.capture_all_snapshots('2026-03-05', 'next')};

# pg_terminate_backend of the worker at the gate, once the capture has
# written the other worker's 200 portfolios
close_gate($node, $holder, $pid);
start_capture($capture, 'worker terminated');
ok(wait_for_gated_capture($node, $pid),
	'the capture has written 200 of 400 portfolios and waits for its second worker');
is( $node->safe_psql(
		'postgres',
		q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		   WHERE backend_type = 'snapshot valuation worker'}),
	't',
	'pg_terminate_backend of the worker');
like(
	wait_for_error($capture),
	qr/ERROR:  57P01: terminating background worker "snapshot valuation worker" due to administrator command\nCONTEXT:  (.*\n)*snapshot valuation worker\n/,
	'the capture fails with the worker\'s own error, 57P01, in its context');
is($capture->query_safe('SELECT pg_backend_pid()'),
	$pid, 'the calling session lives on');
ok(no_worker_left($node), 'no valuation worker is left');
is(date_leftovers($node), '0|0|0',
	'no snapshot, no run and no date lock row are left');
open_gate($node, $holder);
is($capture->query_safe($next_capture),
	'succeeded|400|400|0|2',
	'the next capture in that session values all 400 portfolios with two workers');
is( date_totals($node),
	'400|400|802000.00000000|962400.00000000',
	'one snapshot per portfolio, at cost 10n and market value 12n');

# SIGKILL of the capturing backend, stopped at the same point of a capture
# that replaces those snapshots
$capture->quit;
($capture, $pid) = capture_session($node);
close_gate($node, $holder, $pid);
start_capture($capture, 'backend killed');
ok(wait_for_gated_capture($node, $pid),
	'the next capture has written 200 of 400 portfolios and waits for its second worker');
my $log_offset = -s $node->logfile;
is(kill('KILL', $pid), 1, 'SIGKILL of the capturing backend');
$node->wait_for_log(
	qr/server process \(PID $pid\) was terminated by signal 9: Killed/,
	$log_offset);
$node->wait_for_log(qr/all server processes terminated; reinitializing/,
	$log_offset);
ok($node->poll_query_until('postgres', 'SELECT 1', '1'),
	'the server restarts and accepts connections');
ok( $node->log_contains(
		qr/database system was not properly shut down; automatic recovery in progress/,
		$log_offset),
	'after crash recovery');
# both sessions died with the server's processes
$capture->{run}->kill_kill;
$holder->{run}->kill_kill;

ok(no_worker_left($node), 'no valuation worker is left');
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(triggered_by || ':' || status, ',' ORDER BY run_id)
		    FROM snapshot.snapshot_runs WHERE snapshot_date = '2026-03-05'}),
	'next:succeeded',
	'the killed capture left no run: the earlier run is the only one of the date');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*), string_agg(DISTINCT r.triggered_by, ',')
		    FROM snapshot.portfolio_snapshots s JOIN snapshot.snapshot_runs r USING (run_id)
		   WHERE s.snapshot_date = '2026-03-05'}),
	'400|next',
	'nor any of the 200 snapshots it had written: the earlier run\'s 400 are intact');
is( $node->safe_psql('postgres', 'DELETE FROM gate; ' . $next_capture),
	'succeeded|400|400|0|2',
	'the next capture values all 400 portfolios with two workers');
is( date_totals($node),
	'400|400|802000.00000000|962400.00000000',
	'one snapshot per portfolio, at cost 10n and market value 12n');

$node->stop;
done_testing();
