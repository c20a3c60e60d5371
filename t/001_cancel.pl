# t/001_cancel.pl: a capture of all cancelled while a valuation worker of
# its runs, by pg_cancel_backend and by statement_timeout, ends with
# SQLSTATE 57014 and leaves no snapshot, no run, no date lock row and no
# valuation worker behind; the next capture of the date values every
# portfolio.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SnapshotTest;
use Test::More;

my $node = snapshot_node('cancel');
my $holder = $node->background_psql('postgres');
my ($capture, $pid) = capture_session($node);

# pg_cancel_backend, once the capture has written 200 portfolios (in its
# transaction) and waits for its second worker, held at the gate
close_gate($node, $holder, $pid);
start_capture($capture, 'cancelled');
ok(wait_for_gated_capture($node, $pid),
	'the capture has written 200 of 400 portfolios and waits for its second worker');
is($node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)"),
	't', 'pg_cancel_backend of the capturing backend');
like(
	wait_for_error($capture),
	qr/ERROR:  57014: canceling statement due to user request$/m,
	'the cancelled capture ends with 57014');
ok(no_worker_left($node), 'its valuation worker is gone');
is(date_leftovers($node), '0|0|0',
	'no snapshot, no run and no date lock row are left');

# statement_timeout fires while the capture waits for its worker at the
# gate, which stays closed until the end of the statement
my $log_offset = -s $node->logfile;
$capture->query_safe("SET statement_timeout = '3s'");
start_capture($capture, 'timed out');
like(
	wait_for_error($capture),
	qr/ERROR:  57014: canceling statement due to statement timeout$/m,
	'the capture that outlives statement_timeout ends with 57014');
$capture->query_safe('RESET statement_timeout');
ok(no_worker_left($node), 'its valuation worker is gone');
ok( $node->log_contains(
		qr/FATAL:  terminating background worker "snapshot valuation worker" due to administrator command\n.*CONTEXT:  SQL statement "SELECT pg_catalog.pg_advisory_lock_shared\(4242\)"/,
		$log_offset),
	'the worker was still at the gate when the capture ended, and was stopped');
is(date_leftovers($node), '0|0|0',
	'no snapshot, no run and no date lock row are left');

# the next capture of the date, in the same session
open_gate($node, $holder);
is( $capture->query_safe(
		q{SELECT status, portfolios, captured, failed, workers
		    FROM snapshot.capture_all_snapshots('2026-03-05', 'after the cancels')}),
	'succeeded|400|400|0|2',
	'the next capture of the date values all 400 portfolios with two workers');
is( date_totals($node),
	'400|400|802000.00000000|962400.00000000',
	'one snapshot per portfolio, at cost 10n and market value 12n');
is(date_leftovers($node), '400|1|1',
	'its run is the only run of the date');

$capture->quit;
$holder->quit;
$node->stop;
done_testing();
