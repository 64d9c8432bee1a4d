# Two servers replicate over the scuttlebutt stream protocol, both ways on
# one connection, for each kind of model: B dials A for "kv" (model), "ev"
# (events) and "val" (value); A dials B for "kv2".  Each side writes before
# the connection (initial sync both ways) and after it (live updates both
# ways); both must end with the same history, to_json and clock.
# peer_status must describe the connections exactly (direction, transport,
# state, synced_at, sent and received counts); remove_peer() must end a
# connection; the configured peers must come back after a restart of the
# dialing server, and catch up with what was written meanwhile.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamTest;
use Test::More;

my $na = StreamTest::new_node('a');
my $nb = StreamTest::new_node('b');
my ($pa, $pb) = (StreamTest::port($na), StreamTest::port($nb));
sub qa { StreamTest::q1($na, @_) }
sub qb { StreamTest::q1($nb, @_) }

my $id_a = qa('SELECT scuttlebutt.node_id()');
my $id_b = qb('SELECT scuttlebutt.node_id()');
isnt($id_a, $id_b, 'the two servers are different nodes');

StreamTest::two_server_fixture($na, $nb);

my %peer;
$peer{$_} = qb("SELECT scuttlebutt.add_stream_peer('$_', '127.0.0.1', $pa)") for qw(kv ev val);
my $kv2_peer = qa("SELECT scuttlebutt.add_stream_peer('kv2', '127.0.0.1', $pb)");
is(qb('SELECT count(*) FROM scuttlebutt.peers'), 3, 'B keeps its three peers in scuttlebutt.peers');

# ---- initial sync ----
for my $m (qw(kv ev val))
{
	is(qb("SELECT scuttlebutt.wait_for_sync('$m', '60s')"), 't', "wait_for_sync('$m') on the dialing side");
}
is(qa("SELECT scuttlebutt.wait_for_sync('kv2', '60s')"), 't', "wait_for_sync('kv2') on A (dialing)");
for my $m (qw(kv ev val kv2))
{
	ok(StreamTest::wait_converged($m, [ $na, $nb ]), "initial sync: $m converged");
}

StreamTest::check_two_server_fixture($na, $nb);

# ---- peer_status after the initial sync ----
# expected updates sent by B / received by B, per model
my %counts = (kv => [ 2, 3 ], ev => [ 1, 2 ], val => [ 1, 1 ]);
sub check_rows
{
	my ($phase) = @_;
	for my $m (qw(kv ev val))
	{
		my ($sent, $recv) = @{ $counts{$m} };
		ok(StreamTest::wait_quiet($nb, "peer_id = $peer{$m}", $na, "direction = 'in' AND model = '$m'"),
			"$phase: the $m connection is at rest");
		my $out = StreamTest::peer($nb, "model = '$m'");
		ok($out, "$phase: B has a peer_status row for $m") or next;
		is_deeply(
			[ @$out{qw(peer_id direction transport model remote_addr remote_id state rejected last_error)} ],
			[ $peer{$m}, 'out', 'stream', $m, "127.0.0.1:$pa", $id_a, 'live', 0, undef ],
			"$phase: B's row for $m: peer id, out, stream, address, A's id, live");
		ok(defined $out->{synced_at}, "$phase: B's row for $m has synced_at");
		ok(defined $out->{last_activity}, "$phase: B's row for $m has last_activity");
		is($out->{sent}, $sent, "$phase: B sent $sent updates of $m");
		is($out->{received}, $recv, "$phase: B received $recv updates of $m (no echo)");
		ok($out->{bytes_in} > 0 && $out->{bytes_out} > 0, "$phase: B's row for $m counts bytes");

		my $in = StreamTest::peer($na, "model = '$m'");
		ok($in, "$phase: A has a peer_status row for $m") or next;
		is_deeply(
			[ @$in{qw(peer_id direction transport model remote_id state rejected)} ],
			[ undef, 'in', 'stream', $m, $id_b, 'live', 0 ],
			"$phase: A's row for $m: no peer id, in, stream, B's id, live");
		like($in->{remote_addr}, qr/^127\.0\.0\.1:\d+$/, "$phase: A's row for $m names B's address");
		ok(defined $in->{synced_at}, "$phase: A's row for $m has synced_at");
		is($in->{sent}, $recv, "$phase: A sent what B received ($m)");
		is($in->{received}, $sent, "$phase: A received what B sent ($m)");
		is($in->{bytes_in}, $out->{bytes_out}, "$phase: A read every byte B wrote ($m)");
		is($in->{bytes_out}, $out->{bytes_in}, "$phase: B read every byte A wrote ($m)");
	}
}
check_rows('initial sync');
my $kv2_row = StreamTest::peer($na, "peer_id = $kv2_peer");
is_deeply([ @$kv2_row{qw(direction model remote_addr remote_id state sent received)} ],
	[ 'out', 'kv2', "127.0.0.1:$pb", $id_b, 'live', 1, 1 ],
	"A's outgoing row for kv2");
