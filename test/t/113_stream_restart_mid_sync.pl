# A restart in the middle of an initial sync loses nothing.  A holds a
# 200,000-key model; B and C each hold 1,000 keys of their own.
#
#  1. B dials A; while B's connection is still syncing (part of A's
#     history committed), B (the receiving side) restarts.
#  2. C dials A; while C's connection is still syncing, A (the sending
#     side) restarts.
#
# The receiving side is held mid-sync by a row lock (see hold_middle_row),
# so the restart never races the end of the sync.  While held, both sides'
# peer_status must show the connection syncing, the receiving side's
# received count current to within a batch.
#
# Afterwards all three must hold the same 202,000 keys: counts, a checksum
# of entries() and the clock equal; and a resumed sync must not start over
# (the peer's clock in its header says what it already has).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamTest;
use Test::More;
use Time::HiRes qw(time);

my $keys = 200_000;

my $na = StreamTest::new_node('a');
my $nb = StreamTest::new_node('b', listen => 0);
my $nc = StreamTest::new_node('c', listen => 0);
my $pa = StreamTest::port($na);
sub q1 { StreamTest::q1(@_) }

q1($_, q{SELECT scuttlebutt.create_model('big', 'model')}) for ($na, $nb, $nc);
my $t0 = time;
is(q1($na, qq{SELECT scuttlebutt.set_many('big',
		(SELECT jsonb_object_agg('k' || lpad(i::text, 6, '0'), jsonb_build_object('i', i, 'pad', 'xxxxxxxxxxxxxxxx'))
		 FROM generate_series(1, $keys) i))}), $keys, "A: $keys keys written with set_many");
note(sprintf('set_many took %.2fs', time - $t0));
for my $n ($nb, $nc)
{
	my $p = $n->name;
	is(q1($n, qq{SELECT scuttlebutt.set_many('big',
			(SELECT jsonb_object_agg('$p' || i, i) FROM generate_series(1, 1000) i))}), 1000,
		"$p: 1000 keys of its own");
}

# A checksum of everything a node holds for the model
sub state_of
{
	my ($n) = @_;
	return q1($n, q{SELECT count(*) || ' ' || md5(string_agg(key || '=' || value::text || '@' || ts || '/' || source,
		E'\n' ORDER BY key)) || ' ' || md5(scuttlebutt.clock('big')::text) FROM scuttlebutt.entries('big')});
}

# To restart "while peer_status shows 'syncing'" without racing a sync
# that takes well under a second, the receiving side is held in the middle
# of it: it already holds an (older) update of A's for the key in the
# middle of A's history, and a session keeps that row locked.  The batch
# that carries A's newer update of it waits for the lock: the batches
# before it are committed, the connection stays 'syncing'.
my $middle = sprintf('k%06d', $keys / 2);
my $id_a = q1($na, 'SELECT scuttlebutt.node_id()');

sub hold_middle_row
{
	my ($n) = @_;
	q1($n, qq{SELECT scuttlebutt.apply_update('big', '[["$middle","older"],1,"$id_a"]')});
	my $bg = $n->background_psql('postgres');
	$bg->query_safe(qq{BEGIN; SELECT 1 FROM scuttlebutt.updates WHERE key = '$middle' FOR UPDATE;});
	return $bg;
}

