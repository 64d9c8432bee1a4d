# Notifications a remote sends a dialing worker are never kept.  libpq
# keeps every NotificationResponse it parses until the client takes it
# (PQnotifies); the worker listens to no channel, so a remote that sends
# them (its wait's session made to LISTEN and notify itself, as a remote's
# superuser can) would otherwise grow the worker's memory with every
# round trip.
#
# R's wait_for_commit() is replaced by one that answers at once with no
# page, after notifying its own session with 7 kB on channel "junk": D
# then calls it back to back.  After thousands of calls the worker's
# private memory grew by less than a tenth of what they sent.  Once the
# procedure is restored, D syncs with R as before.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $nr = LibpqTest::new_node('r', conf => "track_functions = 'all'\n");
my $nd = LibpqTest::new_node('d');
sub qr1 { LibpqTest::q1($nr, @_) }
sub qd { LibpqTest::q1($nd, @_) }

for my $n ($nr, $nd) { LibpqTest::q1($n, q{SELECT scuttlebutt.create_model('m')}) }
qr1(q{SELECT scuttlebutt.set('m', 'before', '1')});
LibpqTest::add_peer($nd, 'm', LibpqTest::conninfo($nr));
is(qd(q{SELECT scuttlebutt.wait_for_sync('m', '60s')}), 't', 'D syncs m with R');

my $worker = StreamTest::worker_pid($nd);
sub private_kb { return StreamTest::rss_anon_kb($worker) }

sub calls
{
	return qr1(q{SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions
		WHERE schemaname = 'scuttlebutt' AND funcname = 'wait_for_commit'});
}

my $payload_kb = 7;
my $wait_proc = q{'scuttlebutt.wait_for_commit(text, jsonb, integer, integer, integer, integer, text)'::regprocedure};
my $definition = qr1("SELECT pg_get_functiondef($wait_proc)");
qr1(qq{CREATE OR REPLACE PROCEDURE scuttlebutt.wait_for_commit(model text, sources jsonb,
		wait_ms integer, max_updates integer, pusher integer DEFAULT 0, pushes integer DEFAULT 0,
		INOUT page text DEFAULT NULL)
	LANGUAGE plpgsql AS \$\$
	BEGIN
		LISTEN junk;
		PERFORM pg_notify('junk', repeat('x', $payload_kb * 1024));
		page := '';
	END
	\$\$});

# D's session now calls the new procedure (a session that started before
# took the C one): warm up, then measure
ok(LibpqTest::poll($nr, q{SELECT coalesce(sum(calls), 0) >= 200 FROM pg_stat_user_functions
		WHERE schemaname = 'scuttlebutt' AND funcname = 'wait_for_commit'}, 30),
	"D's pull calls the replaced wait back to back")
  or diag('D: ' . qd(q{SELECT state || ': ' || coalesce(last_error, '') FROM scuttlebutt.peer_status})
	. '; R: ' . qr1(q{SELECT string_agg(application_name || ' ' || state || ' ' || query, '; ') FROM pg_stat_activity WHERE application_name LIKE 'scuttlebutt%'}));
my $calls0 = calls();
my $kb0 = private_kb();
sleep(5);
my $sent_kb = (calls() - $calls0) * $payload_kb;
my $grew_kb = private_kb() - $kb0;
cmp_ok($sent_kb, '>', 20_000, "R sent D's worker over 20 MB of notifications ($sent_kb kB)");
cmp_ok($grew_kb, '<', $sent_kb / 10, "the worker's private memory grew by $grew_kb kB, under a tenth of that");
is(qd(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'scuttlebutt replication worker' AND pid = } . $worker),
	'1', 'the worker lives on');

# restored: D's next session syncs as before
qr1($definition);
is(qr1("SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang WHERE p.oid = $wait_proc"), 'c',
	"R's wait is its C procedure again");
qr1(q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'scuttlebutt pull%'});
qr1(q{SELECT scuttlebutt.set('m', 'after', '2')});
ok(LibpqTest::poll($nd, q{SELECT scuttlebutt.get('m', 'after') = '2'}, 30), 'with the procedure restored, D pulls again');
is(LibpqTest::digest($nd, 'm'), LibpqTest::digest($nr, 'm'), 'both hold the same history');

done_testing();
