# Durable sync on incoming stream connections: the database sends its
# "SYNC" only once it has committed everything the client sent before the
# client's own "SYNC" (test/interop/durable_sync.js, an unmodified
# reference Model); and two servers over the stream protocol, each of
# which would wait for the other, still sync (the dialer does not wait).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use StreamTest;
use Test::More;

ok(ScuttlebuttTest::node_available(), 'node.js and the npm packages are installed (npm ci in test/)')
  or BAIL_OUT('node.js or test/node_modules missing: run "npm ci" in test/');
$ENV{PG_TEST_TIMEOUT_DEFAULT} = $PostgreSQL::Test::Utils::timeout_default;

my $na = StreamTest::new_node('a');
ScuttlebuttTest::run_interop($na, 'durable_sync.js', StreamTest::port($na));

# A client that sends its "SYNC" and half-closes in one go (a reference
# stream with tail: false over TCP, its last bytes and FIN read at once):
# the worker's "SYNC", queued by taking those bytes, still goes out before
# the worker closes, as do its history and an update the client sent
StreamTest::q1($na, q{SELECT scuttlebutt.create_model('oneshot')});
StreamTest::q1($na, q{SELECT scuttlebutt.set('oneshot', 'db', '1')});
for my $with_update (0, 1)
{
	my $label = $with_update ? 'with an update' : 'with nothing to send';
	my $raw = StreamTest::Raw->new(StreamTest::port($na));
	$raw->send_line(qq({"id":"RAW$with_update","clock":{},"meta":"oneshot"}));
	my $header = $raw->read_line(30);
	like($header // '', qr/^\{"id"/, "one-shot client $label: the worker's header");
	my $out = ($with_update ? qq([["raw$with_update","x"],1000,"RAW$with_update"]\n) : '') . qq("SYNC"\n);
	$raw->write_raw($out);
	shutdown($raw->{sock}, 1);
	my @lines;
	while (defined(my $line = $raw->read_line(30))) { push @lines, $line; }
	is($lines[-1] // '', '"SYNC"', "one-shot client $label: the worker's \"SYNC\" comes before it closes");
	ok((grep { /\["db",1\]/ } @lines), "one-shot client $label: ... after the worker's history");
	ok($raw->{eof}, "one-shot client $label: then the worker closes");
}
is(StreamTest::q1($na, q{SELECT scuttlebutt.get('oneshot', 'raw1')}), '"x"', 'the one-shot client\'s update is in the table');

# B dials A over the stream protocol, both holding writes the other lacks
my $nb = StreamTest::new_node('b', listen => 0);
StreamTest::q1($_, q{SELECT scuttlebutt.create_model('both')}) for $na, $nb;
StreamTest::q1($na, q{SELECT scuttlebutt.set('both', 'a' || i, to_jsonb(i)) FROM generate_series(1, 500) i});
StreamTest::q1($nb, q{SELECT scuttlebutt.set('both', 'b' || i, to_jsonb(i)) FROM generate_series(1, 500) i});
StreamTest::q1($nb, "SELECT scuttlebutt.add_stream_peer('both', '127.0.0.1', " . StreamTest::port($na) . ")");
is(StreamTest::q1($nb, q{SELECT scuttlebutt.wait_for_sync('both', '30s')}), 't', 'a server dialing another syncs');
ok(StreamTest::wait_converged('both', [ $na, $nb ]), 'both servers hold the same');
is(StreamTest::q1($na, q{SELECT count(*) FROM scuttlebutt.keys('both')}), 1000, '... all 1,000 keys');

done_testing();
