# A chain of three servers over the stream protocol: A dials B, C dials B.
# A and C are not connected: what one writes reaches the other only if B
# relays it.  Initial sync and live updates must reach the far end both
# ways, for a key/value model and an events log, and B must not echo an
# update back to the connection it came from (the sent/received counts are
# exact).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamTest;
use Test::More;

my $na = StreamTest::new_node('a', listen => 0);
my $nb = StreamTest::new_node('b');
my $nc = StreamTest::new_node('c', listen => 0);
my @all = ($na, $nb, $nc);
my $pb = StreamTest::port($nb);
sub q1 { StreamTest::q1(@_) }

for my $n (@all)
{
	q1($n, q{
		SELECT scuttlebutt.create_model('chain', 'model');
		SELECT scuttlebutt.create_model('log', 'events');
	});
}
my %id = map { ($_->name => q1($_, 'SELECT scuttlebutt.node_id()')) } @all;

# before connecting: A 2 keys and 1 event, B 1 key, C 3 keys and 2 events
q1($na, q{SELECT scuttlebutt.set('chain', 'a' || i, to_jsonb(i)) FROM generate_series(1, 2) i;
		  SELECT scuttlebutt.emit('log', 'from-a', '1')});
q1($nb, q{SELECT scuttlebutt.set('chain', 'b1', '"b"')});
q1($nc, q{SELECT scuttlebutt.set('chain', 'c' || i, to_jsonb(i)) FROM generate_series(1, 3) i;
		  SELECT scuttlebutt.emit('log', 'from-c', to_jsonb(i)) FROM generate_series(1, 2) i});

my %peer;
for my $n ($na, $nc)
{
	for my $m (qw(chain log))
	{
		$peer{ $n->name }{$m} = q1($n, "SELECT scuttlebutt.add_stream_peer('$m', '127.0.0.1', $pb)");
	}
}
for my $n ($na, $nc)
{
	is(q1($n, q{SELECT scuttlebutt.wait_for_sync('chain', '60s') AND scuttlebutt.wait_for_sync('log', '60s')}),
		't', 'wait_for_sync on ' . $n->name);
}
ok(StreamTest::wait_converged('chain', \@all), 'initial sync: chain converged on A, B and C');
ok(StreamTest::wait_converged('log', \@all), 'initial sync: log converged on A, B and C');
is(q1($na, q{SELECT scuttlebutt.to_json('chain')}), '{"a1": 1, "a2": 2, "b1": "b", "c1": 1, "c2": 2, "c3": 3}',
	'A holds C\'s keys (relayed by B)');
is(q1($nc, q{SELECT scuttlebutt.to_json('chain')}), q1($na, q{SELECT scuttlebutt.to_json('chain')}),
	'C holds the same to_json');
is(q1($nc, q{SELECT scuttlebutt.clock('chain')}), q1($na, q{SELECT scuttlebutt.clock('chain')}),
	'C and A have the same clock');
is(q1($na, q{SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(scuttlebutt.clock('chain')) k}),
	join(',', sort values %id), 'the clock names all three nodes');
is(q1($na, q{SELECT string_agg(event, ',' ORDER BY ts) FROM scuttlebutt.events('log')}),
	'from-a,from-c,from-c', 'A holds C\'s events');

# Exact counts: nothing is echoed back.  For the ends: [sent, received]
sub check_counts
{
	my ($phase, %want) = @_;
	for my $end (qw(a c))
	{
		my $n = $end eq 'a' ? $na : $nc;
		for my $m (qw(chain log))
		{
			ok(StreamTest::wait_quiet($n, "peer_id = $peer{$end}{$m}",
					$nb, "direction = 'in' AND model = '$m' AND remote_id = '$id{$end}'"),
				"$phase: " . uc($end) . "'s $m connection is at rest");
			my $r = StreamTest::peer($n, "peer_id = $peer{$end}{$m}");
			is_deeply([ @$r{qw(state remote_id sent received)} ],
				[ 'live', $id{b}, @{ $want{$end}{$m} } ],
				"$phase: " . uc($end) . "'s $m connection is live, sent/received @{ $want{$end}{$m} }");
			my $in = StreamTest::peer($nb, "direction = 'in' AND model = '$m' AND remote_id = '$id{$end}'");
			is_deeply([ @$in{qw(state sent received)} ], [ 'live', reverse @{ $want{$end}{$m} } ],
				"$phase: B's side of " . uc($end) . "'s $m connection mirrors it");
		}
	}
}
check_counts('initial sync',
	a => { chain => [ 2, 4 ], log => [ 1, 2 ] },
	c => { chain => [ 3, 3 ], log => [ 2, 1 ] });
