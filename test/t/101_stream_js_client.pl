# Live replication with unmodified JavaScript clients: reference
# scuttlebutt Model, ReliableEventEmitter and r-value instances connect to
# the replication worker's listener with createStream({meta: model}).
#
#   - test/interop/stream_client.js: initial sync and live updates both
#     ways for each kind, relay between two clients (no echo), and every
#     line the worker sends is exactly what JSON.stringify writes;
#   - test/interop/stream_readonly.js: the seed's master/slave example on
#     incoming connections (scuttlebutt.listen_send = off: a JavaScript
#     master, createStream({writable: false, sendClock: true}), feeds the
#     database; scuttlebutt.listen_receive = off: the database is the
#     master of a createStream({readable: false, sendClock: true}) slave).
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

# A node whose worker listens on 127.0.0.1 at a free port; returns
# ($node, $port) once the listener is open.
sub listening_node
{
	my ($name, $conf) = @_;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $node = ScuttlebuttTest::new_node($name,
		conf => "scuttlebutt.listen_addresses = '127.0.0.1'\n"
		  . "scuttlebutt.port = $port\n"
		  . ($conf // ''));
	ok( $node->poll_query_until(
			'postgres',
			"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'scuttlebutt replication worker'"
		),
		"$name: the replication worker runs");
	$node->wait_for_log(qr/scuttlebutt: listening for stream peers on "127\.0\.0\.1" port $port\b/);

	return ($node, $port);
}

sub seconds
{
	my ($hms) = @_;
	my ($h, $m, $s) = split /:/, $hms // '0:0:0';
	return $h * 3600 + $m * 60 + $s;
}

# WARNINGs the worker logged (a clean run has none)
sub worker_warnings
{
	my ($node) = @_;
	my $log = slurp_file($node->logfile);
	my @w = grep { /WARNING:.*scuttlebutt/ } split /\n/, $log;
	return @w;
}

my ($node, $port) = listening_node('client');
ScuttlebuttTest::run_interop($node, 'stream_client.js', $port);
my @w = worker_warnings($node);
is(scalar(@w), 0, 'client: the worker logged no WARNING') or diag(join("\n", @w));

# After a restart (the extension exists, nothing writes), clients must not
# be refused for long: the listener opens when the worker starts.  The
# delay is read from the log's own timestamps.
my $offset = -s $node->logfile;
$node->restart;
$node->wait_for_log(qr/scuttlebutt: listening for stream peers on "127\.0\.0\.1" port $port\b/, $offset);
my $log = substr(slurp_file($node->logfile), $offset);
my ($started) = $log =~ /^\S+ (\d\d:\d\d:\d\d\.\d+) .*scuttlebutt replication worker started/m;
my ($listening) = $log =~ /^\S+ (\d\d:\d\d:\d\d\.\d+) .*scuttlebutt: listening for stream peers/m;
my $delay = seconds($listening) - seconds($started);
$delay += 86400 if $delay < 0;
ok($delay < 3, 'after a restart, the listener opens as soon as the worker starts')
  or diag("worker started at $started, listening at $listening: ${delay}s later");
$node->stop;

# listen_send = off: incoming connections are sent nothing but our clock
my ($slave, $slave_port) = listening_node('listen_send_off', "scuttlebutt.listen_send = off\n");
ScuttlebuttTest::run_interop($slave, 'stream_readonly.js', 'listen_send_off', $slave_port);
@w = worker_warnings($slave);
is(scalar(@w), 0, 'listen_send_off: the worker logged no WARNING') or diag(join("\n", @w));
$slave->stop;

# listen_receive = off: updates from incoming connections are ignored
my ($master, $master_port) = listening_node('listen_receive_off', "scuttlebutt.listen_receive = off\n");
ScuttlebuttTest::run_interop($master, 'stream_readonly.js', 'listen_receive_off', $master_port);
@w = worker_warnings($master);
is(scalar(@w), 0, 'listen_receive_off: the worker logged no WARNING') or diag(join("\n", @w));
$master->stop;

done_testing();
