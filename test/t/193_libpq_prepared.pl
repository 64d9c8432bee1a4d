# A libpq peer's push link prepares its statement once per connection
# (at the end of its handshake) and executes it for every push: the
# remote neither parses nor plans _push() per commit.  Seen in the
# remote's statement log (log_min_duration_statement = 0 logs each
# protocol step with the statement's name):
#  - live pushes from D reach R as "execute scuttlebutt_push", with no
#    parse of the statement, named or not, while they run (and R's writes
#    reach D meanwhile);
#  - a new connection (the old push backend terminated) prepares it
#    again, once, and pushes through it;
#  - R's extension dropped and created again under the live session, in
#    one transaction (a new node, empty): D's pull sees another node id in
#    R's header, closes the session ("remote node id changed") and
#    connects anew, prepares its statement again and syncs: R then holds
#    all D held, both ways live again;
#  - the same for a peer of D's that only pushes (model po): its next push
#    meets the new node, which refuses it (_push() is told the node id the
#    push link's handshake met) rather than take D's clock for its own; D
#    connects anew and pushes all it holds.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $nr = LibpqTest::new_node('r');
my $nd = LibpqTest::new_node('d');
sub qr1 { LibpqTest::q1($nr, @_) }
sub qd { LibpqTest::q1($nd, @_) }

$_->safe_psql('postgres', q{SELECT scuttlebutt.create_model('kv'); SELECT scuttlebutt.create_model('po')})
  for $nr, $nd;
LibpqTest::add_peer($nd, 'kv', LibpqTest::conninfo($nr, tcp => 1));
is(qd(q{SELECT scuttlebutt.wait_for_sync('kv', '60s')}), 't', 'D syncs with R');

# R's extension dropped and created again, with both models, in one
# transaction (no peer sees it missing), and sql after
sub recreate_r
{
	my ($sql) = @_;
	qr1(qq{BEGIN; DROP EXTENSION scuttlebutt; CREATE EXTENSION scuttlebutt;
		SELECT scuttlebutt.create_model('kv'); SELECT scuttlebutt.create_model('po'); $sql COMMIT});
}

# R logs every statement (a reload: a backend takes it before its next
# command, so a push or a wait may still run unlogged, which only makes
# the counts below smaller); returns the log's offset
sub logging_on
{
	qr1(q{ALTER SYSTEM SET log_min_duration_statement = 0; SELECT pg_reload_conf()});
	return -s $nr->logfile;
}

# The writes $writes at D (each awaited at R) and at R (each awaited at D)
sub writes_both_ways
{
	my ($writes) = @_;
	for my $w (@$writes)
	{
		qd(qq{SELECT scuttlebutt.set('kv', 'd_$w', '1')});
		ok(LibpqTest::poll($nr, qq{SELECT scuttlebutt.get('kv', 'd_$w') = '1'}), "d_$w reaches R");
		qr1(qq{SELECT scuttlebutt.set('kv', 'r_$w', '1')});
		ok(LibpqTest::poll($nd, qq{SELECT scuttlebutt.get('kv', 'r_$w') = '1'}), "r_$w reaches D");
	}
}

# R's log since $offset, its statement logging turned off
sub logged_since
{
	my ($offset) = @_;
	qr1(q{ALTER SYSTEM RESET log_min_duration_statement; SELECT pg_reload_conf()});
	return StreamTest::log_since($nr, $offset);
}
sub count_of { my ($log, $re) = @_; my @m = $log =~ /$re/g; return scalar @m }

# a session is live once its pushes run: one write first, unlogged
qd(q{SELECT scuttlebutt.set('kv', 'k0', '1')});
ok(LibpqTest::poll($nr, q{SELECT scuttlebutt.get('kv', 'k0') = '1'}), 'the first push reaches R');
my $offset = logging_on();
writes_both_ways([ map { "live$_" } 1 .. 5 ]);
my $log = logged_since($offset);
cmp_ok(count_of($log, qr/execute scuttlebutt_push: SELECT scuttlebutt\._push\(\$1, \$2, \$3, \$4, \$5\)/), '>=', 3,
	'live pushes run the prepared statement');
