# RSA signatures computed on two threads (scuttlebutt.sign_threads, on by
# default) are the bytes OpenSSL writes: RSA-SHA1 PKCS#1 v1.5 is
# deterministic, so every update this node signs must carry exactly the
# signature "openssl dgst -sha1 -sign" makes of its signed text with the
# same key:
#   - set() many times in one session (the blinding values are renewed
#     every 32 signatures), set_many(), and with the setting off;
#   - a session that signed on the helper thread and is then terminated
#     leaves the server running, and the next session signs the same way;
#   - a three-prime RSA key is signed by OpenSSL alone, also byte for byte.
# The JavaScript interop (142, 144, 146) verifies these signatures with
# the reference package.
use strict;
use warnings;

use Digest::SHA qw(sha1_base64);
use FindBin;
use lib "$FindBin::RealBin/../lib";
use MIME::Base64;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use Test::More;

my $tmp = PostgreSQL::Test::Utils::tempdir();

# a private key made by "openssl $command ... @args", the server's alone
sub make_key
{
	my ($name, $command, @args) = @_;
	my $key = "$tmp/$name.pem";
	system_or_bail('openssl', $command, '-out', $key, @args);
	chmod 0600, $key;
	return $key;
}

# security.js's createId(): base64 of the SHA-1 of the public key's PEM
sub key_id
{
	my ($key) = @_;
	my ($pub) = run_command([ 'openssl', 'pkey', '-in', $key, '-pubout' ]);
	my $b = sha1_base64("$pub\n");
	return $b . ('=' x ((4 - length($b) % 4) % 4));
}

# base64 of openssl's RSA-SHA1 signature of $text with $key
sub openssl_sign
{
	my ($key, $text) = @_;
	my $in = "$tmp/signed_text";
	open(my $fh, '>', $in) or die;
	print $fh $text;
	close $fh;
	my $sig = '';
	IPC::Run::run([ 'openssl', 'dgst', '-sha1', '-sign', $key, '-binary', $in ], '>', \$sig)
	  or die "openssl failed";
	return encode_base64($sig, '');
}

# How many of $source's updates in model m there are, and how many carry a
# signature other than openssl's of their signed text (the update without
# its last element)
sub check_signatures
{
	my ($node, $key, $source) = @_;
	my $rows = $node->safe_psql('postgres',
		"SELECT u.doc::text FROM scuttlebutt.updates u JOIN scuttlebutt.registry r ON r.id = u.model_id"
		  . " WHERE r.name = 'm' AND u.source = '$source' ORDER BY u.ts");
	my ($n, $bad) = (0, 0);
	for my $doc (split /\n/, $rows)
	{
		$n++;
		my ($text, $sig) = $doc =~ /^(.*),"([A-Za-z0-9+\/=]+)"\]$/s;
		if (!defined $sig || openssl_sign($key, "$text]") ne $sig)
		{
			diag("not openssl's signature: $doc") if $bad++ < 3;
		}
	}
	return ($n, $bad);
}

my $rsa = make_key('rsa', 'genrsa', '-traditional', '2048');
my $rsa3 = make_key('rsa3', 'genpkey', '-algorithm', 'RSA',
	'-pkeyopt', 'rsa_keygen_bits:2048', '-pkeyopt', 'rsa_keygen_primes:3');

my $node = ScuttlebuttTest::new_node('a', conf => "scuttlebutt.signing_key_file = '$rsa'\n");
is($node->safe_psql('postgres', 'SHOW scuttlebutt.sign_threads'), 'on', 'sign_threads is on by default');
$node->safe_psql('postgres', q{
	SELECT scuttlebutt.create_model('m', 'model', true);
	SELECT scuttlebutt.set_signature_algorithm('m', 'rsa-sha1');
});
my $id = key_id($rsa);
is($node->safe_psql('postgres', 'SELECT scuttlebutt.node_id()'), $id, 'the node id is its RSA key\'s');

# 100 signatures in one session: the blinding is renewed three times
$node->safe_psql('postgres',
	q{SELECT count(scuttlebutt.set('m', 'k' || i, jsonb_build_object('v', i, 's', repeat('x', i)))) FROM generate_series(1, 100) i});
$node->safe_psql('postgres',
	q{SELECT scuttlebutt.set_many('m', (SELECT jsonb_object_agg('k' || i, i) FROM generate_series(101, 140) i))});
$node->safe_psql('postgres',
	q{SET scuttlebutt.sign_threads = off; SELECT count(scuttlebutt.set('m', 'k' || i, to_jsonb(i))) FROM generate_series(141, 160) i});
my ($n, $bad) = check_signatures($node, $rsa, $id);
is($n, 160, 'every write is stored');
is($bad, 0, 'every signature is the one openssl makes, on two threads and with the setting off');

# a session that signed on the helper thread, terminated while idle
my $session = $node->background_psql('postgres');
$session->query_safe(q{SELECT scuttlebutt.set('m', 'k1', '"again"')});
my $pid = $session->query_safe('SELECT pg_backend_pid()');
ok($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid, 10000)") eq 't',
	'a session that signed on two threads is terminated');
eval { $session->quit };
$node->safe_psql('postgres', q{SELECT scuttlebutt.set('m', 'k2', '"after"')});
($n, $bad) = check_signatures($node, $rsa, $id);
is("$n $bad", '160 0', 'the server runs on and the next session signs as openssl does');

# a three-prime key: OpenSSL signs alone
$node->append_conf('postgresql.conf', "scuttlebutt.signing_key_file = '$rsa3'\n");
$node->reload;
my $id3 = key_id($rsa3);
$node->poll_query_until('postgres', "SELECT scuttlebutt.node_id() = '$id3'")
  or die 'the node does not take the three-prime key';
$node->safe_psql('postgres',
	q{SELECT count(scuttlebutt.set('m', 'k' || i, to_jsonb(i))) FROM generate_series(1, 40) i});
($n, $bad) = check_signatures($node, $rsa3, $id3);
is("$n $bad", '40 0', 'a three-prime key signs every write, as openssl does');

$node->stop;
done_testing();
