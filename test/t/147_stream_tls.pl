# Stream peers over TLS.  The test makes two CAs and certificates with the
# openssl command line; S listens with scuttlebutt.ssl = on (client
# certificates verified against the first CA), D dials it and listens in
# plain text.
#
#  - ssl = on without a usable certificate: a WARNING says the listener
#    refuses every connection, and a plain client is closed unanswered;
#  - the certificate put in place (the server's own ssl_cert_file and
#    ssl_key_file) and a reload: D replicates with S both ways over TLS,
#    tls = true on both ends in peer_status;
#  - a client certificate of the trusted CA: replicates; one of another CA:
#    S's handshake fails (certificate verify failed);
#  - D trusting another CA, D dialing by an address the certificate does
#    not name, an expired certificate: the handshake fails, last_error says
#    why in OpenSSL's words;
#  - a reload to a new certificate (which also names 127.0.0.1): the peer
#    dialing by address now connects, the open connections go on; a reload
#    to a missing file, or to a key others may read, keeps the previous
#    certificate;
#  - a plain client on the TLS listener and a TLS peer dialing a plain
#    listener fail cleanly, without the peer's bytes in any message;
#  - a stalled TLS handshake blocks no one and ends at handshake_timeout;
#  - a role that is not superuser may dial with TLS but may not name the
#    server's files (42501);
#  - an unmodified JavaScript client with Node's tls.connect
#    (test/interop/stream_tls.js).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use File::Copy;
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use StreamTest;
use TestCA;
use Test::More;

my $dir = PostgreSQL::Test::Utils::tempdir();

TestCA::make_ca($dir, $_) for qw(ca other-ca);
sub issue { TestCA::issue($dir, @_) }
issue('server', '/CN=localhost', 'ca', 'DNS:localhost', 'serverAuth', 2);
issue('server2', '/O=second/CN=localhost', 'ca', 'DNS:localhost, IP:127.0.0.1', 'serverAuth', 2);
issue('expired', '/CN=localhost', 'ca', 'DNS:localhost, IP:127.0.0.1', 'serverAuth', -1);
issue('alice', '/CN=alice', 'ca', undef, 'clientAuth', 2);
issue('mallory', '/CN=mallory', 'other-ca', undef, 'clientAuth', 2);

my $ns = StreamTest::new_node('s',
	conf => "scuttlebutt.ssl = on\n"
	  . "scuttlebutt.ssl_ca_file = '$dir/ca.crt'\n"
	  . "scuttlebutt.handshake_timeout = 3s\n"
	  . "log_min_messages = debug1\n");
my $nd = StreamTest::new_node('d', conf => "scuttlebutt.handshake_timeout = 3s\n");
my ($port_s, $port_d) = (StreamTest::port($ns), StreamTest::port($nd));
sub qs { StreamTest::q1($ns, @_) }

# Whether the listener on $port presents the certificate in $file within 30 s
sub serving_cert
{
	my ($port, $file) = @_;
	my $want = `openssl x509 -noout -fingerprint -sha256 -in '$file'`;
	for (1 .. 300)
	{
		my $got = `openssl s_client -connect 127.0.0.1:$port </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null`;
		return 1 if $got ne '' && $got eq $want;
		usleep(100_000);
	}
	return 0;
}
sub qd { StreamTest::q1($nd, @_) }

# ---- no certificate yet: nothing is served, in TLS or plain text ----

ok( StreamTest::find_log($ns,
		qr/could not load the stream listener's TLS certificate: .*\n.*DETAIL:  scuttlebutt\.ssl is on: the stream listener refuses every connection, and serves none in plain text/
	),
	'ssl = on without a certificate: the log says the listener refuses every connection');
{
	my $raw = StreamTest::Raw->new($port_s);
	$raw->send_line('{"id":"PLAIN","clock":{},"meta":"m"}');
	my $line = $raw->read_line(10);
	ok(!defined $line, 'without a certificate: a plain client gets no line back');
	ok($raw->wait_closed(10), 'without a certificate: the plain client is closed');
	ok(StreamTest::poll($ns, "SELECT count(*) > 0 FROM scuttlebutt.connection_errors WHERE reason = 'tls unavailable'", 10),
		'connection_errors counts it under "tls unavailable"');
}

