# libpq peers under the remote role's per-model privileges.  R (the
# remote) has roles with no rights on its tables at all; D dials it as
# them.
#
#  - a pull as a role without read on R's model: the session is refused,
#    D's last_error names the model and the read privilege, nothing is
#    pulled; after scuttlebutt.grant(..., 'read') on R the next session
#    pulls, live too; after revoke() the live pull is refused again;
#  - a push (receive => false) as a role without write: last_error names
#    the write privilege, nothing reaches R; after grant(..., 'write') D's
#    keys reach R, though the role still may not read the model;
#  - a role that may read but not write, with send and receive: the
#    push is refused naming the write privilege and the peer goes on
#    pulling.
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
my $lit = \&LibpqTest::lit;

qr1(q{
	CREATE ROLE sb_puller LOGIN;
	CREATE ROLE sb_pusher LOGIN;
	CREATE ROLE sb_ro LOGIN;
});
for my $n ($nr, $nd)
{
	LibpqTest::q1($n, q{
		SELECT scuttlebutt.create_model('pull');
		SELECT scuttlebutt.create_model('push');
		SELECT scuttlebutt.create_model('ro');
	});
}
is(qr1(q{SELECT bool_or(has_table_privilege(r, 'scuttlebutt.' || t, p))
	FROM unnest(ARRAY['sb_puller', 'sb_pusher', 'sb_ro']) r,
		 unnest(ARRAY['updates', 'clocks', 'registry', 'grants']) t,
		 unnest(ARRAY['INSERT', 'UPDATE', 'DELETE']) p}), 'f',
	'R: the peer roles may write none of the tables');
my $ci = sub { LibpqTest::conninfo($nr, extra => "user=$_[0] connect_timeout=10") };

# ---- a pull without read ----
qr1(q{SELECT scuttlebutt.set('pull', 'r' || i, to_jsonb(i)) FROM generate_series(1, 3) i});
my $pull = LibpqTest::add_peer($nd, 'pull', $ci->('sb_puller'), send => 'false');
my ($ok, $row) = LibpqTest::wait_peer($nd, "peer_id = $pull",
	sub { ($_[0]{last_error} // '') =~ /permission denied/ }, 30);
ok($ok, 'pull without read: the peer has a last_error') or diag(LibpqTest::show($row));
like($row->{last_error} // '',
	qr/pull connection: permission denied for scuttlebutt model "pull": read privilege required \(SQLSTATE 42501\)/,
	'pull without read: last_error names the model and the read privilege');
is(qd(q{SELECT count(*) FROM scuttlebutt.keys('pull')}), '0', 'pull without read: nothing was pulled');

# ---- granted read: it syncs, live too ----
qr1(q{SELECT scuttlebutt.grant('pull', 'sb_puller', 'read')});
is(qd(q{SELECT scuttlebutt.wait_for_sync('pull', '60s')}), 't', 'granted read: wait_for_sync');
is(qd(q{SELECT string_agg(k, ',' ORDER BY k) FROM scuttlebutt.keys('pull') k}), 'r1,r2,r3',
	'granted read: R\'s keys were pulled');
qr1(q{SELECT scuttlebutt.set('pull', 'live', '"l"')});
ok(LibpqTest::poll($nd, q{SELECT scuttlebutt.get('pull', 'live') = '"l"'}, 30),
	'granted read: a later write at R is pulled');
is(qr1(q{SELECT count(*) FROM pg_stat_activity WHERE usename = 'sb_puller'}) > 0 ? 1 : 0, 1,
	'R: D\'s pull runs as sb_puller');

# ---- revoked: the live pull is refused ----
qr1(q{SELECT scuttlebutt.revoke('pull', 'sb_puller', 'read')});
qr1(q{SELECT scuttlebutt.set('pull', 'after_revoke', '1')});
($ok, $row) = LibpqTest::wait_peer($nd, "peer_id = $pull",
	sub { ($_[0]{last_error} // '') =~ /read privilege required/ }, 30);
ok($ok, 'revoked read: the pull is refused again') or diag(LibpqTest::show($row));
is(qd(q{SELECT scuttlebutt.get('pull', 'after_revoke')}), '', 'revoked read: a write after the revoke is not pulled');
qd("SELECT scuttlebutt.remove_peer($pull)");

# ---- a push without write ----
qd(q{SELECT scuttlebutt.set('push', 'd' || i, to_jsonb(i)) FROM generate_series(1, 2) i});
my $push = LibpqTest::add_peer($nd, 'push', $ci->('sb_pusher'), receive => 'false');
($ok, $row) = LibpqTest::wait_peer($nd, "peer_id = $push",
	sub { ($_[0]{last_error} // '') =~ /permission denied/ }, 30);
ok($ok, 'push without write: the peer has a last_error') or diag(LibpqTest::show($row));
like($row->{last_error} // '',
	qr/permission denied for scuttlebutt model "push": write privilege required/,
	'push without write: last_error names the model and the write privilege');
is(qr1(q{SELECT count(*) FROM scuttlebutt.keys('push')}), '0', 'push without write: nothing reached R');

# ---- granted write (and still no read): D's keys reach R ----
qr1(q{SELECT scuttlebutt.grant('push', 'sb_pusher', 'write')});
ok(LibpqTest::poll($nr, q{SELECT scuttlebutt.to_json('push') = '{"d1": 1, "d2": 2}'}, 30),
	'granted write: D\'s keys reached R');
qd(q{SELECT scuttlebutt.set('push', 'live', '"l"')});
ok(LibpqTest::poll($nr, q{SELECT scuttlebutt.get('push', 'live') = '"l"'}, 30),
	'granted write: a later write at D is pushed');
my ($rc, $out, $err) = $nr->psql('postgres', q{SELECT scuttlebutt.keys('push')},
	extra_params => [ '-U', 'sb_pusher' ]);
like($err, qr/read privilege required/, 'the pushing role still may not read the model on R');
qd("SELECT scuttlebutt.remove_peer($push)");

# ---- read but not write, both ways: pulls, and says why it does not push ----
qr1(q{SELECT scuttlebutt.grant('ro', 'sb_ro', 'read')});
qr1(q{SELECT scuttlebutt.set('ro', 'r', '1')});
qd(q{SELECT scuttlebutt.set('ro', 'd', '1')});
my $ro = LibpqTest::add_peer($nd, 'ro', $ci->('sb_ro'));
ok(LibpqTest::poll($nd, q{SELECT scuttlebutt.get('ro', 'r') = '1'}, 30), 'read only: R\'s key was pulled');
($ok, $row) = LibpqTest::wait_peer($nd, "peer_id = $ro",
	sub { ($_[0]{last_error} // '') =~ /push refused/ }, 30);
like($row->{last_error} // '',
	qr/push refused by the remote: permission denied for scuttlebutt model "ro": write privilege required/,
	'read only: last_error says the push was refused for want of write');
is($row->{state}, 'live', 'read only: the peer stays live, pulling');
is(qr1(q{SELECT scuttlebutt.get('ro', 'd')}), '', 'read only: D\'s key did not reach R');

$nd->stop;
$nr->stop;
done_testing();
