# Read-only replication over the stream protocol.  A listens, B dials.
# Each case is its own model, with A's listener settings
# (scuttlebutt.listen_send / listen_receive, changed by a reload that also
# moves the listener to a new port, so that the log says when the worker
# has read them) and B's per-peer send / receive:
#
#   case   A send/recv  B send/recv  flows
#   ms     on  / off    off / on     A -> B   (the seed's master/slave)
#   sm     off / on     on  / off    B -> A   (the same, reversed)
#   bsend  on  / on     off / on     A -> B   (B's send => false alone)
#   brecv  on  / on     on  / off    B -> A   (B's receive => false alone)
#   arecv  on  / off    on  / on     A -> B   (A's listen_receive alone)
#   asend  off / on     on  / on     B -> A   (A's listen_send alone)
#
# Updates must flow one way only, both in the initial sync and live, and
# the clock header must still flow both ways: each side already holds one
# of the other's two earlier updates, and only the other one may be sent.
# A side that ignores what it receives still counts it (received), but
# stores nothing of it.  Connections keep the settings they were opened
# with when the listener's settings change.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamTest;
use Test::More;

my $na = StreamTest::new_node('a');
my $nb = StreamTest::new_node('b', listen => 0);
sub qa { StreamTest::q1($na, @_) }
sub qb { StreamTest::q1($nb, @_) }
my $id_a = qa('SELECT scuttlebutt.node_id()');
my $id_b = qb('SELECT scuttlebutt.node_id()');

my @cases = (
	# name, A listen_send, A listen_receive, B send, B receive
	[ 'ms',    1, 0, 0, 1 ],
	[ 'sm',    0, 1, 1, 0 ],
	[ 'bsend', 1, 1, 0, 1 ],
	[ 'brecv', 1, 1, 1, 0 ],
	[ 'arecv', 1, 0, 1, 1 ],
	[ 'asend', 0, 1, 1, 1 ],
);
my $bool = sub { $_[0] ? 'true' : 'false' };

# A's row and B's row of the connection of model $m
sub rows
{
	my ($m) = @_;
	return (StreamTest::peer($na, "direction = 'in' AND model = '$m'"),
		StreamTest::peer($nb, "direction = 'out' AND model = '$m'"));
}

# Polls until the connection of $m is quiet: every byte either side wrote
# has been read by the other
sub wait_quiet
{
	my ($m) = @_;
	return StreamTest::wait_quiet($na, "direction = 'in' AND model = '$m'",
		$nb, "direction = 'out' AND model = '$m'");
}

# a two-way connection as a barrier: once a write made after the live
# writes has crossed it both ways, each worker has pumped every connection
# since those writes
for my $n ($na, $nb)
{
	StreamTest::q1($n, q{SELECT scuttlebutt.create_model('witness', 'events')});
}
my $witness = qb("SELECT scuttlebutt.add_stream_peer('witness', '127.0.0.1', " . StreamTest::port($na) . ')');
is(qb(q{SELECT scuttlebutt.wait_for_sync('witness', '60s')}), 't', 'the witness connection is synced');