is(qa("SELECT count(*) FROM scuttlebutt.peer_status"), 4, 'A: four connections, no stray rows');
is(qb("SELECT count(*) FROM scuttlebutt.peer_status"), 4, 'B: four connections, no stray rows');

# ---- live updates, both ways, every kind ----
qa(q{SELECT scuttlebutt.set('kv', 'live_a', '"from a"')});
ok(StreamTest::poll($nb, q{SELECT scuttlebutt.get('kv', 'live_a') = '"from a"'}), 'live: set() at A reaches B');
qb(q{SELECT scuttlebutt.set('kv', 'live_b', '"from b"')});
ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('kv', 'live_b') = '"from b"'}), 'live: set() at B reaches A');
qa(q{SELECT scuttlebutt.delete('kv', 'a1')});
ok(StreamTest::poll($nb, q{SELECT NOT (scuttlebutt.to_json('kv') ? 'a1')}), 'live: delete() at A reaches B');
qa(q{SELECT scuttlebutt.emit('ev', 'live', '"from a"')});
ok(StreamTest::poll($nb, q{SELECT count(*) = 1 FROM scuttlebutt.events('ev') WHERE data = '"from a"'}),
	'live: emit() at A reaches B');
qb(q{SELECT scuttlebutt.emit('ev', 'live', '"from b"')});
ok(StreamTest::poll($na, q{SELECT count(*) = 1 FROM scuttlebutt.events('ev') WHERE data = '"from b"'}),
	'live: emit() at B reaches A');
qa(q{SELECT scuttlebutt.set_value('val', '{"by": "a"}')});
ok(StreamTest::poll($nb, q{SELECT scuttlebutt.get_value('val') = '{"by": "a"}'}), 'live: set_value() at A reaches B');
qb(q{SELECT scuttlebutt.set_value('val', '{"by": "b"}')});
ok(StreamTest::poll($na, q{SELECT scuttlebutt.get_value('val') = '{"by": "b"}'}), 'live: set_value() at B reaches A');
qb(q{SELECT scuttlebutt.set('kv2', 'live_b', 'true')});
ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('kv2', 'live_b') = 'true'}), 'live: kv2 from B (listener) to A (dialer)');
qa(q{SELECT scuttlebutt.apply_update('kv', '[["relayed",1],1795477184259,"SOMEONE"]')});
ok(StreamTest::poll($nb, q{SELECT scuttlebutt.get('kv', 'relayed') = '1'}),
	'live: apply_update() at A (a third source) reaches B');
for my $m (qw(kv ev val kv2))
{
	ok(StreamTest::wait_converged($m, [ $na, $nb ]), "live: $m converged");
}
is(qa(q{SELECT scuttlebutt.to_json('kv')}), qb(q{SELECT scuttlebutt.to_json('kv')}), 'live: kv same to_json');
is(qa(q{SELECT scuttlebutt.clock('kv')}), qb(q{SELECT scuttlebutt.clock('kv')}), 'live: kv same clock');
is(qa(q{SELECT scuttlebutt.clock('ev')}), qb(q{SELECT scuttlebutt.clock('ev')}), 'live: ev same clock');

%counts = (kv => [ 3, 6 ], ev => [ 2, 3 ], val => [ 2, 2 ]);
ok(StreamTest::poll($nb, q{SELECT bool_and(state = 'live') FROM scuttlebutt.peer_status}), 'live: every B row live');
check_rows('after live updates');