# ---- the server's own certificate, read at a reload ----

my $offset = -s $ns->logfile;
copy("$dir/server.crt", $ns->data_dir . '/server.crt') or die $!;
copy("$dir/server.key", $ns->data_dir . '/server.key') or die $!;
chmod 0600, $ns->data_dir . '/server.key';
$ns->reload;
ok(serving_cert($port_s, "$dir/server.crt"), 'after the reload the listener presents its certificate');

for my $n ($ns, $nd)
{
	StreamTest::q1($n, "SELECT scuttlebutt.create_model('$_')") for qw(m mc mm mw ma me m2);
}
qs("SELECT scuttlebutt.set('m', 's' || g, to_jsonb(g)) FROM generate_series(1, 3) g");
qd("SELECT scuttlebutt.set('m', 'd' || g, to_jsonb(g)) FROM generate_series(1, 3) g");
my $p_m = qd("SELECT scuttlebutt.add_stream_peer('m', 'localhost', $port_s, tls => true, sslrootcert => '$dir/ca.crt')");
ok(StreamTest::wait_converged('m', [ $ns, $nd ]), 'TLS stream peer: S and D converge');
ok(StreamTest::poll($nd, "SELECT state = 'live' AND tls FROM scuttlebutt.peer_status WHERE peer_id = $p_m"),
	'D: the peer is live with tls = true');
ok(StreamTest::poll($ns, "SELECT bool_and(tls) AND count(*) = 1 FROM scuttlebutt.peer_status WHERE direction = 'in' AND model = 'm'"),
	'S: the incoming connection shows tls = true');
qs("SELECT scuttlebutt.set('m', 'live_s', '1')");
qd("SELECT scuttlebutt.set('m', 'live_d', '2')");
ok(StreamTest::wait_converged('m', [ $ns, $nd ]), 'TLS stream peer: live writes both ways converge');
is(qs("SELECT scuttlebutt.get('m', 'live_d')::text || scuttlebutt.get('m', 'd1')::text"), '21',
	'S holds what D wrote');
is(qd("SELECT count(*) FROM scuttlebutt.peer_status WHERE peer_id = $p_m AND last_error IS NOT NULL"), '0',
	'D: the TLS peer has no error');

# ---- client certificates ----

qd("SELECT scuttlebutt.set('mc', 'alice', '1')");
my $p_mc = qd("SELECT scuttlebutt.add_stream_peer('mc', 'localhost', $port_s, tls => true,"
	  . " sslrootcert => '$dir/ca.crt', sslcert => '$dir/alice.crt', sslkey => '$dir/alice.key')");
ok(StreamTest::wait_converged('mc', [ $ns, $nd ]), 'a client certificate of the trusted CA: converges');
is(qs("SELECT scuttlebutt.get('mc', 'alice')::text"), '1', 'S holds what D wrote with its client certificate');
ok(StreamTest::find_log($ns, qr/TLS handshake done \(TLSv1\.[23], [^)]*\), client certificate CN "alice"/, $offset),
	'S read the verified client certificate\'s CN');
unlike(StreamTest::log_since($ns, $offset), qr/client certificate CN "(?!alice")/,
	'no other connection so far had a client certificate CN');

my $errors_before = StreamTest::error_count($ns, 'tls handshake failed');
qd("SELECT scuttlebutt.set('mm', 'mallory', '1')");
my $p_mm = qd("SELECT scuttlebutt.add_stream_peer('mm', 'localhost', $port_s, tls => true,"
	  . " sslrootcert => '$dir/ca.crt', sslcert => '$dir/mallory.crt', sslkey => '$dir/mallory.key')");
