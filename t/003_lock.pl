# t/003_lock.pl: a capture of all in a transaction that holds a lock
# stronger than ACCESS SHARE on a configured relation uses no valuation
# workers, and completes: status succeeded, workers = 0, every portfolio
# captured.  With wal_level = minimal, LOCK TABLE logs nothing and gives the
# transaction no XID, so the rule "no workers after a write in the same
# transaction" does not cover it.  Without the lock the same capture uses
# two workers.  statement_timeout bounds the capture, so that one whose
# workers wait for the lock their leader holds fails this test instead of
# hanging it.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SnapshotTest;
use Test::More;

my $node = snapshot_node('lock',
	conf => [ 'wal_level = minimal', 'max_wal_senders = 0' ]);
is($node->safe_psql('postgres', 'SHOW wal_level'),
	'minimal', 'wal_level is minimal');

# the capture in the transaction that locked the ledger
my ($ret, $stdout, $stderr) = $node->psql(
	'postgres', q{
SET statement_timeout = '30s';
BEGIN;
LOCK TABLE transactions IN ACCESS EXCLUSIVE MODE;
SELECT pg_current_xact_id_if_assigned() IS NULL AS no_xid;
SELECT status, portfolios, captured, failed, workers
  FROM snapshot.capture_all_snapshots('2026-03-05', 'locked');
COMMIT;
});
is($ret, 0, 'the capture under ACCESS EXCLUSIVE ends without error')
  or diag($stderr);
is( $stdout,
	"t\nsucceeded|400|400|0|0",
	'the lock gave no XID; the capture succeeded for all 400 portfolios, without workers'
);
is( date_totals($node),
	'400|400|802000.00000000|962400.00000000',
	'one snapshot per portfolio, at cost 10n and market value 12n');

# the same capture without the lock
is( $node->safe_psql(
		'postgres',
		q{SELECT status, portfolios, captured, failed, workers
		    FROM snapshot.capture_all_snapshots('2026-03-05', 'unlocked')}),
	'succeeded|400|400|0|2',
	'without the lock the same capture uses two workers');
is( date_totals($node),
	'400|400|802000.00000000|962400.00000000',
	'and writes the same snapshots');

$node->stop;
done_testing();
