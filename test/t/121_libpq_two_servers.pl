# Two servers replicate over libpq (scuttlebutt.add_peer(model, conninfo)),
# both ways, for each kind of model: B dials A for "kv" (model), "ev"
# (events) and "val" (value); A dials B, over TCP, for "kv2".  Each side
# writes before add_peer (initial sync: pull, then push) and after it (live
# both ways); both must end with the same history, to_json and clock.
#
# peer_status must describe the libpq peers exactly (transport libpq,
# direction out, A's node id, live, synced_at, exact sent/received counts:
# nothing echoed) and show the conninfo without its password, which no
# column, connection_errors nor the log may show, not even before the
# worker has read the new peer.  remove_peer() must end a peer; the peers
# must come back after a restart of the dialing server and catch up; the
# side dialing a stopped server must show backoff.  send => false only
# pulls, receive => false only pushes.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $na = LibpqTest::new_node('a');
my $nb = LibpqTest::new_node('b');
sub qa { LibpqTest::q1($na, @_) }
sub qb { LibpqTest::q1($nb, @_) }
my $lit = \&LibpqTest::lit;

my $id_a = qa('SELECT scuttlebutt.node_id()');
my $id_b = qb('SELECT scuttlebutt.node_id()');
isnt($id_a, $id_b, 'the two servers are different nodes');

StreamTest::two_server_fixture($na, $nb, qw(ro_pull ro_push));

# A's trust authentication ignores the password, but the worker must hide
# it all the same
my $secret = 'pw121-Hush-8b1f';
my $ci_a = LibpqTest::conninfo($na, extra => "password=$secret");
# the kv peer's sessions name themselves; the others get the worker's names
my $ci_kv = "$ci_a application_name=sb121_kv";
my $ci_b = LibpqTest::conninfo($nb, tcp => 1, extra => "password='$secret'");

# ---- a new peer, before the worker has read it ----
# In the transaction that adds it, the worker cannot know the peer: the
# view shows it from scuttlebutt.peers.  The password must not show there
# either.
my $pending = qb(
	'BEGIN;' . "\n"
	  . 'SELECT scuttlebutt.add_peer(\'kv\', ' . $lit->($ci_kv) . ') AS id \gset' . "\n"
	  . 'SELECT :id || \'|\' || coalesce((SELECT string_agg(row_to_json(s)::text, \',\') FROM scuttlebutt.peer_status s), \'\');' . "\n"
	  . 'COMMIT;');
my ($kv_id, $pending_rows) = split /\|/, $pending, 2;
like($kv_id, qr/^\d+$/, 'add_peer() returns the peer id');
like($pending_rows, qr/"transport":"libpq"/, 'a peer not yet read by the worker shows in peer_status, transport libpq');
unlike($pending_rows, qr/\Q$secret\E/, 'a peer not yet read by the worker: no column shows the password');
like($pending_rows, qr/"conninfo":/, 'peer_status has a conninfo column');

my %peer = (kv => $kv_id);
$peer{$_} = LibpqTest::add_peer($nb, $_, $ci_a) for qw(ev val);
my $kv2_peer = LibpqTest::add_peer($na, 'kv2', $ci_b);
is(qb(q{SELECT string_agg(model || ':' || transport || ':' || send || ':' || receive, ',' ORDER BY id)
		FROM scuttlebutt.peers}), 'kv:libpq:true:true,ev:libpq:true:true,val:libpq:true:true',
	'B keeps its three libpq peers in scuttlebutt.peers, send and receive by default');
is(qb("SELECT conninfo FROM scuttlebutt.peers WHERE id = $kv_id"), $ci_kv,
	'scuttlebutt.peers holds the conninfo as given');

# ---- initial sync ----
for my $m (qw(kv ev val))
{
	is(qb("SELECT scuttlebutt.wait_for_sync('$m', '60s')"), 't', "wait_for_sync('$m') on the dialing side");
}
is(qa("SELECT scuttlebutt.wait_for_sync('kv2', '60s')"), 't', "wait_for_sync('kv2') on A (dialing over TCP)");
for my $m (qw(kv ev val kv2))
{
	ok(LibpqTest::wait_converged($m, [ $na, $nb ], 20), "initial sync: $m converged");
}
StreamTest::check_two_server_fixture($na, $nb);

