# Streams that name no model: scuttlebutt.default_model, and the
# reference's createWriteStream() without sendClock, which sends nothing
# until it has the other side's header.
#
# Without a default model:
#  - a header without meta (raw TCP): one JSON line {"error": ...} naming
#    the reason and the setting, then the close; "no model named" counted;
#  - an unmodified reference createStream() without meta, over TCP and
#    over WebSocket: its stream emits "error" (a header without a clock)
#    after that line; over WebSocket the close frame (1008) says why;
#  - a client that sends nothing is closed at handshake_timeout.
# With default_model = 'dm' (a reload):
#  - createStream() without meta over TCP and WebSocket: syncs both ways
#    and live, on dm;
#  - createWriteStream({meta}) without sendClock over TCP and WebSocket:
#    after default_model_wait the worker sends its header, the history and
#    "SYNC" (the client emits "sync"), then live SQL edits;
#  - a header naming another model still gets that model;
#  - a header that comes after the silent start naming another model is
#    refused ("invalid header"); one naming dm is taken;
#  - default_model_wait = 0: a silent client waits for its header again.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use StreamTest;
use Test::More;

my $node = StreamTest::new_node('dm', conf => "scuttlebutt.handshake_timeout = 3s\n");
my $port = StreamTest::port($node);
sub q1 { StreamTest::q1($node, @_) }
my $pid = StreamTest::worker_pid($node);
q1("SELECT scuttlebutt.create_model('$_')") for qw(dm other);
$ENV{PG_TEST_TIMEOUT_DEFAULT} = $PostgreSQL::Test::Utils::timeout_default;
sub js { ScuttlebuttTest::run_interop($node, 'stream_websocket.js', @_) }
my ($tcp, $ws) = ("tcp://127.0.0.1:$port", "ws://127.0.0.1:$port/");


# ---- no default model ----

{
	my $before = StreamTest::error_count($node, 'no model named');
	my $raw = StreamTest::Raw->new($port);
	$raw->send_line('{"id":"NOMETA","clock":{}}');
	my $line = $raw->read_line(10);
	is($line, '{"error":"no model named: name one in the header\'s meta, or set scuttlebutt.default_model"}',
		'a header without meta: one JSON error line');
	ok($raw->wait_closed(10), 'then the connection is closed');
	ok(StreamTest::poll($node, "SELECT count > $before FROM scuttlebutt.connection_errors WHERE reason = 'no model named'"),
		'counted as "no model named"');
	ok(StreamTest::find_log($node, qr/DETAIL:  The header's meta names no model .*scuttlebutt\.default_model is empty/),
		'the log names the setting');
}
js($tcp, 'dm', 'nomodel', '{"meta":null}');
js($ws, 'dm', 'nomodel', '{"meta":null}');
{
	my $before = StreamTest::error_count($node, 'handshake timeout');
	my $raw = StreamTest::Raw->new($port);
	ok($raw->wait_closed(20), 'a silent client without a default model is closed');
	ok(StreamTest::poll($node, "SELECT count > $before FROM scuttlebutt.connection_errors WHERE reason = 'handshake timeout'"),
		'... at handshake_timeout');
}

# ---- default_model ----

# (a WebSocket client's request must arrive within the wait, or it is
# taken for a silent line client and sent a header: with 300 ms, once in
# CI, with two suites running at once, the request came later and the
# client read the header where it expected HTTP)
$node->append_conf('postgresql.conf', "scuttlebutt.default_model = 'dm'\nscuttlebutt.default_model_wait = 2s\n");
ok(ScuttlebuttTest::reload_worker($node), 'default_model: the worker took the reload');

js($tcp, 'dm', 'accept', '{"meta":null}');
js($ws, 'dm', 'accept', '{"meta":null}');
js($tcp, 'dm', 'accept', '{"meta":"dm","writeStream":true}');
js($ws, 'dm', 'accept', '{"meta":{"model":"dm"},"writeStream":true}');

{
	my $raw = StreamTest::Raw->new($port);
	my ($header) = $raw->handshake('other');
	like($header // '', qr/^\{"id":/, 'a header naming another model gets that model');
	ok(StreamTest::poll($node, "SELECT count(*) = 1 FROM scuttlebutt.peer_status WHERE direction = 'in' AND model = 'other'"),
		'peer_status shows it on that model');
	$raw->close_fin;
}
{
	my $before = StreamTest::error_count($node, 'invalid header');
	my $raw = StreamTest::Raw->new($port);
	my $header = $raw->read_line(10);
	like($header // '', qr/^\{"id":/, 'a silent client gets the default model\'s header');
	$raw->send_line('{"id":"LATE","clock":{},"meta":"other"}');
	ok($raw->wait_closed(10), 'a later header naming another model: closed');
	ok(StreamTest::poll($node, "SELECT count > $before FROM scuttlebutt.connection_errors WHERE reason = 'invalid header'"),
		'counted as "invalid header"');
	ok(StreamTest::find_log($node, qr/DETAIL:  The header names model "other", but came after scuttlebutt\.default_model_wait \(2000 ms\)/),
		'the log says it came after default_model_wait');
}
{
	q1("SELECT scuttlebutt.set('dm', 'late_ok', '1')");
	my $raw = StreamTest::Raw->new($port);
	my $header = $raw->read_line(10);
	like($header // '', qr/^\{"id":/, 'a silent client gets the header');
	$raw->send_line('{"id":"LATE2","clock":{},"meta":"dm"}');
	$raw->send_line('"SYNC"');
	$raw->send_line('[["late_k","v"],1700000000000,"LATE2"]');
	ok(StreamTest::poll($node, "SELECT scuttlebutt.get('dm', 'late_k')::text = '\"v\"'"),
		'a later header naming the default model is taken, and its updates');
	$raw->close_fin;
}

$node->append_conf('postgresql.conf', "scuttlebutt.default_model_wait = 0\n");
ok(ScuttlebuttTest::reload_worker($node), 'default_model_wait = 0: the worker took the reload');
{
	my $before = StreamTest::error_count($node, 'handshake timeout');
	my $raw = StreamTest::Raw->new($port);
	ok(!defined $raw->read_line(1), 'default_model_wait = 0: a silent client is sent nothing');
	ok($raw->wait_closed(20), '... and is closed');
	ok(StreamTest::poll($node, "SELECT count > $before FROM scuttlebutt.connection_errors WHERE reason = 'handshake timeout'"),
		'... at handshake_timeout');
}

is(StreamTest::worker_pid($node), $pid, 'the worker stayed up');
$node->stop;
done_testing();