cmp_ok(count_of($log, qr/execute <unnamed>: CALL scuttlebutt\.wait_for_commit/), '>=', 3,
	'the log shows the pulls too');
is(count_of($log, qr/(?:parse|execute) <unnamed>: SELECT scuttlebutt\._push/), 0,
	'no push is sent as an unnamed statement');
is(count_of($log, qr/parse scuttlebutt_push:/), 0, 'the statement is not parsed again');

# a new push connection prepares it again
my $pid = qr1(q{SELECT pid FROM pg_stat_activity WHERE application_name = 'scuttlebutt push'});
like($pid, qr/^\d+$/, "D's push link has a backend on R");
# (the window opens before the termination: the new handshake is in it)
$offset = logging_on();
qr1("SELECT pg_terminate_backend($pid)");
ok(LibpqTest::poll($nr, qq{SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'scuttlebutt push' AND pid <> $pid}),
	'D connects its push link again');
is(qd(q{SELECT scuttlebutt.wait_for_sync('kv', '60s')}), 't', 'D is in sync again');
writes_both_ways([ map { "again$_" } 1 .. 3 ]);
$log = logged_since($offset);
is(count_of($log, qr/parse scuttlebutt_push: SELECT scuttlebutt\._push\(\$1, \$2, \$3, \$4, \$5\)/), 1,
	'the new connection prepares the statement once');
cmp_ok(count_of($log, qr/execute scuttlebutt_push:/), '>=', 3, 'and pushes through it');

# ---- the remote's extension created again ----
my $keys_d = qd(q{SELECT count(*) FROM scuttlebutt.keys('kv')});
recreate_r(q{SELECT scuttlebutt.set('kv', 'after', '1');});
ok(LibpqTest::poll($nd, q{SELECT count > 0 FROM scuttlebutt.connection_errors WHERE reason = 'remote node id changed'}, 30),
	"R's extension created again: D counts a close for R's new node id");
is(qd(q{SELECT scuttlebutt.wait_for_sync('kv', '60s')}), 't', 'D syncs again');
ok(LibpqTest::poll($nr, qq{SELECT count(*) = $keys_d + 1 FROM scuttlebutt.keys('kv')}, 60),
	'R holds every key D held, and its new one');
is(qd(q{SELECT scuttlebutt.get('kv', 'after')}), '1', "R's new write reached D");
qd(q{SELECT scuttlebutt.set('kv', 'after_d', '1')});
ok(LibpqTest::poll($nr, q{SELECT scuttlebutt.get('kv', 'after_d') = '1'}, 60), "D's next write reaches R");

# ---- again: a peer that only pushes meets the new node ----
qd(q{SELECT scuttlebutt.set('po', 'p' || i, '1') FROM generate_series(1, 20) i});
LibpqTest::add_peer($nd, 'po', LibpqTest::conninfo($nr, tcp => 1), receive => 'false');
is(qd(q{SELECT scuttlebutt.wait_for_sync('po', '60s')}), 't', 'a push-only peer of D syncs model po');
ok(LibpqTest::poll($nr, q{SELECT count(*) = 20 FROM scuttlebutt.keys('po')}), "R holds D's po keys");
my $po_d = qd(q{SELECT count(*) FROM scuttlebutt.keys('po')});
my $po_offset = -s $nr->logfile;
recreate_r('');
qd(q{SELECT scuttlebutt.set('po', 'pushed_first', '1')});
ok(LibpqTest::poll($nr, qq{SELECT count(*) = $po_d + 1 FROM scuttlebutt.keys('po')}, 60),
	"R created again: a push-only peer's next push is refused by the new node, and D's next session pushes all it holds")
  or diag('R holds ' . qr1(q{SELECT count(*) FROM scuttlebutt.keys('po')}) . " of $po_d + 1");
like(StreamTest::log_since($nr, $po_offset), qr/this node is "[^"]+", not "[^"]+" that the pushing session began with/,
	"R's log says why it refused the push");

done_testing();
