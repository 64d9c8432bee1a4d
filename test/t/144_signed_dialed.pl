# Signed models on the connections the database dials
# (test/interop/signed_dial.js), with RSA and with Ed25519 keys: a signed
# JavaScript Model server (unmodified scuttlebutt/security for RSA)
# receives the database's writes verified and sends its own; a raw server
# answering with forgeries has them rejected and counted on its peer row,
# and only its genuine update, of a lower timestamp, reaches the
# JavaScript server.  Keys are made here with the openssl command.
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

$ENV{PG_TEST_TIMEOUT_DEFAULT} = $PostgreSQL::Test::Utils::timeout_default;

for my $alg (qw(rsa ed25519))
{
	my $node = StreamTest::new_node("dialer_$alg", listen => 0);
	my $server_dir = PostgreSQL::Test::Utils::tempdir();
	SignedTest::use_key($node, SignedTest::make_key($server_dir, 'server', $alg));
	my $dir = PostgreSQL::Test::Utils::tempdir();
	SignedTest::make_key($dir, $_, $alg) for qw(S C D);
	ScuttlebuttTest::run_interop($node, 'signed_dial.js', $alg, $dir);
	$node->stop;
}

done_testing();
