# The node's signing key (scuttlebutt.signing_key_file) and the worker's
# verification on the stream listener:
#   - a key file readable by others stops the server at start, as
#     ssl_key_file does; at reload a bad file is refused and the key in use
#     kept;
#   - the node's id is base64(SHA-1) of its public key's PEM, the header of
#     the listener names it, and local writes carry its signature;
#   - on the wire, an update to a signed model that is unsigned, of an
#     unknown source, or whose signature does not verify is counted in
#     peer_status.rejected and not applied, and the connection stays open;
#     a key trusted while the connection is open is used at once;
#   - changing the key file (another path, or another key in the same
#     file) closes every connection at reload ("signing key changed"): the
#     next header names the new id.
use strict;
use warnings;

use Digest::SHA qw(sha1_base64);
use FindBin;
use lib "$FindBin::RealBin/../lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamTest;
use Test::More;

my $tmp = PostgreSQL::Test::Utils::tempdir();

# A key pair made with openssl: (private key path, public PEM text)
sub make_key
{
	my ($name, $kind) = @_;
	my $key = "$tmp/$name.pem";
	if ($kind eq 'rsa')
	{
		system_or_bail('openssl', 'genrsa', '-traditional', '-out', $key, '2048');
	}
	else
	{
		system_or_bail('openssl', 'genpkey', '-algorithm', 'ed25519', '-out', $key);
	}
	my ($pub, $err) = run_command([ 'openssl', 'pkey', '-in', $key, '-pubout' ]);
	return ($key, "$pub\n");
}

# security.js's createId(): base64 of the SHA-1 of the PEM text
sub key_id { my $b = sha1_base64($_[0]); return $b . ('=' x ((4 - length($b) % 4) % 4)) }

# base64 of openssl's signature of $text with $key (RSA-SHA1 or Ed25519)
sub sign
{
	my ($key, $kind, $text) = @_;
	my $in = "$tmp/signed_text";
	open(my $fh, '>', $in) or die;
	print $fh $text;
	close $fh;
	my @cmd = $kind eq 'rsa'
	  ? ('openssl', 'dgst', '-sha1', '-sign', $key, '-binary', $in)
	  : ('openssl', 'pkeyutl', '-sign', '-rawin', '-inkey', $key, '-in', $in);
	my $sig = '';
	IPC::Run::run(\@cmd, '>', \$sig) or die "openssl failed";
	require MIME::Base64;
	return MIME::Base64::encode_base64($sig, '');
}

my ($node_key, $node_pub) = make_key('node', 'rsa');
my ($peer_key, $peer_pub) = make_key('peer', 'rsa');
my ($ed_key, $ed_pub) = make_key('node_ed', 'ed25519');
my $peer_id = key_id($peer_pub);

# ---- the key file must be the server's alone ----
my $na = PostgreSQL::Test::Cluster->new('a');
$na->init(extra => [ '--encoding=UTF8', '--no-locale' ]);
my $port = PostgreSQL::Test::Cluster::get_free_port();
$na->append_conf('postgresql.conf', $ScuttlebuttTest::common_conf . <<"EOC");
scuttlebutt.listen_addresses = '127.0.0.1'
scuttlebutt.port = $port
scuttlebutt.signing_key_file = '$node_key'
EOC
chmod 0644, $node_key;
ok(!$na->start(fail_ok => 1), 'a key file readable by others stops the server at start');
like(slurp_file($na->logfile), qr/"\Q$node_key\E" has group or world access/,
	'the log says why');
chmod 0600, $node_key;
$na->start;
$na->wait_for_log(qr/listening for stream peers on "127\.0\.0\.1" port $port/);
sub qa { my (undef, $out) = $na->psql('postgres', $_[0]); return $out }
qa('CREATE EXTENSION scuttlebutt');

my $id = key_id($node_pub);
is(qa('SELECT scuttlebutt.node_id()'), $id, 'the node id is base64(SHA-1) of the public key PEM');
is(qa(qq{SELECT scuttlebutt.node_public_key() = \$pem\$$node_pub\$pem\$}), 't',
	'node_public_key() is the PEM text openssl writes, trailing newline included');

qa(q{SELECT scuttlebutt.create_model('m', 'model', true)});
qa(q{SELECT scuttlebutt.set('m', 'mine', '1')});
my $doc = qa(q{SELECT doc FROM scuttlebutt.history('m') h(doc)});
my ($signed_text, $sig) = $doc =~ /^(.*),"([^"]+)"\]$/;
$signed_text .= ']';
is($sig, sign($node_key, 'rsa', $signed_text),
	'a local write carries the RSA-SHA1 signature of [change, ts, source] (as openssl computes it)');

# ---- verification on the wire ----
my $r = StreamTest::Raw->new($port);
my ($header) = $r->handshake('m', id => 'RAW');
like($header, qr/"id":"\Q$id\E"/, 'the listener names the key id in its header');
my $addr = $r->addr;

