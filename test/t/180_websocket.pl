# WebSocket on the stream port (plain ws; wss and tokens are in 181).
#
#  - an unmodified reference Model over the npm websocket-stream package:
#    initial sync both ways, live edits both ways, a clean close (1000);
#    peer_status shows it;
#  - the handshake, frame by frame with a raw client: RFC 6455's example
#    key gets its known Accept; the subprotocol "scuttlebutt" is answered
#    when offered; a header split over a fragmented message, two lines in
#    one frame, binary and text frames; a ping is answered with its
#    payload; our close is answered and the session ends "closed by peer";
#  - bad requests: not an upgrade (426), a wrong version (426), no key
#    (400), a request head past max_line_bytes (431): each closes with a
#    reason counted in connection_errors;
#  - bad frames: unmasked, reserved bits, an unknown opcode, a continuation
#    outside a message, a fragmented or long control frame, a length past
#    any line, a 64-bit length with its top bit: each gets a close frame
#    with its code (1002, 1009), the session's reason says why, and the
#    worker stays up (same pid) and serves the next client;
#  - origins: a browser's Origin is refused (403) with the default empty
#    scuttlebutt.websocket_origins; listed after a reload, that origin
#    gets in and another does not; "*" lets any in;
#  - the TCP line protocol on the same port is unchanged.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use StreamTest;
use WsTest;
use Test::More;

my $node = StreamTest::new_node('ws',
	conf => "scuttlebutt.handshake_timeout = 5s\n"
	  . "scuttlebutt.max_line_bytes = 64kB\n"
	  . "scuttlebutt.max_header_bytes = 128kB\n");
my $port = StreamTest::port($node);
sub q1 { StreamTest::q1($node, @_) }
my $owner = q1('SELECT current_user');
my $pid = StreamTest::worker_pid($node);

q1("SELECT scuttlebutt.create_model('$_')") for qw(m1 m2 m3 m4 m5 m6);

# ---- an unmodified client over ws ----

ScuttlebuttTest::run_interop($node, 'stream_websocket.js', "ws://127.0.0.1:$port/", 'm1', 'accept',
	qq({"role":"$owner","method":"trust","tls":false,"protocols":["scuttlebutt"]}));
# one-shot clients: tail: false, and a stream ended at "sync"
q1("SELECT scuttlebutt.create_model('$_')") for qw(oneshot_ws oneshot_tcp syncend_ws syncend_tcp);
ScuttlebuttTest::run_interop($node, 'stream_websocket.js', "ws://127.0.0.1:$port/", 'oneshot_ws', 'oneshot', '{}');
ScuttlebuttTest::run_interop($node, 'stream_websocket.js', "tcp://127.0.0.1:$port", 'oneshot_tcp', 'oneshot', '{}');
ScuttlebuttTest::run_interop($node, 'stream_websocket.js', "ws://127.0.0.1:$port/", 'syncend_ws', 'syncend', '{}');
ScuttlebuttTest::run_interop($node, 'stream_websocket.js', "tcp://127.0.0.1:$port", 'syncend_tcp', 'syncend', '{}');

# ---- the handshake and frames, raw ----

{
	my $ws = WsTest->new($port);
	my ($status, $h) = $ws->upgrade('Sec-WebSocket-Protocol' => 'chat, scuttlebutt');
	is($status, 101, 'raw: the upgrade is answered 101');
	is($h->{'sec-websocket-accept'}, $WsTest::ACCEPT, "raw: Sec-WebSocket-Accept is RFC 6455's for its example key");
	is($h->{'sec-websocket-protocol'}, 'scuttlebutt', 'raw: the offered subprotocol "scuttlebutt" is answered');

	# a ping first: answered with its payload
	$ws->send_frame(9, 'are you there');
	my ($fin, $op, $payload) = $ws->read_frame(10);
	is("$op/$payload", '10/are you there', 'raw: a ping is answered with a pong carrying its payload');

	# the header split over a fragmented text message (with a ping between
	# fragments), then "SYNC" and an update in one binary frame
	q1("SELECT scuttlebutt.set('m2', 'k_db', '1')");
	my $hdr = '{"id":"RAWWS","clock":{},"meta":"m2"}';
	$ws->send_frame(1, substr($hdr, 0, 10), fin => 0);
	$ws->send_frame(9, 'mid');
	$ws->send_frame(0, substr($hdr, 10, 10), fin => 0);
	$ws->send_frame(0, substr($hdr, 20) . "\n", fin => 1);
	($fin, $op, $payload) = $ws->read_frame(10);
	is("$op/$payload", '10/mid', 'raw: a ping between fragments is answered');
	my $line = $ws->read_line(10);
	like($line, qr/^\{"id":"[^"]+","clock":\{/, 'raw: the worker sends its header after the fragmented one');
	# our (empty) history's "SYNC" and an update: the worker's "SYNC" waits
	# for ours (durable sync)
	$ws->send_frame(2, qq("SYNC"\n[["k_ws","ws"],1700000000000,"RAWWS"]\n));
	my @got;
	while (defined(my $l = $ws->read_line(10)))
	{
		push @got, $l;
		last if $l eq '"SYNC"';
	}
	is($got[-1], '"SYNC"', 'raw: the history ends with "SYNC"');
	is($ws->data_opcode, 1, 'raw: a client whose first message was text is answered in text frames');
	ok((grep { /"k_db"/ } @got), 'raw: the history holds the database\'s key');
	ok(StreamTest::poll($node, "SELECT scuttlebutt.get('m2', 'k_ws')::text = '\"ws\"'"),
		'raw: an update in a binary frame beside "SYNC" reaches the table');
	# a line split over two messages
	$ws->send_frame(1, '[["k_split","a"],1700000000001,');
	$ws->send_frame(1, qq("RAWWS"]\n));
	ok(StreamTest::poll($node, "SELECT scuttlebutt.get('m2', 'k_split')::text = '\"a\"'"),
		'raw: a line split over two messages reaches the table');
	my $offset = -s $node->logfile;
	$ws->send_frame(8, pack('n', 1000) . 'bye');
	my ($code) = $ws->read_close(10);
	is($code, 1000, 'raw: our close is answered with 1000');
	ok($ws->wait_closed(10), 'raw: the worker closes the connection after the close handshake');
	ok(StreamTest::find_log($node, qr/closing connection from 127\.0\.0\.1:\d+: closed by peer/, $offset),
		'raw: the session ends "closed by peer"');
}

