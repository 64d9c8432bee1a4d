# The long poll of a libpq peer waits outside any snapshot.
#
#  - a cursor opened in a transaction before a wait for a commit keeps all
#    its rows although another session deletes them and vacuums: the wait
#    (CALL scuttlebutt.wait_for_commit) is refused inside a transaction
#    block, and poll() never waits (with the wait that poll() used to
#    do, which dropped the backend's xmin while the cursor's snapshot was
#    still in use, the cursor lost rows);
#  - a wait holds back no vacuum horizon: while wait_for_commit() waits,
#    DELETE and VACUUM in another session remove every dead row;
#  - poll() answers at once, and wait_for_commit() returns at once when
#    the server holds what the caller lacks, or at the first commit.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use IPC::Run;
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $n = LibpqTest::new_node('a');
sub qn { LibpqTest::q1($n, @_) }

qn(q{SELECT scuttlebutt.create_model('m')});
qn(q{CREATE TABLE t (i integer); INSERT INTO t SELECT generate_series(1, 999)});
qn(q{CREATE TABLE t2 (i integer); INSERT INTO t2 SELECT generate_series(1, 1000)});

# The wait this server offers: the procedure, or (before it) poll()'s own
my $has_procedure = qn(q{SELECT to_regprocedure('scuttlebutt.wait_for_commit(text,jsonb,integer)') IS NOT NULL}) eq 't';
sub wait_sql
{
	my ($ms) = @_;
	return $has_procedure
	  ? "CALL scuttlebutt.wait_for_commit('m', '{}', $ms)"
	  : "SELECT 'polled ' || count(*) FROM scuttlebutt.poll('m', '{}', 10, $ms)";
}

# A psql session in the background running $script
sub start_session
{
	my ($app, $script) = @_;
	my %s = (out => '', err => '');
	# a file, not a scalar: IPC::Run feeds a scalar only while pumped
	my $file = PostgreSQL::Test::Utils::tempdir() . "/$app.sql";
	PostgreSQL::Test::Utils::append_to_file($file, "SET application_name = '$app';\n$script");
	$s{h} = IPC::Run::start(
		[ 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=0', '-d', $n->connstr('postgres') ],
		'<', $file, '>', \$s{out}, '2>', \$s{err});
	return \%s;
}

# Until $cond (SQL) holds for the session $app, up to $timeout seconds
sub wait_for_session
{
	my ($app, $cond, $timeout) = @_;
	my $deadline = time + $timeout;
	while (time < $deadline)
	{
		return 1 if qn("SELECT count(*) FROM pg_stat_activity WHERE application_name = '$app' AND $cond") ne '0';
		usleep(50_000);
	}
	return 0;
}

# ---- a cursor and a wait in one transaction ----
my $a = start_session('cursor', <<"EOS");
BEGIN;
DECLARE c CURSOR FOR SELECT i FROM t;
SAVEPOINT w;
@{[ wait_sql(6000) ]};
ROLLBACK TO SAVEPOINT w;
SELECT 'slept' FROM pg_sleep(8);
FETCH ALL FROM c;
COMMIT;
EOS
# the delete and the vacuum while the session waits (if it may)
my $waited = wait_for_session('cursor', q{wait_event_type = 'Extension'}, 4);
qn(q{DELETE FROM t});
qn(q{VACUUM t});
ok(wait_for_session('cursor', q{wait_event = 'PgSleep'}, 30), 'cursor: the session reached its sleep');
$a->{h}->finish;
my @rows = grep { /^\d+$/ } split /\n/, $a->{out};
is(scalar @rows, 999, 'cursor: all 999 rows fetched after another session\'s DELETE and VACUUM');
note("cursor session: waited inside the transaction: " . ($waited ? 'yes' : 'no') . "; stderr: $a->{err}");
ok(!$waited, 'cursor: no wait happened inside the transaction');
like($a->{err}, qr/wait_for_commit\(\) cannot run inside a transaction block/,
	'cursor: wait_for_commit() inside a transaction block is refused');

# ---- poll() never waits ----
my $t0 = time;
is(qn(q{SELECT count(*) FROM scuttlebutt.poll('m', '{}', 10)}), '0', 'poll: nothing new');
ok(time - $t0 < 2, 'poll: answers at once');
my ($rc, $out, $err) = $n->psql('postgres', q{SELECT count(*) FROM scuttlebutt.poll('m', '{}', 10, 3000)});
isnt($rc, 0, 'poll: takes no wait argument any more');

# ---- the vacuum horizon while a wait waits ----
my $w = start_session('waiter', wait_sql(20000) . ";\nSELECT 'done';\n");
ok(wait_for_session('waiter', q{wait_event_type = 'Extension'}, 20), 'horizon: the wait is under way');
qn(q{DELETE FROM t2});
($rc, $out, $err) = $n->psql('postgres', 'VACUUM (VERBOSE) t2');
like($err, qr/tuples: 1000 removed, 0 remain, 0 are dead but not yet removable/,
	'horizon: VACUUM removed every dead row while the wait waited');
ok(wait_for_session('waiter', q{wait_event_type = 'Extension'}, 1), 'horizon: the wait was still waiting');
is(qn(q{SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 't2'}), '0', 'horizon: no dead tuple left');

# ---- a commit ends the wait ----
$t0 = time;
qn(q{SELECT scuttlebutt.set('m', 'k', '1')});
$w->{h}->finish;
my $took = time - $t0;
like($w->{out}, qr/done/, 'wake: the wait returned');
ok($took < 5, sprintf('wake: a commit ended the wait (%.2f s after it, of 20 s)', $took));

# ---- news: no wait at all ----
$t0 = time;
($rc, $out, $err) = $n->psql('postgres', wait_sql(20000));
is($rc, 0, 'news: the wait succeeded');
ok(time - $t0 < 5, 'news: the server holds what the caller lacks, the wait returns at once');

done_testing();
