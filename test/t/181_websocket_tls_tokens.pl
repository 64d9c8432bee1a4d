# WebSocket over TLS (wss) and tokens carried by the upgrade request.  The
# test makes a CA and the listener's certificate; the listener speaks only
# TLS (scuttlebutt.ssl = on), and a token rule guards model mt.
#
#  - an unmodified reference Model over websocket-stream with wss://,
#    trusting the test CA: initial sync and live edits both ways;
#    peer_status shows tls;
#  - ws:// (plain text) on the TLS listener fails its TLS handshake;
#  - a token in the query string (token=, access_token=) or offered as the
#    subprotocol "token.<jwt>" (beside "scuttlebutt", which is answered)
#    lets the client in as the token's role, by method token;
#  - refused, with a close frame 1008 and no payload byte (not even our
#    header): no token, a forged token, an expired one; two different
#    tokens in one request: 400;
#  - the header's meta.token wins over the request's.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use JwtTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use StreamTest;
use TestCA;
use Test::More;

my $dir = PostgreSQL::Test::Utils::tempdir();
TestCA::make_ca($dir, 'ca');
TestCA::issue($dir, 'server', '/CN=localhost', 'ca', 'DNS:localhost, IP:127.0.0.1', 'serverAuth', 2);

my $secret = 'websocket-test-secret-of-more-than-32-bytes';
my $node = StreamTest::new_node('wss',
	conf => "scuttlebutt.ssl = on\n"
	  . "scuttlebutt.ssl_cert_file = '$dir/server.crt'\n"
	  . "scuttlebutt.ssl_key_file = '$dir/server.key'\n"
	  . "scuttlebutt.jwt_secret = '$secret'\n"
	  . "scuttlebutt.handshake_timeout = 5s\n");
my $port = StreamTest::port($node);
sub q1 { StreamTest::q1($node, @_) }
my $owner = q1('SELECT current_user');
my $pid = StreamTest::worker_pid($node);

q1('CREATE ROLE alice LOGIN');
for my $m (qw(m1 m2 mt))
{
	q1("SELECT scuttlebutt.create_model('$m')");
	q1("SELECT scuttlebutt.grant('$m', 'alice', 'read'); SELECT scuttlebutt.grant('$m', 'alice', 'write')");
}
q1(q{INSERT INTO scuttlebutt.listen_rules VALUES (7, NULL, 'mt', 'token', NULL)});

$ENV{PG_TEST_TIMEOUT_DEFAULT} = $PostgreSQL::Test::Utils::timeout_default;
sub js
{
	my ($url, $model, $expect, $opts) = @_;
	ScuttlebuttTest::run_interop($node, 'stream_websocket.js', $url, $model, $expect, $opts);
}
my $wss = "wss://127.0.0.1:$port/";
my $ca = qq("ca":"$dir/ca.crt");

# ---- wss ----

js($wss, 'm1', 'accept', qq({$ca,"role":"$owner","method":"trust","tls":true}));
my $before = StreamTest::error_count($node, 'tls handshake failed');
js("ws://127.0.0.1:$port/", 'm2', 'refuse', '{}');
ok(StreamTest::poll($node, "SELECT count > $before FROM scuttlebutt.connection_errors WHERE reason = 'tls handshake failed'"),
	'ws:// on the TLS listener: its TLS handshake fails');

# ---- tokens in the request ----

my $now = time;
my $good = JwtTest::token(alg => 'HS256', secret => $secret, claims => { role => 'alice', exp => $now + 600 });
my $forged = JwtTest::token(alg => 'HS256', secret => 'not-the-secret-not-the-secret-00', claims => { role => 'alice', exp => $now + 600 });
my $expired = JwtTest::token(alg => 'HS256', secret => $secret, claims => { role => 'alice', exp => $now - 600 });
my $alice = qq("role":"alice","method":"token","tls":true);

js("${wss}?token=$good", 'mt', 'accept', qq({$ca,$alice}));
js("${wss}sync?x=1&access_token=$good", 'mt', 'accept', qq({$ca,$alice}));
js($wss, 'mt', 'accept', qq({$ca,$alice,"protocols":["scuttlebutt","token.$good"]}));

my $auth_failed = StreamTest::error_count($node, 'authentication failed');
js($wss, 'mt', 'refuse', qq({$ca,"closeCode":1008,"closeReason":"","noBytes":true}));
js("${wss}?token=$forged", 'mt', 'refuse', qq({$ca,"closeCode":1008,"noBytes":true}));
js($wss, 'mt', 'refuse', qq({$ca,"closeCode":1008,"noBytes":true,"protocols":["scuttlebutt","token.$expired"]}));
ok(StreamTest::poll($node, "SELECT count >= $auth_failed + 3 FROM scuttlebutt.connection_errors WHERE reason = 'authentication failed'"),
	'no token, a forged one, an expired one: counted as "authentication failed"');
ok(StreamTest::find_log($node, qr/DETAIL:  .*needs a token in the header.s meta\.token; there is none/),
	'the log says the connection had no token');

$before = StreamTest::error_count($node, 'websocket handshake failed');
js("${wss}?token=$good", 'mt', 'refuse', qq({$ca,"httpStatus":400,"protocols":["scuttlebutt","token.$expired"]}));
ok(StreamTest::poll($node, "SELECT count > $before FROM scuttlebutt.connection_errors WHERE reason = 'websocket handshake failed'"),
	'two different tokens: "websocket handshake failed"');
ok(StreamTest::find_log($node, qr/DETAIL:  The request carries two different tokens/), 'the log says why');

# the header's own token comes first
js("${wss}?token=$forged", 'mt', 'accept', qq({$ca,$alice,"meta":{"model":"mt","token":"$good"}}));

is(StreamTest::worker_pid($node), $pid, 'the worker stayed up');
$node->stop;
done_testing();
