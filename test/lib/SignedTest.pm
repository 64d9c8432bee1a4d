# Helpers for the signed-update TAP tests (test/t/142-144): key pairs made
# at test time with the openssl command (no private key is ever kept in
# the repository), and nodes configured to sign with one.
#
#   my $k = SignedTest::make_key($dir, 'a', 'rsa');     # or 'ed25519'
#       writes $dir/a.key (private, mode 0600: RSA as
#       "openssl genrsa -traditional 2048" writes it, Ed25519 as
#       "openssl genpkey -algorithm ed25519") and $dir/a.pub (its SPKI
#       PEM, as "openssl rsa -pubout" / "openssl pkey -pubout" write
#       it); returns {private => path, public => path, pem => text,
#       id => base64(SHA-1(pem)), algorithm => 'rsa' | 'ed25519'}; an
#       RSA key of a name made before in the test is that one again
#
#   SignedTest::use_key($node, $k, $path)
#       points the node's scuttlebutt.signing_key_file at $k->{private}
#       (or at $path, a copy of it)
#       (appended to postgresql.conf), reloads, and waits until
#       node_public_key() returns $k's public key
#
#   SignedTest::key_id($pem)
#       base64(SHA-1(pem)), what security.js's createId() computes
#
#   SignedTest::trust($node, $k)
#       trust_key() of $k's public PEM on $node, checking the id returned
#
#   SignedTest::signed_update($k, $change_json, $ts)
#       the wire text of [change, ts, $k's id, signature], signed by the
#       openssl command over JSON.stringify([change, ts, source]) as
#       security.js signs ($change_json must be JSON.stringify's text)
#
#   SignedTest::openssl_verifies($k, $line)
#       whether the openssl command verifies the signature of a wire
#       line written as JSON.stringify writes it ([change, ts, source,
#       signature]) with $k's public key, over the line's text without
#       its signature: the server's signing checked by another
#       implementation
package SignedTest;

use strict;
use warnings;

use Digest::SHA qw(sha1_base64);
use MIME::Base64 qw(decode_base64 encode_base64);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Runs a command; dies with its stderr when it fails
sub _run
{
	my (@cmd) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '<', \'', '>', \$out, '2>', \$err)
	  or die "@cmd failed: $err";
	return $out;
}

sub key_id
{
	my ($pem) = @_;
	my $id = sha1_base64($pem);
	# Digest::SHA leaves out base64's padding; a 20-byte digest has one "="
	$id .= '=' while length($id) % 4;
	return $id;
}

# RSA keys made so far by this test, by name: a test that makes its keys
# again for another round (another transport) gets the same RSA key
# pair under the same name, copied (openssl takes a good part of a
# second of CPU for one; each round has new servers)
my %rsa_made;

sub make_key
{
	my ($dir, $name, $algorithm) = @_;
	my $private = "$dir/$name.key";
	my $public = "$dir/$name.pub";
	if ($algorithm eq 'rsa' && $rsa_made{$name})
	{
		PostgreSQL::Test::Utils::system_or_bail('cp', '-p', $rsa_made{$name}{private}, $private);
		PostgreSQL::Test::Utils::system_or_bail('cp', '-p', $rsa_made{$name}{public}, $public);
	}
	elsif ($algorithm eq 'rsa')
	{
		_run('openssl', 'genrsa', '-traditional', '-out', $private, '2048');
		_run('openssl', 'rsa', '-in', $private, '-pubout', '-out', $public);
	}
	elsif ($algorithm eq 'ed25519')
	{
		_run('openssl', 'genpkey', '-algorithm', 'ed25519', '-out', $private);
		_run('openssl', 'pkey', '-in', $private, '-pubout', '-out', $public);
	}
	else
	{
		die "unknown key algorithm $algorithm";
	}
	chmod(0600, $private) or die "chmod $private: $!";
	my $pem = slurp_file($public);
	my $k = {
		private => $private,
		public => $public,
		pem => $pem,
		id => key_id($pem),
		algorithm => $algorithm
	};
	$rsa_made{$name} //= $k if $algorithm eq 'rsa';
	return $k;
}

sub use_key
{
	my ($node, $k, $path) = @_;
	$path //= $k->{private};
	$node->append_conf('postgresql.conf', "scuttlebutt.signing_key_file = '$path'\n");
	$node->reload;
	my $pem = $k->{pem} =~ s/'/''/gr;
	ok( $node->poll_query_until('postgres',
			"SELECT scuttlebutt.node_public_key() IS NOT DISTINCT FROM '$pem'"),
		$node->name . ": node_public_key() is the $k->{algorithm} key's public PEM after a reload");
	is($node->safe_psql('postgres', 'SELECT scuttlebutt.node_id()'), $k->{id},
		$node->name . ': node_id() is base64(SHA-1(public PEM))');
}

# trust_key($k) on $node; checks that it returns the key's id
sub trust
{
	my ($node, $k, $label) = @_;
	my $pem = $k->{pem} =~ s/'/''/gr;
	is($node->safe_psql('postgres', "SELECT scuttlebutt.trust_key('$pem')"), $k->{id},
		($label // $node->name) . ": trust_key() returns the key's id");
}

sub signed_update
{
	my ($k, $change, $ts) = @_;
	my $text = qq([$change,$ts,"$k->{id}"]);
	my $dir = PostgreSQL::Test::Utils::tempdir();
	open my $fh, '>:raw', "$dir/data" or die "cannot write $dir/data: $!";
	print $fh $text;
	close $fh;
	my @cmd = $k->{algorithm} eq 'rsa'
	  ? ('openssl', 'dgst', '-sha1', '-sign', $k->{private}, '-binary', "$dir/data")
	  : ('openssl', 'pkeyutl', '-sign', '-rawin', '-inkey', $k->{private}, '-in', "$dir/data");
	my $sig = _run(@cmd);
	return qq([$change,$ts,"$k->{id}","@{[encode_base64($sig, '')]}"]);
}

sub openssl_verifies
{
	my ($k, $line) = @_;
	my ($text, $sig) = $line =~ /^(\[.*),"([A-Za-z0-9+\/=]+)"\]$/s
	  or return 0;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	for ([ data => "$text]" ], [ sig => decode_base64($sig) ])
	{
		open my $fh, '>:raw', "$dir/$_->[0]" or die "cannot write $dir/$_->[0]: $!";
		print $fh $_->[1];
		close $fh;
	}
	my @cmd = $k->{algorithm} eq 'rsa'
	  ? ('openssl', 'dgst', '-sha1', '-verify', $k->{public}, '-signature', "$dir/sig", "$dir/data")
	  : ('openssl', 'pkeyutl', '-verify', '-pubin', '-inkey', $k->{public}, '-rawin', '-in', "$dir/data",
		'-sigfile', "$dir/sig");
	return IPC::Run::run(\@cmd, '<', \'', '>', \my $out, '2>', \my $err) ? 1 : 0;
}

1;
