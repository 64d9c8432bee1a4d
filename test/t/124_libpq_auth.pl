# libpq peers and PostgreSQL authentication and privileges.  R (the
# remote) asks for scram-sha-256 passwords on TCP; D dials it.
#
#  - a wrong password: the peer is in backoff, last_error has libpq's
#    message (password authentication failed for user ...), it retries,
#    and nothing replicates; correcting the conninfo in scuttlebutt.peers
#    makes it converge;
#  - a role granted read but not write on the remote's model: pushing
#    fails with "permission denied ...: write privilege required" in
#    last_error, the peer goes on as with
#    send => false: pulls still arrive, live too; nothing of D's reaches R;
#  - a password in a URI conninfo works the same and is hidden the same;
#  - no password shows in peer_status (conninfo column included, and
#    before the worker has read a new peer), connection_errors, or D's log;
#    not even words of one that libpq cannot parse (an unquoted space),
#    set with UPDATE scuttlebutt.peers.
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
my $id_r = qr1('SELECT scuttlebutt.node_id()');
my $id_d = qd('SELECT scuttlebutt.node_id()');

my %pw = (
	writer => 'Wr1te-124-a7c2e',
	wrong => 'Wr0ng-124-5d9b3',
	reader => 'Re4d-124-f01e6',
	uri => 'Ur1-124-39aa8');

# TCP needs a password; the test's own sessions use the unix socket
open my $hba, '>', $nr->data_dir . '/pg_hba.conf' or die $!;
print $hba "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n";
close $hba;
$nr->reload;
qr1(qq{
	CREATE ROLE sb_writer LOGIN PASSWORD '$pw{writer}';
	CREATE ROLE sb_uri LOGIN PASSWORD '$pw{uri}';
	CREATE ROLE sb_reader LOGIN PASSWORD '$pw{reader}';
});
is(qr1(q{SELECT has_table_privilege('sb_writer', 'scuttlebutt.updates', 'INSERT')
		OR has_table_privilege('sb_writer', 'scuttlebutt.clocks', 'UPDATE')}), 'f',
	'no peer role may write scuttlebutt.updates nor scuttlebutt.clocks');

my $port = $nr->port;
my $ci = sub {
	my ($user, $pass) = @_;
	return "host=127.0.0.1 port=$port dbname=postgres user=$user password=$pass connect_timeout=10";
};

for my $n ($nr, $nd)
{
	LibpqTest::q1($n, q{
		SELECT scuttlebutt.create_model('kv');
		SELECT scuttlebutt.create_model('ro');
		SELECT scuttlebutt.create_model('uri');
	});
}
# the README's grants for libpq peer roles: nothing on the tables
qr1(q{
	SELECT scuttlebutt.grant(m, r, p)
	FROM (VALUES ('kv', 'sb_writer'), ('uri', 'sb_uri')) g (m, r),
		 unnest(ARRAY['read', 'write']) p;
	SELECT scuttlebutt.grant('ro', 'sb_reader', 'read');
});
qr1(q{SELECT scuttlebutt.set('kv', 'r' || i, to_jsonb(i)) FROM generate_series(1, 3) i});
qd(q{SELECT scuttlebutt.set('kv', 'd' || i, to_jsonb(i)) FROM generate_series(1, 2) i});