is(q1($nb, q{SELECT count(*) FROM scuttlebutt.peer_status}), 4, 'B holds four incoming connections');

# ---- live: each end reaches the other through B ----
q1($na, q{SELECT scuttlebutt.set('chain', 'live_a', '"A"')});
ok(StreamTest::poll($nc, q{SELECT scuttlebutt.get('chain', 'live_a') = '"A"'}), 'live: a write at A reaches C');
q1($nc, q{SELECT scuttlebutt.set('chain', 'live_c', '"C"')});
ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('chain', 'live_c') = '"C"'}), 'live: a write at C reaches A');
q1($na, q{SELECT scuttlebutt.emit('log', 'live-a', '"A"')});
ok(StreamTest::poll($nc, q{SELECT count(*) = 1 FROM scuttlebutt.events('log') WHERE event = 'live-a'}),
	'live: an event at A reaches C');
q1($nc, q{SELECT scuttlebutt.emit('log', 'live-c', '"C"')});
ok(StreamTest::poll($na, q{SELECT count(*) = 1 FROM scuttlebutt.events('log') WHERE event = 'live-c'}),
	'live: an event at C reaches A');
q1($nb, q{SELECT scuttlebutt.set('chain', 'live_b', '"B"')});
ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('chain', 'live_b') = '"B"'}), 'live: a write at B reaches A');
ok(StreamTest::poll($nc, q{SELECT scuttlebutt.get('chain', 'live_b') = '"B"'}), 'live: a write at B reaches C');
ok(StreamTest::wait_converged('chain', \@all), 'live: chain converged');
ok(StreamTest::wait_converged('log', \@all), 'live: log converged');
check_counts('live',
	a => { chain => [ 3, 6 ], log => [ 2, 3 ] },
	c => { chain => [ 4, 5 ], log => [ 3, 2 ] });

# ---- the same key written at both ends at once: every node agrees ----
q1($na, q{SELECT scuttlebutt.set('chain', 'contested', '"A"')});
q1($nc, q{SELECT scuttlebutt.set('chain', 'contested', '"C"')});
q1($na, q{SELECT scuttlebutt.set('chain', 'contested', '"A again"')});
ok(StreamTest::wait_converged('chain', \@all), 'contested key: converged');
my $v = q1($na, q{SELECT scuttlebutt.get('chain', 'contested')});
is(q1($nc, q{SELECT scuttlebutt.get('chain', 'contested')}), $v, 'contested key: same value at A and C');
is($v, '"A again"', 'contested key: the latest write wins');
is(q1($nb, q{SELECT count(*) FROM scuttlebutt.keys('chain')}), 10, 'B holds the 10 keys');

# ---- the middle goes away and comes back: the chain heals ----
$nb->restart;
q1($na, q{SELECT scuttlebutt.set('chain', 'after_b_restart', '"A"')});
ok(StreamTest::poll($nc, q{SELECT scuttlebutt.get('chain', 'after_b_restart') = '"A"'}),
	'after B restarts, a write at A reaches C again');
ok(StreamTest::wait_converged('chain', \@all), 'after B restarts: converged');

for my $n (@all)
{
	is(q1($n, q{SELECT string_agg(reason, ',') FROM scuttlebutt.connection_errors
				WHERE reason NOT IN ('closed by peer', 'could not connect')}), '',
		$n->name . ': no connection closed for a protocol or database fault');
}

$_->stop for @all;
done_testing();
