# JSON Web Tokens for the tests, made without a JWT library: HMAC-SHA256
# with Digest::SHA, RS256 and EdDSA with the openssl command, so the
# server's verifier is checked against another implementation.
#
#   my $t = JwtTest::token(alg => 'HS256', secret => $s, claims => {role => 'r', exp => time + 60});
#   my $t = JwtTest::token(alg => 'RS256', key => $private_pem_path, claims => {...});
#   my $t = JwtTest::token(alg => 'EdDSA', key => $path, claims => {...});
#       header {"alg":...,"typ":"JWT"} (or header => {...} / raw_header =>
#       text, raw_claims => text to write a part as given)
#
#   JwtTest::key_pair($dir, $name, 'rsa' | 'ed25519')
#       writes $dir/$name.key (private, 0600) and $dir/$name.pub (SPKI
#       PEM); returns (private path, public path)
package JwtTest;

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256);
use IPC::Run;
use JSON::PP;
use MIME::Base64 qw(encode_base64url);

sub _run
{
	my ($cmd, $in) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run($cmd, '<', \$in, '>', \$out, '2>', \$err)
	  or die "@$cmd failed: $err";
	return $out;
}

sub key_pair
{
	my ($dir, $name, $kind) = @_;
	my ($key, $pub) = ("$dir/$name.key", "$dir/$name.pub");
	_run($kind eq 'rsa'
		? [ 'openssl', 'genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', $key ]
		: [ 'openssl', 'genpkey', '-algorithm', 'ed25519', '-out', $key ], '');
	chmod 0600, $key;
	_run([ 'openssl', 'pkey', '-in', $key, '-pubout', '-out', $pub ], '');
	return ($key, $pub);
}

sub _sign
{
	my ($alg, $input, %o) = @_;
	return hmac_sha256($input, $o{secret}) if $alg eq 'HS256';
	return _run([ 'openssl', 'dgst', '-sha256', '-sign', $o{key}, '-binary' ], $input)
	  if $alg eq 'RS256';
	if ($alg eq 'EdDSA')
	{
		# pkeyutl -rawin reads a file (Ed25519 signs the message, not a hash)
		my $file = "$o{key}.input";
		open(my $fh, '>', $file) or die "$file: $!";
		print $fh $input;
		close $fh;
		return _run([ 'openssl', 'pkeyutl', '-sign', '-rawin', '-inkey', $o{key}, '-in', $file ], '');
	}
	return '';    # "none"
}

sub token
{
	my (%o) = @_;
	my $json = JSON::PP->new->canonical;
	my $header = $o{raw_header} // $json->encode($o{header} // { alg => $o{alg}, typ => 'JWT' });
	my $claims = $o{raw_claims} // $json->encode($o{claims} // {});
	my $input = encode_base64url($header) . '.' . encode_base64url($claims);
	return "$input." . encode_base64url(_sign($o{sign_as} // $o{alg}, $input, %o));
}

1;