# ---- a wrong password ----
my $off_r = -s $nr->logfile;
my $kv = LibpqTest::add_peer($nd, 'kv', $ci->('sb_writer', $pw{wrong}));
my ($ok, $row) = LibpqTest::wait_peer($nd, "peer_id = $kv",
	sub { $_[0]{state} eq 'backoff' && ($_[0]{last_error} // '') =~ /password/ }, 30);
ok($ok, 'wrong password: the peer is in backoff');
like($row->{last_error}, qr/password authentication failed for user "sb_writer"/,
	'wrong password: last_error has libpq\'s message');
is($row->{transport}, 'libpq', 'wrong password: transport libpq');
# barrier: R refused two attempts of D's (its log, after the offset taken
# before the peer was added), so D has had two chances to sync
ok(LibpqTest::find_count($nr, qr/password authentication failed for user "sb_writer"/, $off_r, 2, 30),
	'wrong password: D retries (R logs two failed attempts or more)');
is(qd(q{SELECT scuttlebutt.get('kv', 'r1')}), '', 'wrong password: nothing of R\'s reached D');
is(qr1(q{SELECT scuttlebutt.clock('kv') ? } . $lit->($id_d)), 'f', 'wrong password: nothing of D\'s reached R');
is(qd(q{SELECT scuttlebutt.wait_for_sync('kv', '1s')}), 'f', 'wrong password: wait_for_sync is false');

# ---- corrected in scuttlebutt.peers ----
qd("UPDATE scuttlebutt.peers SET conninfo = " . $lit->($ci->('sb_writer', $pw{writer})) . " WHERE id = $kv");
is(qd(q{SELECT scuttlebutt.wait_for_sync('kv', '60s')}), 't', 'corrected password: wait_for_sync on D');
ok(LibpqTest::wait_converged('kv', [ $nr, $nd ]), 'corrected password: kv converged');
is(qd(q{SELECT string_agg(k, ',' ORDER BY k) FROM scuttlebutt.keys('kv') k}), 'd1,d2,r1,r2,r3',
	'corrected password: D holds both sides\' keys');
($ok, $row) = LibpqTest::wait_peer($nd, "peer_id = $kv", sub { $_[0]{state} eq 'live' }, 10);
is_deeply([ @$row{qw(transport state remote_id sent received)} ], [ 'libpq', 'live', $id_r, 2, 3 ],
	'corrected password: live, R\'s id, sent 2, received 3');
like($row->{conninfo} // '', qr/sb_writer/, 'the conninfo column names the user');
is(qr1(q{SELECT count(*) > 0 FROM pg_stat_activity WHERE usename = 'sb_writer' AND client_addr = '127.0.0.1'}), 't',
	'R: D\'s sessions are logged in as sb_writer over TCP');
qr1(q{SELECT scuttlebutt.set('kv', 'live_r', '1')});
ok(LibpqTest::poll($nd, q{SELECT scuttlebutt.get('kv', 'live_r') = '1'}, 30), 'corrected password: live from R');
qd(q{SELECT scuttlebutt.set('kv', 'live_d', '1')});
ok(LibpqTest::poll($nr, q{SELECT scuttlebutt.get('kv', 'live_d') = '1'}, 30), 'corrected password: live to R');

# ---- a role that may not write R's tables ----
qr1(q{SELECT scuttlebutt.set('ro', 'r1', '1')});
qd(q{SELECT scuttlebutt.set('ro', 'd1', '1')});
my $ro = LibpqTest::add_peer($nd, 'ro', $ci->('sb_reader', $pw{reader}));
($ok, $row) = LibpqTest::wait_peer($nd, "peer_id = $ro", sub { ($_[0]{last_error} // '') =~ /permission denied/ }, 30);
ok($ok, 'read-only role: last_error says "permission denied"');
note('read-only role: last_error: ' . ($row->{last_error} // 'NULL') . ', state: ' . ($row->{state} // 'NULL'));
like($row->{last_error} // '', qr/permission denied for scuttlebutt model "ro": write privilege required/,
	'read-only role: the error names the model and the write privilege');
ok(LibpqTest::poll($nd, q{SELECT scuttlebutt.get('ro', 'r1') = '1'}, 30), 'read-only role: R\'s key was pulled');
qr1(q{SELECT scuttlebutt.set('ro', 'r2', '2')});
ok(LibpqTest::poll($nd, q{SELECT scuttlebutt.get('ro', 'r2') = '2'}, 30),
	'read-only role: a later write at R is pulled too, while pushes fail');
qd(q{SELECT scuttlebutt.set('ro', 'd2', '2')});
qr1(q{SELECT scuttlebutt.set('ro', 'r3', '3')});
ok(LibpqTest::poll($nd, q{SELECT scuttlebutt.get('ro', 'r3') = '3'}, 30),
	'read-only role: and one after a write at D');
is(qr1(q{SELECT string_agg(k, ',' ORDER BY k) FROM scuttlebutt.keys('ro') k}), 'r1,r2,r3',
	'read-only role: none of D\'s keys reached R');
is(qr1(q{SELECT scuttlebutt.clock('ro') ? } . $lit->($id_d)), 'f', 'read-only role: R\'s clock has no entry for D');
# (documented: such a peer behaves as send => false, and says why)
$row = LibpqTest::peer($nd, "peer_id = $ro");
is($row->{state}, 'live', 'read-only role: the peer stays live, pulling');
like($row->{last_error} // '', qr/permission denied/, 'read-only role: last_error still says "permission denied"');
like($row->{last_error} // '', qr/push/, 'read-only role: last_error says it is the push that was refused');
note('read-only role: sent ' . $row->{sent} . ', wait_for_sync: ' . qd(q{SELECT scuttlebutt.wait_for_sync('ro', '1s')}));
is(qd(q{SELECT scuttlebutt.wait_for_sync('kv', '10s')}), 't', 'the other peer (kv) is not affected');

# ---- a password in a URI ----
my $uri = "postgresql://sb_uri:$pw{uri}\@127.0.0.1:$port/postgres";
my $pending = qd(
	'BEGIN;' . "\n"
	  . 'SELECT scuttlebutt.add_peer(\'uri\', ' . $lit->($uri) . ') AS id \gset' . "\n"
	  . 'SELECT :id || \'|\' || coalesce((SELECT string_agg(row_to_json(s)::text, \',\') FROM scuttlebutt.peer_status s), \'\');' . "\n"
	  . 'COMMIT;');
my ($uri_id, $pending_rows) = split /\|/, $pending, 2;
like($pending_rows, qr/"model":"uri"/, 'URI: the new peer shows before the worker has read it');
unlike($pending_rows, qr/\Q$pw{uri}\E/, 'URI: and no column shows its password');
qr1(q{SELECT scuttlebutt.set('uri', 'r', '"r"')});
qd(q{SELECT scuttlebutt.set('uri', 'd', '"d"')});
is(qd(q{SELECT scuttlebutt.wait_for_sync('uri', '60s')}), 't', 'URI: wait_for_sync');
ok(LibpqTest::wait_converged('uri', [ $nr, $nd ]), 'URI: converged');
is(qr1(q{SELECT scuttlebutt.to_json('uri')}), '{"d": "d", "r": "r"}', 'URI: both keys on R');
$row = LibpqTest::peer($nd, "peer_id = $uri_id");
ok(defined $row->{conninfo}, 'URI: the conninfo column is set') or diag(LibpqTest::show($row));
unlike($row->{conninfo} // '', qr/\Q$pw{uri}\E/, 'URI: the conninfo column lacks the password');

# ---- the passwords show nowhere ----
my $text = LibpqTest::visible_text($nd);
my $log = slurp_file($nd->logfile);
for my $k (sort keys %pw)
{
	unlike($text, qr/\Q$pw{$k}\E/, "the $k password shows neither in peer_status nor in connection_errors");
	unlike($log, qr/\Q$pw{$k}\E/, "the $k password is not in D's log");
}
for my $r (@{ LibpqTest::peers($nd, 'true') })
{
	ok(defined $r->{conninfo} && $r->{conninfo} !~ /password\s*=\s*\S/i,
		"peer $r->{peer_id}'s conninfo column has no password keyword") or diag($r->{conninfo} // 'NULL');
}

# ---- a conninfo libpq cannot parse (a password with an unquoted space) ----
# add_peer() refuses it; set with UPDATE, it must be refused too, or the
# peer must fail without quoting any part of it
my $frag = 'Fr4gment-124-77';
my ($rc, $o, $e) = $nd->psql('postgres',
	"UPDATE scuttlebutt.peers SET conninfo = 'host=127.0.0.1 port=$port user=sb_uri password=abc $frag' WHERE id = $uri_id");
note("UPDATE to an unparsable conninfo: exit $rc; $e");
if ($rc == 0)
{
	($ok, $row) = LibpqTest::wait_peer($nd, "peer_id = $uri_id",
		sub { $_[0]{state} eq 'backoff' && defined $_[0]{last_error} }, 30);
	ok($ok, 'unparsable conninfo: the peer fails');
}
else
{
	like($e, qr/invalid connection string|peers_conninfo_valid/, 'unparsable conninfo: the UPDATE is refused');
}
my $wpid = StreamTest::worker_pid($nd);
unlike(LibpqTest::visible_text($nd), qr/\Q$frag\E/,
	'unparsable conninfo: neither peer_status nor connection_errors quotes the password\'s words');
unlike(join("\n", grep { /\[$wpid\]/ } split /\n/, slurp_file($nd->logfile)), qr/\Q$frag\E/,
	'unparsable conninfo: nor does the worker\'s log');

$nd->stop;
$nr->stop;
done_testing();
