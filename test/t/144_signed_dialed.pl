# Signed models on the connections the database dials
# (test/interop/signed_dial.js), with RSA and with Ed25519 keys: a signed
# JavaScript Model server (unmodified scuttlebutt/security for RSA)
# receives the database's writes verified and sends its own; a raw server
# answering with forgeries has them rejected and counted on its peer row,
# and only its genuine update, of a lower timestamp, reaches the
# JavaScript server.  The server's signatures are also checked with the
# openssl command, before and after a restart.  Keys are made here with
# the openssl command.
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
	my $server_key = SignedTest::make_key($server_dir, 'server', $alg);
	if ($alg eq 'rsa')
	{
		# without a key, a signed model cannot be written; a key file
		# others can read is refused (the setting keeps its value)
		$node->safe_psql('postgres', q{SELECT scuttlebutt.create_model('nokey', 'model', true)});
		my ($rc, $out, $err) = $node->psql('postgres',
			"\\set VERBOSITY verbose\nSELECT scuttlebutt.set('nokey', 'k', '1')");
		like($err, qr/ERROR:  55000:/, 'a write to a signed model on a node without a key: ERROR 55000');
		my $open = SignedTest::make_key($server_dir, 'open', 'rsa');
		chmod(0644, $open->{private}) or die "chmod: $!";
		my $off = -s $node->logfile;
		$node->append_conf('postgresql.conf', "scuttlebutt.signing_key_file = '$open->{private}'\n");
		$node->reload;
		ok(StreamTest::find_log($node, qr/has group or world access/, $off),
			'a key file with mode 0644 is refused, and the log says why');
		is($node->safe_psql('postgres', 'SELECT scuttlebutt.node_public_key() IS NULL'), 't',
			'the node still has no key');
		SignedTest::use_key($node, $server_key);
	}
	else
	{
		# a path relative to the data directory
		my $copy = $node->data_dir . '/signing.key';
		PostgreSQL::Test::Utils::system_or_bail('cp', '-p', $server_key->{private}, $copy);
		SignedTest::use_key($node, $server_key, 'signing.key');
	}
	my $dir = PostgreSQL::Test::Utils::tempdir();
	SignedTest::make_key($dir, $_, $alg) for qw(S C D);
	ScuttlebuttTest::run_interop($node, 'signed_dial.js', $alg, $dir);

	# the server's signatures, checked by the openssl command; and after a
	# restart the node signs with the same key under the same id
	my $m = "signed_dial_$alg";
	my $h = q{SELECT h::text FROM scuttlebutt.history('%s') h WHERE h->0->>0 = '%s'};
	my $line = $node->safe_psql('postgres', sprintf($h, $m, 'db1'));
	ok(SignedTest::openssl_verifies($server_key, $line), "$alg: openssl verifies the server's signature of a SQL write")
	  or diag($line);
	ok(!SignedTest::openssl_verifies($server_key, $line =~ s/1\.5/2.5/r),
		"$alg: (and not once the value is altered)");
	$node->restart;
	is($node->safe_psql('postgres', 'SELECT scuttlebutt.node_id()'), $server_key->{id},
		"$alg: after a restart node_id() is still the key's id");
	$node->safe_psql('postgres', qq{SELECT scuttlebutt.set('$m', 'after_restart', '"x"')});
	$line = $node->safe_psql('postgres', sprintf($h, $m, 'after_restart'));
	ok(SignedTest::openssl_verifies($server_key, $line), "$alg: a write after the restart is signed with the key")
	  or diag($line);
	$node->stop;
}

done_testing();
