# A server dialing another over the stream protocol commits a sync's
# batches without waiting for the WAL flush while more of its input is
# waiting; the batch that finds the input drained flushes them all.  So
# once wait_for_sync() is true nothing of the sync is lost to a crash: B
# pulls 100,000 keys from A, is stopped at once (immediate: WAL still in
# its buffers would be lost), and after recovery holds A's updates and
# clock, byte for byte.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use StreamTest;
use Test::More;

my $na = StreamTest::new_node('a');
my $nb = StreamTest::new_node('b', listen => 0);
sub qa { StreamTest::q1($na, @_) }
sub qb { StreamTest::q1($nb, @_) }

qa(q{SELECT scuttlebutt.create_model('big')});
qb(q{SELECT scuttlebutt.create_model('big')});
qa(q{SELECT scuttlebutt.set_many('big', (SELECT jsonb_object_agg('k' || i, jsonb_build_object('v', i))
	FROM generate_series(1, 100000) i))});
qb("SELECT scuttlebutt.add_stream_peer('big', '127.0.0.1', " . StreamTest::port($na) . ", send => false)");
is(qb(q{SELECT scuttlebutt.wait_for_sync('big', '120s')}), 't', 'B syncs 100,000 keys from A');
$nb->stop('immediate');
$nb->start;
is(qb(q{SELECT count(*) FROM scuttlebutt.keys('big')}), 100000, 'after a crash B still holds all 100,000 keys');
is(StreamTest::digest($nb, 'big'), StreamTest::digest($na, 'big'), "... A's updates and clock, byte for byte");

done_testing();