my $ts = 1_700_000_000_000;
my $genuine = qq{[["k",1],$ts,"$peer_id"]};
my $genuine_signed = substr($genuine, 0, -1) . ',"' . sign($peer_key, 'rsa', $genuine) . '"]';
my $forged_higher = qq{[["k",666],} . ($ts + 5) . qq{,"$peer_id","} . sign($peer_key, 'rsa', $genuine) . '"]';
my @refused = (
	qq{[["u",1],$ts,"$peer_id"]},	# not signed
	$genuine_signed,				# source not trusted yet
	$forged_higher,					# a signature of another value
	qq{[["a",1],$ts,"$peer_id","AAAA"]},
);
$r->send_line($_) for @refused;
ok(StreamTest::poll($na, "SELECT rejected = 4 FROM scuttlebutt.peer_status WHERE remote_addr = '$addr'", 30),
	'unsigned, untrusted and forged updates are counted as rejected');
is(qa(q{SELECT count(*) FROM scuttlebutt.history('m')}), '1', 'none of them is stored');
is(qa(qq{SELECT count(*) FROM scuttlebutt.clocks WHERE source = '$peer_id'}), '0', 'no clock moved');
like(slurp_file($na->logfile), qr/dropped \d+ invalid update\(s\) from \Q$addr\E: update from source "\Q$peer_id\E" is not signed/,
	'the WARNING says which check failed');

# trusted while the connection is open: the genuine update, older than
# the forgery refused above, is taken
is(qa(qq{SELECT scuttlebutt.trust_key(\$pem\$$peer_pub\$pem\$)}), $peer_id, 'trust_key() returns the source id');
$r->send_line($genuine_signed);
ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('m', 'k') = '1'}, 30),
	'a genuine update older than a refused forgery is taken once the key is trusted');
is(qa(qq{SELECT doc FROM scuttlebutt.history('m', '{}') h(doc) WHERE doc->>2 = '$peer_id'}),
	$genuine_signed, 'and stored byte for byte, signature included');

# ---- a bad key file at reload keeps the key in use ----
my ($bad_key) = make_key('bad', 'rsa');
chmod 0640, $bad_key;
$na->append_conf('postgresql.conf', "scuttlebutt.signing_key_file = '$bad_key'\n");
my $o = -s $na->logfile;
$na->reload;
$na->wait_for_log(qr/invalid value for parameter "scuttlebutt.signing_key_file"/, $o);
is(qa('SELECT scuttlebutt.node_id()'), $id, 'a key file refused at reload leaves the node id as it was');

# ---- a new key closes the connections; the next header names the new id ----
chmod 0600, $ed_key;
$na->append_conf('postgresql.conf', "scuttlebutt.signing_key_file = '$ed_key'\n");
$na->reload;
ok($r->wait_closed(30), 'changing the signing key closes the open connections');
ok(StreamTest::poll($na, q{SELECT count > 0 FROM scuttlebutt.connection_errors WHERE reason = 'signing key changed'}, 30),
	'connection_errors counts them as "signing key changed"');
my $ed_id = key_id($ed_pub);
ok(StreamTest::poll($na, qq{SELECT scuttlebutt.node_id() = '$ed_id'}, 30), 'the node id is the new key\'s');
my $r2 = StreamTest::Raw->new($port);
($header) = $r2->handshake('m', id => 'RAW2');
like($header, qr/"id":"\Q$ed_id\E"/, 'a new connection\'s header names the new id');
qa(q{SELECT scuttlebutt.create_model('e', 'model', true)});
is(qa(q{SELECT signature_algorithm FROM scuttlebutt.models WHERE name = 'e'}), 'ed25519',
	'a signed model made on an Ed25519 node takes Ed25519 signatures');

# ---- the same file with another key in it, then a reload: the same ----
my ($other_key, $other_pub) = make_key('other_ed', 'ed25519');
my $closed_before = qa(q{SELECT count FROM scuttlebutt.connection_errors WHERE reason = 'signing key changed'});
open(my $in, '<', $other_key) or die;
open(my $out, '>', $ed_key) or die;
print $out do { local $/; <$in> };
close $out;
close $in;
$na->reload;
ok($r2->wait_closed(30), 'a new key in the same file closes the connections at reload');
ok(StreamTest::poll($na, "SELECT count > $closed_before FROM scuttlebutt.connection_errors WHERE reason = 'signing key changed'", 30),
	'counted as "signing key changed"');
my $other_id = key_id($other_pub);
is(qa('SELECT scuttlebutt.node_id()'), $other_id, 'the node id is the new key\'s');
my $r3 = StreamTest::Raw->new($port);
($header) = $r3->handshake('m', id => 'RAW3');
like($header, qr/"id":"\Q$other_id\E"/, 'and the next header names it');

$na->stop;
done_testing();