my %peer;
for my $c (@cases)
{
	my ($m, $as, $ar, $bs, $br) = @$c;
	# both write twice; each side is given the other's first update
	for my $n ([ $na, 'a' ], [ $nb, 'b' ])
	{
		StreamTest::q1($n->[0], qq{SELECT scuttlebutt.create_model('$m');
			SELECT scuttlebutt.set('$m', '$n->[1]_pre1', '1');
			SELECT scuttlebutt.set('$m', '$n->[1]_pre2', '2');});
	}
	my $a1 = qa(qq{SELECT h FROM scuttlebutt.history('$m') h WHERE h->0->>0 = 'a_pre1'});
	my $b1 = qb(qq{SELECT h FROM scuttlebutt.history('$m') h WHERE h->0->>0 = 'b_pre1'});
	qb(qq{SELECT scuttlebutt.apply_update('$m', '$a1')});
	qa(qq{SELECT scuttlebutt.apply_update('$m', '$b1')});

	# A's listener settings for this case, on a new port
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $off = -s $na->logfile;
	$na->append_conf('postgresql.conf',
		"scuttlebutt.listen_send = " . $bool->($as) . "\n"
		  . "scuttlebutt.listen_receive = " . $bool->($ar) . "\n"
		  . "scuttlebutt.port = $port\n");
	$na->reload;
	ok(StreamTest::find_log($na, qr/listening for stream peers on "127\.0\.0\.1" port $port/, $off),
		"$m: A listens on its new port");

	$peer{$m} = qb(qq{SELECT scuttlebutt.add_stream_peer('$m', '127.0.0.1', $port, send => }
		  . $bool->($bs) . ', receive => ' . $bool->($br) . ')');
	ok(StreamTest::poll($nb, qq{SELECT state IN ('syncing', 'live') FROM scuttlebutt.peer_status WHERE peer_id = $peer{$m}}, 30),
		"$m: B's connection is up (headers exchanged)");
}

# every connection: the initial sync, then live writes made after all the
# listener changes
sub check
{
	my ($phase, $c, $extra) = @_;
	my ($m, $as, $ar, $bs, $br) = @$c;
	my $a_to_b = $as && $br;
	my $b_to_a = $bs && $ar;
	ok(wait_quiet($m), "$phase $m: the connection settles");
	my ($ra, $rb) = rows($m);
	is($ra->{remote_id}, $id_b, "$phase $m: A has B's header");
	is($rb->{remote_id}, $id_a, "$phase $m: B has A's header");
	# every byte has been read: both sides have exchanged "SYNC" by now
	ok(StreamTest::poll($na, qq{SELECT state = 'live' FROM scuttlebutt.peer_status
			WHERE direction = 'in' AND model = '$m'}, 3),
		"$phase $m: A's side of the connection is live");
	ok(StreamTest::poll($nb, qq{SELECT state = 'live' FROM scuttlebutt.peer_status
			WHERE peer_id = $peer{$m}}, 3),
		"$phase $m: B's side of the connection is live");
	# A sends only what B's clock lacks: a_pre2 (not a_pre1), then live ones
	is($ra->{sent}, $as ? 1 + $extra : 0, "$phase $m: A sent " . ($as ? 'only what B lacked' : 'nothing'));
	is($rb->{received}, $ra->{sent}, "$phase $m: B counted what A sent");
	is($rb->{sent}, $bs ? 1 + $extra : 0, "$phase $m: B sent " . ($bs ? 'only what A lacked' : 'nothing'));
	is($ra->{received}, $rb->{sent}, "$phase $m: A counted what B sent");

	my @a_keys = ('a_pre2', $extra ? ('a_live') : ());
	my @b_keys = ('b_pre2', $extra ? ('b_live') : ());
	my $b_has = qb(qq{SELECT count(*) FROM scuttlebutt.keys('$m') k WHERE k IN (}
		  . join(',', map {"'$_'"} @a_keys) . ')');
	my $a_has = qa(qq{SELECT count(*) FROM scuttlebutt.keys('$m') k WHERE k IN (}
		  . join(',', map {"'$_'"} @b_keys) . ')');
	is($b_has, $a_to_b ? scalar @a_keys : 0, "$phase $m: A's updates " . ($a_to_b ? 'reached' : 'did not reach') . ' B');
	is($a_has, $b_to_a ? scalar @b_keys : 0, "$phase $m: B's updates " . ($b_to_a ? 'reached' : 'did not reach') . ' A');
	is(qb(qq{SELECT scuttlebutt.get('$m', 'a_pre1')}), '1', "$phase $m: B still has the update it was given");
	# what the receiving side holds of the other's source is what it got
	is(qb(qq{SELECT scuttlebutt.clock('$m') ->> '$id_a'}), qa(qq{SELECT scuttlebutt.clock('$m') ->> '$id_a'}),
		"$phase $m: B's clock of A is current") if $a_to_b;
	is(qa(qq{SELECT scuttlebutt.clock('$m') ->> '$id_b'}), qb(qq{SELECT scuttlebutt.clock('$m') ->> '$id_b'}),
		"$phase $m: A's clock of B is current") if $b_to_a;
}

check('initial', $_, 0) for @cases;

# live writes on every connection, long after A's listener settings moved on
for my $c (@cases)
{
	my $m = $c->[0];
	qa(qq{SELECT scuttlebutt.set('$m', 'a_live', '"a"')});
	qb(qq{SELECT scuttlebutt.set('$m', 'b_live', '"b"')});
}
qa(q{SELECT scuttlebutt.emit('witness', 'from_a', '1')});
qb(q{SELECT scuttlebutt.emit('witness', 'from_b', '1')});
ok(StreamTest::wait_converged('witness', [ $na, $nb ]), 'the witness connection still works');
check('live', $_, 1) for @cases;

is(qa(q{SELECT string_agg(reason, ',') FROM scuttlebutt.connection_errors}), '', 'A closed no connection');
is(qb(q{SELECT string_agg(reason, ',') FROM scuttlebutt.connection_errors}), '', 'B closed no connection');

$nb->stop;
$na->stop;
done_testing();