# ---- remove_peer ends the connection ----
my $off_a = -s $na->logfile;
qb("SELECT scuttlebutt.remove_peer($peer{kv})");
is(qb('SELECT count(*) FROM scuttlebutt.peers'), 2, 'remove_peer: the row is gone from scuttlebutt.peers');
ok(StreamTest::poll($nb, q{SELECT NOT EXISTS (SELECT FROM scuttlebutt.peer_status WHERE model = 'kv')}),
	'remove_peer: B no longer shows the kv connection');
ok(StreamTest::poll($na, q{SELECT NOT EXISTS (SELECT FROM scuttlebutt.peer_status WHERE model = 'kv')}),
	'remove_peer: A sees the kv connection closed');
ok(StreamTest::find_log($na, qr/closing connection from 127\.0\.0\.1:\d+: closed by peer/, $off_a),
	'remove_peer: A logs the close');
my ($rc, $out, $err) = $nb->psql('postgres', 'SELECT scuttlebutt.remove_peer(9999)');
like($err, qr/peer 9999 does not exist/, 'remove_peer of an unknown id is an error');
qa(q{SELECT scuttlebutt.set('kv', 'after_remove_a', '1')});
qb(q{SELECT scuttlebutt.set('kv', 'after_remove_b', '1')});
# barrier: a write on a model still connected, made after those
qa(q{SELECT scuttlebutt.emit('ev', 'barrier', '1')});
qb(q{SELECT scuttlebutt.emit('ev', 'barrier', '2')});
ok(StreamTest::wait_converged('ev', [ $na, $nb ]), 'remove_peer: ev still replicates');
is(qb(q{SELECT scuttlebutt.get('kv', 'after_remove_a')}), '', 'remove_peer: kv writes at A no longer reach B');
is(qa(q{SELECT scuttlebutt.get('kv', 'after_remove_b')}), '', 'remove_peer: kv writes at B no longer reach A');
is(qb(q{SELECT scuttlebutt.wait_for_sync('kv', '1s')}), 't', 'wait_for_sync of a model without connections is true');

# ---- the dialing server restarts: its peers come back ----
$nb->stop;
qa(q{SELECT scuttlebutt.emit('ev', 'while_b_down', '1')});
qa(q{SELECT scuttlebutt.set_value('val', '"set while B was down"')});
qa(q{SELECT scuttlebutt.set('kv2', 'while_b_down', '1')});
$nb->start;
ok(StreamTest::poll($nb,
		qq{SELECT array_agg(peer_id ORDER BY peer_id) = ARRAY[$peer{ev}, $peer{val}]
		   AND bool_and(state = 'live') FROM scuttlebutt.peer_status WHERE direction = 'out'}),
	'restart: B reconnects its two remaining peers, same ids, live');
StreamTest::check_restart_caught_up($na, $nb, 'listener', \&StreamTest::wait_converged);
my $row = StreamTest::peer($nb, "peer_id = $peer{ev}");
is($row->{sent}, 0, 'restart: B had nothing new to send for ev');
is($row->{received}, 1, 'restart: B received exactly the one event it lacked');
qb(q{SELECT scuttlebutt.emit('ev', 'after_restart', '"b"')});
ok(StreamTest::poll($na, q{SELECT count(*) = 1 FROM scuttlebutt.events('ev') WHERE event = 'after_restart'}),
	'restart: live again from B to A');
qa(q{SELECT scuttlebutt.set_value('val', '"after restart"')});
ok(StreamTest::poll($nb, q{SELECT scuttlebutt.get_value('val') = '"after restart"'}), 'restart: live again from A to B');

# B's restart closes A's connections and refuses A's redials; nothing else
is(qa(q{SELECT string_agg(reason, ',') FROM scuttlebutt.connection_errors
		WHERE reason NOT IN ('closed by peer', 'could not connect')}), '',
	'A closed no connection for a protocol or database fault');
is(qb(q{SELECT string_agg(reason, ',') FROM scuttlebutt.connection_errors
		WHERE reason NOT IN ('closed by peer', 'could not connect')}), '',
	'B closed no connection for a protocol or database fault');

$nb->stop;
$na->stop;
done_testing();