# Polls until the worker of $n waits for that lock while A's side of the
# connection is syncing (A sends history a page per loop, and publishes
# its status in between); returns the receiving side's peer_status row.
sub wait_mid_sync
{
	my ($n, $id) = @_;
	my $id_n = q1($n, 'SELECT scuttlebutt.node_id()');
	my $held = StreamTest::poll($n, q{SELECT EXISTS (SELECT FROM pg_stat_activity
				WHERE backend_type = 'scuttlebutt replication worker' AND wait_event_type = 'Lock')})
	  && StreamTest::poll($na, qq{SELECT EXISTS (SELECT FROM scuttlebutt.peer_status
				WHERE direction = 'in' AND remote_id = '$id_n' AND state = 'syncing' AND sent > 0)});
	ok($held, $n->name . ': its worker is held mid-sync, A\'s side of the connection is syncing');
	my $r = StreamTest::peer($n, "peer_id = $id");
	my $committed = q1($n, qq{SELECT count(*) FROM scuttlebutt.entries('big') WHERE source = '$id_a' AND ts > 1});
	note(sprintf('%s: state %s, %d received, %d of A\'s updates committed', $n->name,
		$r->{state} // '?', $r->{received} // 0, $committed));
	cmp_ok($committed, '>', 0, $n->name . ' had committed part of A\'s history');

	# the receiving side's own row must say so too, and be current to
	# within a batch (5,000 updates)
	is($r->{state}, 'syncing', $n->name . '\'s peer_status shows its connection syncing');
	cmp_ok($r->{received} // 0, '>=', $committed - 5000,
		$n->name . '\'s peer_status counts the updates it received (at least those committed)');
	return $r;
}

# What A sent on its side of $n's current connection
sub sent_by_a
{
	my ($n) = @_;
	my $id_n = q1($n, 'SELECT scuttlebutt.node_id()');
	return q1($na, qq{SELECT sent FROM scuttlebutt.peer_status WHERE direction = 'in' AND remote_id = '$id_n' AND state = 'live'});
}

# Polls until every node holds $want keys and the same state
sub wait_all
{
	my ($want, @nodes) = @_;
	for my $n (@nodes)
	{
		StreamTest::poll($n, "SELECT count(*) = $want FROM scuttlebutt.keys('big')", 120)
		  or diag($n->name . ' has ' . q1($n, q{SELECT count(*) FROM scuttlebutt.keys('big')}) . ' keys');
	}
	my %st = map { ($_->name => state_of($_)) } @nodes;
	return \%st;
}

# ---- 1. the receiving side restarts mid-sync ----
$t0 = time;
my $bg = hold_middle_row($nb);
my $peer_b = q1($nb, "SELECT scuttlebutt.add_stream_peer('big', '127.0.0.1', $pa)");
my $r = wait_mid_sync($nb, $peer_b);
$nb->restart;    # (fast shutdown: ends the session holding the lock)
$bg->quit;
is(q1($nb, qq{SELECT scuttlebutt.wait_for_sync('big', '120s')}), 't', 'B: wait_for_sync after the restart');
my $st = wait_all($keys + 2000 - 1000, $na, $nb);
is($st->{b}, $st->{a}, 'after B\'s restart: A and B hold the same entries and clock');
like($st->{b}, qr/^201000 /, 'B holds all 201,000 keys');
note(sprintf('scenario 1 took %.2fs', time - $t0));
$r = StreamTest::peer($nb, "peer_id = $peer_b");
is($r->{state}, 'live', 'B\'s connection is live');
cmp_ok(sent_by_a($nb), '<', $keys, 'B\'s resumed sync did not start over (A sent fewer than 200,000)');

# ---- 2. the sending side restarts mid-sync ----
$t0 = time;
$bg = hold_middle_row($nc);
my $peer_c = q1($nc, "SELECT scuttlebutt.add_stream_peer('big', '127.0.0.1', $pa)");
$r = wait_mid_sync($nc, $peer_c);
$na->restart;
$bg->quit;    # C goes on with what it had read, then sees A gone
is(q1($nc, qq{SELECT scuttlebutt.wait_for_sync('big', '120s')}), 't', 'C: wait_for_sync after A\'s restart');
is(q1($nb, qq{SELECT scuttlebutt.wait_for_sync('big', '120s')}), 't', 'B: wait_for_sync after A\'s restart');
$st = wait_all($keys + 2000, $na, $nb, $nc);
is($st->{a}, $st->{c}, 'after A\'s restart: A and C hold the same entries and clock');
is($st->{b}, $st->{c}, 'and B too (C\'s keys relayed by A)');
like($st->{c}, qr/^202000 /, 'C holds all 202,000 keys');
$r = StreamTest::peer($nc, "peer_id = $peer_c");
is($r->{state}, 'live', 'C\'s connection is live');
cmp_ok(sent_by_a($nc), '<', $keys, 'C\'s resumed sync did not start over (A sent fewer than 200,000)');
note(sprintf('scenario 2 took %.2fs', time - $t0));

# no update stored twice, none lost: per source, the updates held match
for my $n ($na, $nb, $nc)
{
	is(q1($n, q{SELECT string_agg(n::text, ',' ORDER BY n) FROM
			(SELECT count(*) n FROM scuttlebutt.entries('big') GROUP BY source) s}),
		'1000,1000,200000', $n->name . ': 200,000 + 1,000 + 1,000 entries per source');
}
for my $n ($na, $nb, $nc)
{
	# a server stopping mid-sync may close its socket in the middle of a line
	is(q1($n, q{SELECT string_agg(reason, ',') FROM scuttlebutt.connection_errors
				WHERE reason NOT IN ('closed by peer', 'could not connect', 'connection lost',
									 'closed in the middle of a line')}), '',
		$n->name . ': no connection closed for a protocol or database fault');
}

$_->stop for ($na, $nb, $nc);
done_testing();