ok( StreamTest::poll($ns,
		"SELECT count > $errors_before FROM scuttlebutt.connection_errors WHERE reason = 'tls handshake failed'"),
	'a client certificate of another CA: S counts a failed TLS handshake');
ok(StreamTest::find_log($ns, qr/closing connection from 127\.0\.0\.1:\d+: tls handshake failed\n.*DETAIL:  .*certificate verify failed/, $offset),
	'S logs the failed certificate verification');
ok( StreamTest::poll($nd,
		"SELECT last_error ~ '^(tls handshake failed: .*alert|connection lost: )' AND state <> 'live' FROM scuttlebutt.peer_status WHERE peer_id = $p_mm"),
	'D: the peer with the untrusted certificate is refused (the alert, or a reset that overtakes it) and is not live');
is(qs("SELECT count(*) FROM scuttlebutt.history('mm')"), '0', 'S took nothing from the peer it did not trust');

# ---- D trusting another CA; dialing by an address the certificate lacks ----

my $p_mw = qd("SELECT scuttlebutt.add_stream_peer('mw', 'localhost', $port_s, tls => true, sslrootcert => '$dir/other-ca.crt')");
ok( StreamTest::poll($nd,
		"SELECT last_error LIKE 'tls handshake failed: certificate verify failed: %' FROM scuttlebutt.peer_status WHERE peer_id = $p_mw"
	),
	'another CA: last_error says the certificate did not verify');
my $p_ma = qd("SELECT scuttlebutt.add_stream_peer('ma', '127.0.0.1', $port_s, tls => true, sslrootcert => '$dir/ca.crt')");
ok( StreamTest::poll($nd,
		"SELECT last_error LIKE 'tls handshake failed: certificate verify failed: IP address mismatch%' FROM scuttlebutt.peer_status WHERE peer_id = $p_ma"
	),
	'an address the certificate does not name: last_error says the address does not match');
is(qd("SELECT state IN ('backoff', 'connecting', 'handshake') FROM scuttlebutt.peer_status WHERE peer_id = $p_ma"), 't',
	'that peer is not live (it retries)');

# ---- a reload to a new certificate, then to a file that is missing ----

$offset = -s $ns->logfile;
copy("$dir/server2.crt", $ns->data_dir . '/server.crt') or die $!;
copy("$dir/server2.key", $ns->data_dir . '/server.key') or die $!;
$ns->reload;
qd("SELECT scuttlebutt.set('ma', 'by_address', '1')");
ok(StreamTest::wait_converged('ma', [ $ns, $nd ]),
	'after a reload to a certificate naming 127.0.0.1, the peer dialing by address converges');
ok(StreamTest::poll($nd, "SELECT state = 'live' AND tls FROM scuttlebutt.peer_status WHERE peer_id = $p_ma"),
	'and is live over TLS');
ok(StreamTest::poll($nd, "SELECT state = 'live' FROM scuttlebutt.peer_status WHERE peer_id = $p_m"),
	'the connection opened before the reload goes on');

qs("ALTER SYSTEM SET scuttlebutt.ssl_cert_file = '$dir/missing.crt'");
qs("ALTER SYSTEM SET scuttlebutt.ssl_key_file = '$dir/server2.key'");
$ns->reload;
ok( StreamTest::find_log($ns,
		qr/could not load the stream listener's TLS certificate: could not load scuttlebutt\.ssl_cert_file "[^"]*missing\.crt".*\n.*DETAIL:  New connections keep the certificate loaded before/,
		$offset),
	'a reload to a missing certificate file is refused with a WARNING');
# a key others may read is refused, as PostgreSQL refuses its ssl_key_file
copy("$dir/server2.key", "$dir/open.key") or die $!;
chmod 0644, "$dir/open.key";
$offset = -s $ns->logfile;
qs("ALTER SYSTEM SET scuttlebutt.ssl_cert_file = '$dir/server2.crt'");
qs("ALTER SYSTEM SET scuttlebutt.ssl_key_file = '$dir/open.key'");
$ns->reload;
ok( StreamTest::find_log($ns,
		qr/could not load the stream listener's TLS certificate: scuttlebutt\.ssl_key_file: "[^"]*open\.key" has group or world access/,
		$offset),
	'a key file readable by others is refused at a reload');
