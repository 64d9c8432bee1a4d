# A large initial sync must not hold up the other connections of the
# receiving worker.  B is live with A on a small model; then B dials A for
# a 200,000-key model.  While that sync runs (A's side shows it syncing),
# a write at A on the small model must reach B before the big sync is
# over (the worker must not read one connection until it runs dry).
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
my $pa = StreamTest::port($na);
sub qa { StreamTest::q1($na, @_) }
sub qb { StreamTest::q1($nb, @_) }

for my $n ($na, $nb)
{
	StreamTest::q1($n, q{SELECT scuttlebutt.create_model('big'); SELECT scuttlebutt.create_model('small')});
}
is(qa(qq{SELECT scuttlebutt.set_many('big',
		(SELECT jsonb_object_agg('k' || lpad(i::text, 6, '0'), jsonb_build_object('i', i, 'pad', 'xxxxxxxxxxxxxxxx'))
		 FROM generate_series(1, $keys) i))}), $keys, "A: $keys keys");
my $id_b = qb('SELECT scuttlebutt.node_id()');

my $small = qb("SELECT scuttlebutt.add_stream_peer('small', '127.0.0.1', $pa)");
is(qb(q{SELECT scuttlebutt.wait_for_sync('small', '60s')}), 't', 'B is live with A on the small model');

my $big = qb("SELECT scuttlebutt.add_stream_peer('big', '127.0.0.1', $pa)");
ok(StreamTest::poll($na, qq{SELECT EXISTS (SELECT FROM scuttlebutt.peer_status
		WHERE direction = 'in' AND model = 'big' AND remote_id = '$id_b' AND state IN ('syncing', 'live') AND sent >= 10000)}),
	'the big sync is under way');
my $t0 = time;
qa(q{SELECT scuttlebutt.set('small', 'during_sync', '1')});
ok(StreamTest::poll($nb, q{SELECT scuttlebutt.get('small', 'during_sync') = '1'}, 30),
	'the write on the small model reaches B');
my $latency = time - $t0;
my $held = qb(q{SELECT count(*) FROM scuttlebutt.keys('big')});
my $row = StreamTest::peer($nb, "peer_id = $big");
note(sprintf('small write took %.3fs; B then held %d big keys; B\'s big row: %s, %d received',
	$latency, $held, $row->{state}, $row->{received}));
cmp_ok($held, '<', $keys, 'it arrived while the big sync was still running');

is(qb(q{SELECT scuttlebutt.wait_for_sync('big', '120s')}), 't', 'the big sync completes');
ok(StreamTest::poll($nb, "SELECT count(*) = $keys FROM scuttlebutt.keys('big')", 60), 'B holds every key');

$nb->stop;
$na->stop;
done_testing();
