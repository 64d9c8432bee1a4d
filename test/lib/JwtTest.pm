# Test tokens for the stream port's "token" rules (scuttlebutt.listen_rules).
#
#   JwtTest::hs256($secret, { role => 'alice', exp => time + 60 })
#       a JWT signed with HMAC-SHA256 under $secret (as
#       scuttlebutt.jwt_secret checks it), with the given claims
#
#   JwtTest::verifier_missing($node, $log_offset)
#       whether the server's log since $log_offset shows that no token can
#       be checked yet ("tokens are not configured"): the tests that need a
#       working verifier are then marked TODO, never skipped silently
package JwtTest;

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256);
use JSON::PP;
use MIME::Base64 qw(encode_base64url);
use PostgreSQL::Test::Utils;

sub hs256
{
	my ($secret, $claims, %o) = @_;
	my $json = JSON::PP->new->canonical;
	my $header = encode_base64url($json->encode({ alg => $o{alg} // 'HS256', typ => 'JWT' }));
	my $payload = encode_base64url($json->encode($claims));
	my $sig = encode_base64url(hmac_sha256("$header.$payload", $secret));
	return "$header.$payload.$sig";
}

sub verifier_missing
{
	my ($node, $offset) = @_;
	my $log = slurp_file($node->logfile, $offset);
	return $log =~ /tokens are not configured/ ? 1 : 0;
}

1;