qd("SELECT scuttlebutt.remove_peer($p_ma)");
qd("SELECT scuttlebutt.set('ma', 'after_bad_reload', '1')");
$p_ma = qd("SELECT scuttlebutt.add_stream_peer('ma', '127.0.0.1', $port_s, tls => true, sslrootcert => '$dir/ca.crt')");
ok(StreamTest::wait_converged('ma', [ $ns, $nd ]),
	'after the refused reload, a new connection still gets the certificate loaded before');

# ---- an expired certificate ----

qs("ALTER SYSTEM SET scuttlebutt.ssl_cert_file = '$dir/expired.crt'");
qs("ALTER SYSTEM SET scuttlebutt.ssl_key_file = '$dir/expired.key'");
$ns->reload;
# the worker takes the reload a moment later: until the listener presents
# the expired certificate, a dial would still succeed
ok(serving_cert($port_s, "$dir/expired.crt"), 'after the reload the listener presents the expired certificate');
my $p_me = qd("SELECT scuttlebutt.add_stream_peer('me', 'localhost', $port_s, tls => true, sslrootcert => '$dir/ca.crt')");
ok( StreamTest::poll($nd,
		"SELECT last_error LIKE 'tls handshake failed: certificate verify failed: certificate has expired%' FROM scuttlebutt.peer_status WHERE peer_id = $p_me"
	),
	'an expired certificate: last_error says it has expired');
qs("ALTER SYSTEM RESET scuttlebutt.ssl_cert_file");
qs("ALTER SYSTEM RESET scuttlebutt.ssl_key_file");
$ns->reload;
qd("SELECT scuttlebutt.set('me', 'renewed', '1')");
ok(StreamTest::wait_converged('me', [ $ns, $nd ]), 'back to a valid certificate: that peer converges');
qd("SELECT scuttlebutt.remove_peer(id) FROM scuttlebutt.peers WHERE id IN ($p_mm, $p_mw)");

# ---- a plain client on the TLS listener ----

$offset = -s $ns->logfile;
$errors_before = StreamTest::error_count($ns, 'tls handshake failed');
{
	my $raw = StreamTest::Raw->new($port_s);
	$raw->send_line('{"id":"PLAIN-SECRET-BYTES","clock":{},"meta":"m"}');
	my $line = $raw->read_line(10);
	ok(!defined $line, 'a plain client on the TLS listener gets no line back');
	ok($raw->wait_closed(10), 'and is closed');
	ok( StreamTest::poll($ns,
			"SELECT count > $errors_before FROM scuttlebutt.connection_errors WHERE reason = 'tls handshake failed'"),
		'S counts a failed TLS handshake');
	ok(StreamTest::find_log($ns, qr/closing connection from \Q${\ $raw->addr}\E: tls handshake failed/, $offset),
		'S logs it');
	unlike(StreamTest::log_since($ns, $offset), qr/PLAIN-SECRET-BYTES/, "the client's bytes are in no message");
}

# ---- a TLS peer dialing a plain listener ----

qs("SELECT scuttlebutt.set('m2', 's', '1')");
my $p_m2 = qs("SELECT scuttlebutt.add_stream_peer('m2', 'localhost', $port_d, tls => true, sslrootcert => '$dir/ca.crt')");
ok( StreamTest::poll($ns,
		"SELECT last_error ~ '^(tls handshake failed: |handshake timeout: TLS handshake not done)' FROM scuttlebutt.peer_status WHERE peer_id = $p_m2",
		30),
	'a TLS peer dialing a plain listener: the handshake fails');
is(qd("SELECT count(*) FROM scuttlebutt.history('m2')"), '0', 'the plain listener took nothing from it');
qs("SELECT scuttlebutt.remove_peer($p_m2)");

