# Live replication with unmodified JavaScript servers: the replication
# worker dials reference scuttlebutt Model, ReliableEventEmitter and r-value
# servers (net.createServer(s => s.pipe(sb.createStream()).pipe(s))) added
# with add_stream_peer().
#
#   - test/interop/stream_server.js: initial sync and live updates both
#     ways for each kind, remove_peer(), relay between two servers the
#     worker dials (no echo), a client of the listener and a dialed server
#     on one model, and every line the worker sends is exactly what
#     JSON.stringify writes;
#   - test/interop/stream_readonly.js dial: the seed's master/slave example
#     on outgoing connections (add_stream_peer(..., send => false) against
#     a createStream({writable: false, sendClock: true}) master;
#     receive => false against a createStream({readable: false,
#     sendClock: true}) slave; and each against a plain createStream());
#   - test/interop/stream_restart.js: a configured peer survives a restart
#     of the server, which dials the reference server again at once.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use Test::More;

ok(ScuttlebuttTest::node_available(), 'node.js and the npm packages are installed (npm ci in test/)')
  or BAIL_OUT('node.js or test/node_modules missing: run "npm ci" in test/');

# node.js waits as long as the TAP framework's own waits
$ENV{PG_TEST_TIMEOUT_DEFAULT} = $PostgreSQL::Test::Utils::timeout_default;

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $node = ScuttlebuttTest::new_node('dialer',
	conf => "scuttlebutt.listen_addresses = '127.0.0.1'\n"
	  . "scuttlebutt.port = $port\n"
	  . "scuttlebutt.reconnect_min = 50ms\n"
	  . "scuttlebutt.reconnect_max = 1s\n");
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'scuttlebutt replication worker'"
	),
	'the replication worker runs');
$node->wait_for_log(qr/scuttlebutt: listening for stream peers on "127\.0\.0\.1" port $port\b/);

# ports for the JavaScript servers
my @js_ports = map { PostgreSQL::Test::Cluster::get_free_port() } 1 .. 2;

ScuttlebuttTest::run_interop($node, 'stream_server.js', $port, @js_ports);
ScuttlebuttTest::run_interop($node, 'stream_readonly.js', 'dial', $js_ports[0]);
# (restarts the server with pg_ctl while a reference server stays up)
ScuttlebuttTest::run_interop($node, 'stream_restart.js', $js_ports[1], $node->data_dir, $node->logfile);

is($node->safe_psql('postgres', 'SELECT count(*) FROM scuttlebutt.peers'),
	'0', 'every peer the scripts added was removed');
my @w = grep { /WARNING:.*scuttlebutt/ } split /\n/, slurp_file($node->logfile);
is(scalar(@w), 0, 'the worker logged no WARNING') or diag(join("\n", @w));

$node->stop;
done_testing();