{
	my $ws = WsTest->new($port);
	my ($status) = $ws->upgrade;
	$ws->send_frame(2, qq({"id":"RAWBIN","clock":{},"meta":"m2"}\n));
	my $line = $ws->read_line(10);
	like($line // '', qr/^\{"id":/, 'raw: a header in a binary frame is answered');
	is($ws->data_opcode, 2, 'raw: ... in binary frames');
	$ws->send_frame(8, '');
	my ($code) = $ws->read_close(10);
	is($code, 1000, 'raw: a close without a code is answered with 1000');
}

# ---- bad requests ----

sub bad_request
{
	my ($label, $want_status, $reason, %h) = @_;
	my $before = StreamTest::error_count($node, $reason);
	my $ws = WsTest->new($port);
	my ($status, $headers, $body) = $ws->upgrade(%h);
	is($status, $want_status, "$label: answered $want_status");
	ok($ws->wait_closed(10), "$label: then closed");
	ok(StreamTest::poll($node, "SELECT count > $before FROM scuttlebutt.connection_errors WHERE reason = '$reason'"),
		"$label: counted as \"$reason\"");
	return ($headers, $body);
}

my ($hh, $body) = bad_request('a GET that is no upgrade', 426, 'websocket handshake failed',
	'Upgrade' => undef, 'Connection' => undef);
like($body, qr/Only WebSocket upgrades/, 'a GET that is no upgrade: the body says why');
($hh) = bad_request('version 8', 426, 'websocket handshake failed', 'Sec-WebSocket-Version' => '8');
is($hh->{'sec-websocket-version'}, '13', 'version 8: the answer names version 13');
bad_request('no key', 400, 'websocket handshake failed', 'Sec-WebSocket-Key' => undef);
bad_request('a key of 15 bytes', 400, 'websocket handshake failed', 'Sec-WebSocket-Key' => 'YWJjZGVmZ2hpamtsbW5v');
bad_request('a request head past max_line_bytes', 431, 'line too long', 'X-Filler' => 'x' x 70000);

# ---- bad frames ----

sub bad_frame
{
	my ($label, $want_code, $reason, $detail_re, @frames) = @_;
	my $before = StreamTest::error_count($node, $reason);
	my $offset = -s $node->logfile;
	my $ws = WsTest->new($port);
	my ($status) = $ws->upgrade;
	is($status, 101, "$label: upgraded");
	$ws->send_frame(@$_) for @frames;
	my ($code) = $ws->read_close(10);
	is($code, $want_code, "$label: a close frame with code $want_code");
	ok($ws->wait_closed(10), "$label: the connection is closed");
	ok(StreamTest::poll($node, "SELECT count > $before FROM scuttlebutt.connection_errors WHERE reason = '$reason'"),
		"$label: counted as \"$reason\"");
	ok(StreamTest::find_log($node, qr/closing connection from 127\.0\.0\.1:\d+: \Q$reason\E\n.*DETAIL:  .*$detail_re/, $offset),
		"$label: the log says why");
}

bad_frame('an unmasked frame', 1002, 'websocket protocol error', qr/not masked/,
	[ 1, "{}\n", mask => 0 ]);
bad_frame('reserved bits', 1002, 'websocket protocol error', qr/reserved bits/,
	[ 1, "{}\n", rsv => 0x40 ]);
bad_frame('opcode 3', 1002, 'websocket protocol error', qr/unknown opcode 3/,
	[ 3, "x" ]);
bad_frame('a continuation outside a message', 1002, 'websocket protocol error', qr/continuation frame came outside/,
	[ 0, "x" ]);
bad_frame('a new message inside a fragmented one', 1002, 'websocket protocol error', qr/new message began inside/,
	[ 1, "x", fin => 0 ], [ 1, "y" ]);
bad_frame('a fragmented ping', 1002, 'websocket protocol error', qr/control frame is fragmented/,
	[ 9, "x", fin => 0 ]);
bad_frame('a ping of 126 bytes', 1002, 'websocket protocol error', qr/control frame is longer than 125/,
	[ 9, 'p' x 126 ]);
bad_frame('a frame past any line', 1009, 'line too long',
	qr/A WebSocket frame of 1099511627776 bytes is longer than a line may be \(scuttlebutt\.max_header_bytes, 131072\)/,
	[ 2, '', length => 2**40 ]);
bad_frame('a frame just past max_header_bytes', 1009, 'line too long', qr/frame of 131074 bytes/,
	[ 2, '', length => 131074 ]);
bad_frame('a close frame with code 1005', 1002, 'websocket protocol error', qr/invalid code 1005/,
	[ 8, pack('n', 1005) ]);
bad_frame('a line past max_line_bytes after the header, over frames', 1009, 'line too long',
	qr/More than scuttlebutt\.max_line_bytes/,
	[ 1, qq({"id":"BIG","clock":{},"meta":"m3"}\n) ], map { [ 1, 'x' x 30000 ] } 1 .. 3);
{
	# a top bit in a 64-bit length: raw bytes (no such length can be built)
	my $ws = WsTest->new($port);
	my ($status) = $ws->upgrade;
	$ws->raw->write_raw(chr(0x82) . chr(0x80 | 127) . pack('NN', 0x80000000, 0) . 'mask');
	my ($code) = $ws->read_close(10);
	is($code, 1002, 'a 64-bit length with its top bit set: closed with 1002');
}

# random bytes after the upgrade (seeded: a failure can be replayed), and
# random frames of valid shape with random opcodes, bits and payloads
{
	my $seed = $ENV{SB_FUZZ_SEED} // int(rand(2**31));
	note("random frames: SB_FUZZ_SEED=$seed");
	srand($seed);
	my $closed = 0;
	for my $i (1 .. 40)
	{
		my $ws = WsTest->new($port);
		my ($status) = $ws->upgrade;
		if ($i % 2)
		{
			$ws->raw->write_raw(join '', map { chr(int(rand(256))) } 1 .. 1 + int(rand(300)));
		}
		else
		{
			$ws->send_frame(int(rand(16)), join('', map { chr(int(rand(256))) } 1 .. int(rand(200))),
				fin => int(rand(2)), rsv => (rand() < 0.2 ? 0x10 : 0), mask => (rand() < 0.9 ? 1 : 0));
		}
		# our end of the stream (a frame may still wait for its payload)
		shutdown($ws->raw->{sock}, 1);
		$closed++ if $ws->wait_closed(10);
	}
	is($closed, 40, 'random bytes and frames: every connection ends');
}

is(StreamTest::worker_pid($node), $pid, 'the worker stayed up through every bad request and frame');
ScuttlebuttTest::run_interop($node, 'stream_websocket.js', "ws://127.0.0.1:$port/", 'm4', 'accept', '{}');

# ---- origins ----

ScuttlebuttTest::run_interop($node, 'stream_websocket.js', "ws://127.0.0.1:$port/", 'm5', 'refuse',
	'{"origin":"https://app.example","httpStatus":403}');
ok(StreamTest::poll($node, "SELECT count > 0 FROM scuttlebutt.connection_errors WHERE reason = 'origin not allowed'"),
	'an Origin with the default websocket_origins: counted as "origin not allowed"');
ok(StreamTest::find_log($node, qr/DETAIL:  The origin "https:\/\/app\.example" is not in scuttlebutt\.websocket_origins\./),
	'the log names the origin refused');
$node->append_conf('postgresql.conf', "scuttlebutt.websocket_origins = 'https://app.example, http://localhost:8080'\n");
ok(ScuttlebuttTest::reload_worker($node), 'websocket_origins reloaded (the worker took it)');
ScuttlebuttTest::run_interop($node, 'stream_websocket.js', "ws://127.0.0.1:$port/", 'm5', 'accept',
	'{"origin":"https://APP.example"}');
ScuttlebuttTest::run_interop($node, 'stream_websocket.js', "ws://127.0.0.1:$port/", 'm6', 'refuse',
	'{"origin":"https://evil.example","httpStatus":403}');
$node->append_conf('postgresql.conf', "scuttlebutt.websocket_origins = '*'\n");
ok(ScuttlebuttTest::reload_worker($node), 'websocket_origins = * (the worker took it)');
ScuttlebuttTest::run_interop($node, 'stream_websocket.js', "ws://127.0.0.1:$port/", 'm5', 'accept',
	'{"origin":"https://evil.example"}');

# ---- the line protocol on the same port ----

{
	my $raw = StreamTest::Raw->new($port);
	my ($header) = $raw->handshake('m2');
	like($header // '', qr/^\{"id":/, 'a TCP client on the same port still speaks lines');
}
is(StreamTest::worker_pid($node), $pid, 'the worker is the same process at the end');

$node->stop;
done_testing();