# ---- a stalled handshake blocks no one ----

$offset = -s $ns->logfile;
{
	my $raw = StreamTest::Raw->new($port_s);
	$raw->write_raw("\x16\x03\x01");    # the start of a TLS record, and nothing more
	qd("SELECT scuttlebutt.set('m', 'during_stall', '1')");
	ok(StreamTest::wait_converged('m', [ $ns, $nd ], 10), 'a stalled handshake: live replication goes on meanwhile');
	ok($raw->wait_closed(20), 'the stalled connection is closed');
	ok(StreamTest::find_log($ns, qr/handshake timeout\n.*DETAIL:  TLS handshake not done within scuttlebutt\.handshake_timeout/, $offset),
		'at scuttlebutt.handshake_timeout, saying the TLS handshake was not done');
}

# ---- a role that is not superuser ----

qd(<<'SQL');
CREATE ROLE bob LOGIN;
SELECT scuttlebutt.grant('m', 'bob', 'read');
SELECT scuttlebutt.grant('m', 'bob', 'write');
GRANT SELECT, INSERT, UPDATE, DELETE ON scuttlebutt.peers TO bob;
GRANT USAGE ON SEQUENCE scuttlebutt.peers_id_seq TO bob;
SQL
for my $file (qw(sslrootcert sslcert sslkey))
{
	my $args = $file eq 'sslrootcert' ? "sslrootcert => '$dir/ca.crt'"
	  : "sslcert => '$dir/alice.crt', sslkey => '$dir/alice.key'";
	my ($rc, $out, $err) = $nd->psql('postgres',
		"\\set VERBOSITY verbose\nSET ROLE bob;\n"
		  . "SELECT scuttlebutt.add_stream_peer('m', 'localhost', $port_s, tls => true, $args);");
	like($err, qr/ERROR:  42501: only a superuser may set (sslrootcert|sslcert|sslkey) of a scuttlebutt peer/,
		"a role that is not superuser may not name $file (42501)");
}
{
	my ($rc, $out, $err) = $nd->psql('postgres',
		"\\set VERBOSITY verbose\nSET ROLE bob;\n"
		  . "INSERT INTO scuttlebutt.peers (model, transport, host, port, tls, sslcert, sslkey)"
		  . " VALUES ('m', 'stream', 'localhost', $port_s, true, '$dir/alice.crt', '$dir/alice.key');");
	like($err, qr/ERROR:  42501: only a superuser may set sslcert/,
		'nor write them into scuttlebutt.peers directly');
	($rc, $out, $err) = $nd->psql('postgres',
		"SET ROLE bob;\nSELECT scuttlebutt.add_stream_peer('m', 'localhost', $port_s, tls => true) > 0;");
	is($out, 't', 'a role that is not superuser may dial with TLS against the system CAs')
	  or diag($err);
	is(qd("SELECT count(*) FROM scuttlebutt.peers WHERE owner = 'bob'::regrole AND sslrootcert IS NULL AND tls"),
		'1', 'its row has no file');
	qd("DELETE FROM scuttlebutt.peers WHERE owner = 'bob'::regrole");
}

# ---- Node's tls.connect ----

SKIP:
{
	skip 'node.js or test/node_modules missing', 1 unless ScuttlebuttTest::node_available();
	local $ENV{PG_TEST_TIMEOUT_DEFAULT} = $PostgreSQL::Test::Utils::timeout_default;
	ok(ScuttlebuttTest::run_interop($ns, 'stream_tls.js', $port_s, $dir) > 0,
		'stream_tls.js made its checks');
}

my @w = grep { /WARNING:.*scuttlebutt/ && !/tls|TLS|handshake|closing connection/ }
  split /\n/, slurp_file($ns->logfile);
is(scalar(@w), 0, 'S logged no other WARNING') or diag(join("\n", @w));

$ns->stop;
$nd->stop;
done_testing();
