# Signed models with unmodified JavaScript peers over the stream listener
# (test/interop/signed_stream.js), once with RSA keys (the npm package's
# own scuttlebutt/security) and once with Ed25519 keys (the same shape on
# Node's crypto.sign/crypto.verify, test/interop/lib/ed25519_security.js):
# two signed Models relay through the database's signed model and receive
# its SQL writes verified; forged, altered, unsigned, unknown-key and
# other-algorithm updates sent on a raw socket are rejected, counted in
# peer_status.rejected and never relayed; a genuine update with a lower
# timestamp than a rejected forgery, and one laid out unlike
# JSON.stringify, are accepted; export() loads into a signed Model.
#
# Every key is made here with the openssl command.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use SignedTest;
use StreamTest;
use Test::More;

ok(ScuttlebuttTest::node_available(), 'node.js and the npm packages are installed (npm ci in test/)')
  or BAIL_OUT('node.js or test/node_modules missing: run "npm ci" in test/');

# node.js waits as long as the TAP framework's own waits
$ENV{PG_TEST_TIMEOUT_DEFAULT} = $PostgreSQL::Test::Utils::timeout_default;

for my $alg (qw(rsa ed25519))
{
	my $other = $alg eq 'rsa' ? 'ed25519' : 'rsa';
	my $node = StreamTest::new_node("signed_$alg");

	# the server's key, apart from the JavaScript peers' keys
	my $server_dir = PostgreSQL::Test::Utils::tempdir();
	my $server_key = SignedTest::make_key($server_dir, 'server', $alg);
	SignedTest::use_key($node, $server_key);

	my $dir = PostgreSQL::Test::Utils::tempdir();
	SignedTest::make_key($dir, $_, $alg) for qw(A B C D);
	SignedTest::make_key($dir, 'X', $other);

	ScuttlebuttTest::run_interop($node, 'signed_stream.js', StreamTest::port($node), $alg, $dir);

	my @w = grep { /(?:WARNING|ERROR|FATAL|PANIC):/ && !/rejected|not signed|does not verify|no trusted key/ }
	  split /\n/, slurp_file($node->logfile);
	is(scalar(@w), 0, "$alg: the server logged no other WARNING or ERROR") or diag(join("\n", @w));
	$node->stop;
}

done_testing();