# ---- peer_status ----
# expected [sent, received] of B's rows, per model.  A session pushes
# before it pulls: B's "b0" reaches A first and supersedes "a0" there, so
# B pulls no update of val (it learns of "a0" through A's clock).
my %counts = (kv => [ 2, 3 ], ev => [ 1, 2 ], val => [ 1, 0 ]);
sub check_rows
{
	my ($phase) = @_;
	for my $m (qw(kv ev val))
	{
		my ($sent, $recv) = @{ $counts{$m} };
		my ($ok, $r) = LibpqTest::wait_peer($nb, "peer_id = $peer{$m}",
			sub { $_[0]{state} eq 'live' && $_[0]{sent} == $sent && $_[0]{received} == $recv }, 10);
		ok($r, "$phase: B has a peer_status row for $m") or next;
		is_deeply(
			[ @$r{qw(peer_id direction transport model remote_id state rejected last_error)} ],
			[ $peer{$m}, 'out', 'libpq', $m, $id_a, 'live', 0, undef ],
			"$phase: B's row for $m: peer id, out, libpq, A's node id, live, no error");
		is($r->{sent}, $sent, "$phase: B sent $sent updates of $m");
		is($r->{received}, $recv, "$phase: B received $recv updates of $m (none of its own echoed)");
		ok(defined $r->{synced_at}, "$phase: B's row for $m has synced_at");
		ok(defined $r->{last_activity}, "$phase: B's row for $m has last_activity");
		ok(($r->{bytes_in} // 0) > 0 && ($r->{bytes_out} // 0) > 0, "$phase: B's row for $m counts bytes");
		my $port = $na->port;
		ok(defined $r->{conninfo} && $r->{conninfo} =~ /\b$port\b/ && $r->{conninfo} =~ /postgres/,
			"$phase: B's row for $m shows the conninfo (port, dbname)")
		  or diag('conninfo: ' . ($r->{conninfo} // 'NULL'));
		unlike($r->{conninfo} // '', qr/\Q$secret\E/, "$phase: the conninfo shown lacks the password");
	}
}
check_rows('initial sync');
my ($ok, $kv2_row) = LibpqTest::wait_peer($na, "peer_id = $kv2_peer",
	sub { $_[0]{state} eq 'live' && $_[0]{received} == 1 }, 15);
is_deeply([ @$kv2_row{qw(direction transport model remote_id state sent received)} ],
	[ 'out', 'libpq', 'kv2', $id_b, 'live', 1, 1 ],
	"A's row for kv2: out, libpq, B's id, live, sent 1, received 1");
like($kv2_row->{conninfo} // '', qr/127\.0\.0\.1/, "A's row for kv2 shows the TCP host");
is(qa("SELECT count(*) FROM scuttlebutt.peer_status"), 1, 'A: one row (its own peer), no stray rows');
is(qb("SELECT count(*) FROM scuttlebutt.peer_status"), 3, 'B: three rows, no stray rows');

# ---- live updates, both ways, every kind ----
qa(q{SELECT scuttlebutt.set('kv', 'live_a', '"from a"')});
ok(LibpqTest::poll($nb, q{SELECT scuttlebutt.get('kv', 'live_a') = '"from a"'}, 30), 'live: set() at A reaches B');
qb(q{SELECT scuttlebutt.set('kv', 'live_b', '"from b"')});
ok(LibpqTest::poll($na, q{SELECT scuttlebutt.get('kv', 'live_b') = '"from b"'}, 30), 'live: set() at B reaches A');
qa(q{SELECT scuttlebutt.delete('kv', 'a1')});
ok(LibpqTest::poll($nb, q{SELECT NOT (scuttlebutt.to_json('kv') ? 'a1')}, 30), 'live: delete() at A reaches B');
qa(q{SELECT scuttlebutt.emit('ev', 'live', '"from a"')});
ok(LibpqTest::poll($nb, q{SELECT count(*) = 1 FROM scuttlebutt.events('ev') WHERE data = '"from a"'}, 30),
	'live: emit() at A reaches B');
qb(q{SELECT scuttlebutt.emit('ev', 'live', '"from b"')});
ok(LibpqTest::poll($na, q{SELECT count(*) = 1 FROM scuttlebutt.events('ev') WHERE data = '"from b"'}, 30),
	'live: emit() at B reaches A');
qa(q{SELECT scuttlebutt.set_value('val', '{"by": "a"}')});
ok(LibpqTest::poll($nb, q{SELECT scuttlebutt.get_value('val') = '{"by": "a"}'}, 30), 'live: set_value() at A reaches B');
qb(q{SELECT scuttlebutt.set_value('val', '{"by": "b"}')});
ok(LibpqTest::poll($na, q{SELECT scuttlebutt.get_value('val') = '{"by": "b"}'}, 30), 'live: set_value() at B reaches A');
qb(q{SELECT scuttlebutt.set('kv2', 'live_b', 'true')});
ok(LibpqTest::poll($na, q{SELECT scuttlebutt.get('kv2', 'live_b') = 'true'}, 30),
	'live: kv2 from B (dialed) to A (dialing)');
qa(q{SELECT scuttlebutt.set('kv2', 'live_a', 'false')});
ok(LibpqTest::poll($nb, q{SELECT scuttlebutt.get('kv2', 'live_a') = 'false'}, 30),
	'live: kv2 from A (dialing) to B (dialed)');
qa(q{SELECT scuttlebutt.apply_update('kv', '[["relayed",1],1795477184259,"SOMEONE"]')});
ok(LibpqTest::poll($nb, q{SELECT scuttlebutt.get('kv', 'relayed') = '1'}, 30),
	'live: apply_update() at A (a third source) reaches B');
for my $m (qw(kv ev val kv2))
{
	ok(LibpqTest::wait_converged($m, [ $na, $nb ]), "live: $m converged");
}
is(qa(q{SELECT scuttlebutt.to_json('kv')}), qb(q{SELECT scuttlebutt.to_json('kv')}), 'live: kv same to_json');
is(qa(q{SELECT scuttlebutt.clock('kv')}), qb(q{SELECT scuttlebutt.clock('kv')}), 'live: kv same clock');
is(qa(q{SELECT scuttlebutt.clock('ev')}), qb(q{SELECT scuttlebutt.clock('ev')}), 'live: ev same clock');
is(qb(q{SELECT count(*) FROM scuttlebutt.events('ev')}), 5, 'live: ev holds 5 events on B, none twice');
is(qa(q{SELECT count(*) FROM scuttlebutt.events('ev')}), 5, 'live: and 5 on A');
%counts = (kv => [ 3, 6 ], ev => [ 2, 3 ], val => [ 2, 1 ]);
check_rows('after live updates');

# ---- remove_peer ends a peer ----
my $sessions = q{SELECT string_agg(application_name || ':' || n, ',' ORDER BY application_name) FROM
	(SELECT application_name, count(*) n FROM pg_stat_activity WHERE backend_type = 'client backend'
	 AND pid <> pg_backend_pid() GROUP BY application_name) s};
is(qa($sessions), 'sb121_kv:2,scuttlebutt pull:2,scuttlebutt push:2',
	'A serves two sessions per peer of B: "scuttlebutt pull" and "scuttlebutt push", or the conninfo\'s application_name');
qb("SELECT scuttlebutt.remove_peer($peer{kv})");
is(qb('SELECT count(*) FROM scuttlebutt.peers'), 2, 'remove_peer: the row is gone from scuttlebutt.peers');
ok(LibpqTest::poll($nb, q{SELECT NOT EXISTS (SELECT FROM scuttlebutt.peer_status WHERE model = 'kv')}, 30),
	'remove_peer: B no longer shows the kv peer');
ok(LibpqTest::poll($na, "SELECT ($sessions) = 'scuttlebutt pull:2,scuttlebutt push:2'", 30),
	'remove_peer: B closed the kv peer\'s two sessions on A, and only those');
my ($rc, $out, $err) = $nb->psql('postgres', 'SELECT scuttlebutt.remove_peer(9999)');
like($err, qr/peer 9999 does not exist/, 'remove_peer of an unknown id is an error');
qa(q{SELECT scuttlebutt.set('kv', 'after_remove_a', '1')});
qb(q{SELECT scuttlebutt.set('kv', 'after_remove_b', '1')});
# barrier: a write on a model still connected, made after those
qa(q{SELECT scuttlebutt.emit('ev', 'barrier', '1')});
qb(q{SELECT scuttlebutt.emit('ev', 'barrier', '2')});
ok(LibpqTest::wait_converged('ev', [ $na, $nb ]), 'remove_peer: ev still replicates');
usleep(300_000);
is(qb(q{SELECT scuttlebutt.get('kv', 'after_remove_a')}), '', 'remove_peer: kv writes at A no longer reach B');
is(qa(q{SELECT scuttlebutt.get('kv', 'after_remove_b')}), '', 'remove_peer: kv writes at B no longer reach A');
is(qb(q{SELECT scuttlebutt.wait_for_sync('kv', '1s')}), 't', 'wait_for_sync of a model without peers is true');

# ---- the dialing server restarts: its peers come back ----
$nb->stop;
my ($down_ok, $down_row) = LibpqTest::wait_peer($na, "peer_id = $kv2_peer",
	sub { $_[0]{state} eq 'backoff' && defined $_[0]{last_error} }, 30);
ok($down_ok, 'B down: A\'s peer dialing B is in backoff, with last_error');
like($down_row->{last_error} // '', qr/refused|could not connect|connection/i,
	'B down: A\'s last_error says the connection failed');
qa(q{SELECT scuttlebutt.emit('ev', 'while_b_down', '1')});
qa(q{SELECT scuttlebutt.set_value('val', '"set while B was down"')});
qa(q{SELECT scuttlebutt.set('kv2', 'while_b_down', '1')});
$nb->start;
ok(LibpqTest::poll($nb,
		qq{SELECT array_agg(peer_id ORDER BY peer_id) = ARRAY[$peer{ev}, $peer{val}]
		   AND bool_and(state = 'live') AND bool_and(transport = 'libpq') FROM scuttlebutt.peer_status WHERE direction = 'out'}, 60),
	'restart: B redials its two remaining peers, same ids, live');
StreamTest::check_restart_caught_up($na, $nb, 'dialed', \&LibpqTest::wait_converged);
($ok, my $row) = LibpqTest::wait_peer($nb, "peer_id = $peer{ev}", sub { $_[0]{received} == 1 }, 10);
is($row->{sent}, 0, 'restart: B had nothing new to send for ev');
is($row->{received}, 1, 'restart: B received exactly the one event it lacked');
is(LibpqTest::peer($na, "peer_id = $kv2_peer")->{state}, 'live', 'restart: A\'s peer dialing B is live again');
qb(q{SELECT scuttlebutt.emit('ev', 'after_restart', '"b"')});
ok(LibpqTest::poll($na, q{SELECT count(*) = 1 FROM scuttlebutt.events('ev') WHERE event = 'after_restart'}, 30),
	'restart: live again from B to A');
qa(q{SELECT scuttlebutt.set_value('val', '"after restart"')});
ok(LibpqTest::poll($nb, q{SELECT scuttlebutt.get_value('val') = '"after restart"'}, 30),
	'restart: live again from A to B');

# ---- send => false only pulls; receive => false only pushes ----
qa(q{SELECT scuttlebutt.set('ro_pull', 'a1', '1'); SELECT scuttlebutt.set('ro_push', 'a1', '1')});
qb(q{SELECT scuttlebutt.set('ro_pull', 'b1', '1'); SELECT scuttlebutt.set('ro_push', 'b1', '1')});
my $pull_id = LibpqTest::add_peer($nb, 'ro_pull', $ci_a, send => 'false');
my $push_id = LibpqTest::add_peer($nb, 'ro_push', $ci_a, receive => 'false');
is(qb(qq{SELECT string_agg(send || '/' || receive, ',' ORDER BY id) FROM scuttlebutt.peers WHERE id IN ($pull_id, $push_id)}),
	'false/true,true/false', 'scuttlebutt.peers keeps send and receive');
is(qb(q{SELECT scuttlebutt.wait_for_sync('ro_pull', '60s') AND scuttlebutt.wait_for_sync('ro_push', '60s')}), 't',
	'read-only peers: wait_for_sync on B');
ok(LibpqTest::poll($nb, q{SELECT scuttlebutt.get('ro_pull', 'a1') = '1'}, 30), 'send => false: B pulls A\'s key');
ok(LibpqTest::poll($na, q{SELECT scuttlebutt.get('ro_push', 'b1') = '1'}, 30), 'receive => false: B pushes its key');
# live, each followed by a write the peer does carry (a barrier)
qb(q{SELECT scuttlebutt.set('ro_pull', 'b2', '2')});
qa(q{SELECT scuttlebutt.set('ro_push', 'a2', '2')});
qa(q{SELECT scuttlebutt.set('ro_pull', 'a2', '2')});
qb(q{SELECT scuttlebutt.set('ro_push', 'b2', '2')});
ok(LibpqTest::poll($nb, q{SELECT scuttlebutt.get('ro_pull', 'a2') = '2'}, 30), 'send => false: live pull');
ok(LibpqTest::poll($na, q{SELECT scuttlebutt.get('ro_push', 'b2') = '2'}, 30), 'receive => false: live push');
usleep(500_000);
is(qa(q{SELECT string_agg(k, ',' ORDER BY k) FROM scuttlebutt.keys('ro_pull') k}), 'a1,a2',
	'send => false: none of B\'s keys reached A');
is(qb(q{SELECT string_agg(k, ',' ORDER BY k) FROM scuttlebutt.keys('ro_push') k}), 'b1,b2',
	'receive => false: none of A\'s keys reached B');
is(qa(q{SELECT scuttlebutt.clock('ro_pull') ? } . $lit->($id_b)), 'f', 'send => false: A\'s clock has no entry for B');
is(qb(q{SELECT scuttlebutt.clock('ro_push') ? } . $lit->($id_a)), 'f', 'receive => false: B\'s clock has no entry for A');
($ok, $row) = LibpqTest::wait_peer($nb, "peer_id = $pull_id", sub { $_[0]{received} == 2 }, 10);
is_deeply([ @$row{qw(transport state sent received)} ], [ 'libpq', 'live', 0, 2 ],
	'send => false: live, sent 0, received 2');
($ok, $row) = LibpqTest::wait_peer($nb, "peer_id = $push_id", sub { $_[0]{sent} == 2 }, 10);
is_deeply([ @$row{qw(transport state sent received)} ], [ 'libpq', 'live', 2, 0 ],
	'receive => false: live, sent 2, received 0');

# ---- a value both sides wrote before the peer ----
# The dialing side's later write supersedes the remote's.  As over a
# stream (each side sends the history over the other's clock as it was at
# the start), the remote's superseded update must still reach the dialing
# side's clock, whether the first pull or the first push gets there
# first: both must end with the same clock.  Sixteen models, to give the
# ordering of the first pull and push a chance to show.
my @race = map { "race$_" } 1 .. 16;
for my $m (@race)
{
	qa("SELECT scuttlebutt.create_model('$m', 'value'); SELECT scuttlebutt.set_value('$m', '\"a\"')");
	qb("SELECT scuttlebutt.create_model('$m', 'value')");
}
qb("SELECT scuttlebutt.set_value('$_', '\"b\"')") for @race;
LibpqTest::add_peer($nb, $_, $ci_a) for @race;
is(qb('SELECT ' . join(' AND ', map { "scuttlebutt.wait_for_sync('$_', '60s')" } @race)), 't',
	'values written on both sides: wait_for_sync');
my @lacking = grep { qb("SELECT scuttlebutt.clock('$_') ? " . $lit->($id_a)) ne 't' } @race;
is(join(',', @lacking), '', 'values written on both sides: B\'s clock has A\'s superseded write, for every model');
is(join(',', grep { qa("SELECT scuttlebutt.get_value('$_')") ne '"b"' } @race), '',
	'values written on both sides: the later write (B\'s) wins on A');
is(join(',', grep { !LibpqTest::wait_converged($_, [ $na, $nb ], 5) } @race), '',
	'values written on both sides: every model converged (history and clock)');

# ---- the password shows nowhere ----
unlike(LibpqTest::visible_text($nb), qr/\Q$secret\E/, 'B: neither peer_status nor connection_errors shows the password');
unlike(LibpqTest::visible_text($na), qr/\Q$secret\E/, 'A: neither peer_status nor connection_errors shows the password');
unlike(slurp_file($nb->logfile), qr/\Q$secret\E/, 'B\'s log does not show the password');
unlike(slurp_file($na->logfile), qr/\Q$secret\E/, 'A\'s log does not show the password');

$nb->stop;
$na->stop;
done_testing();
