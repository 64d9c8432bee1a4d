# The token checker of stream connections (scuttlebutt.jwt_secret,
# jwt_public_key_file, jwt_audience), through check_token(), which gives
# the reason the listener logs.  Tokens are made by another implementation
# (Digest::SHA, the openssl command): HS256, RS256 and EdDSA pass with
# their own key only; forged, altered, expired, early, audience-less,
# role-less, "none", "crit" and malformed tokens are refused, each with
# its reason; the settings refuse a short secret and an unusable key file
# at reload, and are not for everyone to read or call.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use JwtTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use Test::More;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my ($rsa_key, $rsa_pub) = JwtTest::key_pair($tmp, 'rsa', 'rsa');
my ($ed_key, $ed_pub) = JwtTest::key_pair($tmp, 'ed', 'ed25519');
my ($other_key) = JwtTest::key_pair($tmp, 'other', 'rsa');
my $secret = 'a-secret-of-at-least-thirty-two-bytes!';

my $node = PostgreSQL::Test::Cluster->new('jwt');
$node->init(extra => [ '--encoding=UTF8', '--no-locale' ]);
$node->append_conf('postgresql.conf', $ScuttlebuttTest::common_conf . <<"EOC");
scuttlebutt.jwt_secret = '$secret'
scuttlebutt.jwt_public_key_file = '$rsa_pub'
EOC
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION scuttlebutt');

# check_token's answer: the role, or the error's text
sub check
{
	my ($token, %o) = @_;
	my ($rc, $out, $err) = $node->psql('postgres',
		"SELECT scuttlebutt.check_token('$token')", %o);
	return $rc == 0 ? $out : $err;
}

# Points a setting at a value, reloads, and waits until the worker took it
sub configure
{
	my ($name, $value) = @_;
	$node->append_conf('postgresql.conf', "scuttlebutt.$name = '$value'\n");
	ScuttlebuttTest::reload_worker($node)
	  or die "the worker did not take scuttlebutt.$name = $value";
}

my $now = time;
my %valid = (role => 'app_user', exp => $now + 300);

# ---- HS256 ----
is(check(JwtTest::token(alg => 'HS256', secret => $secret, claims => \%valid)),
	'app_user', 'HS256 under jwt_secret: the role claim');
like(check(JwtTest::token(alg => 'HS256', secret => 'another-secret-of-thirty-two-bytes!!', claims => \%valid)),
	qr/token refused: the token's signature does not verify/, 'HS256 under another secret is refused');
{
	my $t = JwtTest::token(alg => 'HS256', secret => $secret, claims => \%valid);
	my ($h, $c, $s) = split /\./, $t;
	my $forged = JwtTest::token(alg => 'HS256', secret => 'x', claims => { %valid, role => 'postgres' });
	my (undef, $c2) = split /\./, $forged;
	like(check("$h.$c2.$s"), qr/signature does not verify/,
		'claims swapped under a genuine signature are refused');
	like(check("$h.$c.$s" . 'A'), qr/signature does not verify|not three base64url/,
		'a signature with a byte more is refused');
}
like(check(JwtTest::token(alg => 'HS256', secret => $secret, claims => { role => 'r', exp => $now - 10 })),
	qr/the token has expired \("exp" \d+, now \d+\)/, 'an expired token is refused');
like(check(JwtTest::token(alg => 'HS256', secret => $secret, claims => { role => 'r', exp => $now })),
	qr/has expired/, 'a token is expired at the second of exp');
like(check(JwtTest::token(alg => 'HS256', secret => $secret, claims => { role => 'r', nbf => $now + 300 })),
	qr/the token is not valid yet/, 'a token before nbf is refused');
is(check(JwtTest::token(alg => 'HS256', secret => $secret, claims => { role => 'r', nbf => $now - 5 })),
	'r', 'a token after nbf and without exp passes');
like(check(JwtTest::token(alg => 'HS256', secret => $secret, claims => { exp => $now + 60 })),
	qr/the token has no "role" claim/, 'a token without a role is refused');
like(check(JwtTest::token(alg => 'HS256', secret => $secret, claims => { role => 1 })),
	qr/"role" is not a string/, 'a role that is not a string is refused');
like(check(JwtTest::token(alg => 'HS256', secret => $secret, claims => { role => 'x' x 64 })),
	qr/longer than a role name/, 'a role longer than a name is refused');
like(check(JwtTest::token(alg => 'HS256', secret => $secret, claims => { role => 'r', exp => "$now" })),
	qr/"exp" is not a number/, 'exp as a string is refused');
like(check(JwtTest::token(alg => 'HS256', secret => $secret,
			raw_claims => '{"role":"reader","role":"postgres"}')),
	qr/"role" appears twice/, 'a claim given twice is refused');
is(check(JwtTest::token(alg => 'HS256', secret => $secret,
			raw_claims => '{"role":"r","nested":{"role":"postgres","exp":1}}')),
	'r', 'claims nested deeper are not read as the top-level ones');
like(check(JwtTest::token(alg => 'HS256', secret => $secret, raw_claims => '["role","r"]')),
	qr/claims is not a JSON object/, 'claims that are not an object are refused');
like(check(JwtTest::token(alg => 'HS256', secret => $secret, raw_claims => '{"role":"r"')),
	qr/claims is not JSON/, 'claims that are not JSON are refused');
like(check(JwtTest::token(header => { alg => 'HS256', crit => ['exp'] }, sign_as => 'HS256',
			secret => $secret, claims => \%valid)),
	qr/"crit" extensions/, 'a header with crit is refused');

# ---- what is not a signed token ----
like(check(JwtTest::token(alg => 'none', claims => \%valid)),
	qr/algorithm "none" is not accepted/, 'alg none is refused');
like(check(JwtTest::token(header => { typ => 'JWT' }, sign_as => 'HS256', secret => $secret, claims => \%valid)),
	qr/algorithm "" is not accepted/, 'a header without alg is refused');
like(check(JwtTest::token(alg => 'HS512', sign_as => 'HS256', secret => $secret, claims => \%valid)),
	qr/algorithm "HS512" is not accepted/, 'an algorithm not offered is refused');
for my $bad ('abc', 'a.b', 'a.b.c.d', 'a!.b.c', 'eyJ=.e30.')
{
	like(check($bad), qr/not three base64url parts/, "\"$bad\" is not a token");
}
like(check('e30.e30.' . ('A' x 9000)), qr/longer than 8192 bytes/, 'a token too long is refused unread');
like(check(JwtTest::token(alg => 'HS256', secret => $secret, raw_header => '[1]', claims => \%valid)),
	qr/header is not a JSON object/, 'a header that is no object is refused');

# ---- RS256 and EdDSA under the public key file ----
is(check(JwtTest::token(alg => 'RS256', key => $rsa_key, claims => \%valid)),
	'app_user', 'RS256 under jwt_public_key_file: the role claim');
like(check(JwtTest::token(alg => 'RS256', key => $other_key, claims => \%valid)),
	qr/signature does not verify/, 'RS256 by another key is refused');
{
	# the classic confusion: the RSA public key's PEM used as an HMAC secret
	my $pem = slurp_file($rsa_pub);
	like(check(JwtTest::token(alg => 'HS256', secret => $pem, claims => \%valid)),
		qr/signature does not verify/, 'HS256 keyed with the RSA public key is refused');
}
like(check(JwtTest::token(alg => 'EdDSA', key => $ed_key, claims => \%valid)),
	qr/signed with EdDSA, which the key in scuttlebutt.jwt_public_key_file does not verify/,
	'EdDSA under an RSA key file is refused');
configure('jwt_public_key_file', $ed_pub);
is(check(JwtTest::token(alg => 'EdDSA', key => $ed_key, claims => \%valid)),
	'app_user', 'EdDSA under an Ed25519 key file: the role claim');
like(check(JwtTest::token(alg => 'RS256', key => $rsa_key, claims => \%valid)),
	qr/does not verify/, 'RS256 under an Ed25519 key file is refused');

# a key file that cannot be used is refused at reload, the one in use kept
$node->append_conf('postgresql.conf', "scuttlebutt.jwt_public_key_file = '$tmp/missing.pub'\n");
my $log_offset = -s $node->logfile;
$node->reload;
$node->wait_for_log(qr/could not open "\Q$tmp\E\/missing\.pub"/, $log_offset);
is($node->safe_psql('postgres', 'SHOW scuttlebutt.jwt_public_key_file'), $ed_pub,
	'a missing key file is refused at reload, the one in use kept');
configure('jwt_public_key_file', $ed_pub);

# ---- the audience ----
configure('jwt_audience', 'sync.example');
like(check(JwtTest::token(alg => 'HS256', secret => $secret, claims => \%valid)),
	qr/audience \("aud"\) does not name "sync.example"/, 'with jwt_audience, a token without aud is refused');
like(check(JwtTest::token(alg => 'HS256', secret => $secret, claims => { %valid, aud => 'other' })),
	qr/does not name "sync.example"/, 'another audience is refused');
is(check(JwtTest::token(alg => 'HS256', secret => $secret, claims => { %valid, aud => 'sync.example' })),
	'app_user', 'aud naming the audience passes');
is(check(JwtTest::token(alg => 'HS256', secret => $secret, claims => { %valid, aud => [ 'x', 'sync.example' ] })),
	'app_user', 'aud as an array naming the audience passes');
like(check(JwtTest::token(alg => 'HS256', secret => $secret, claims => { %valid, aud => [ 1 ] })),
	qr/"aud" is not a string or an array of strings/, 'aud of numbers is refused');
configure('jwt_audience', '');

# ---- the secret ----
$node->append_conf('postgresql.conf', "scuttlebutt.jwt_secret = 'short'\n");
$log_offset = -s $node->logfile;
$node->reload;
$node->wait_for_log(qr/An HS256 secret must be at least 32 bytes long/, $log_offset);
is(check(JwtTest::token(alg => 'HS256', secret => $secret, claims => \%valid)),
	'app_user', 'a short secret is refused at reload, the one in use kept');
configure('jwt_secret', '');
like(check(JwtTest::token(alg => 'HS256', secret => $secret, claims => \%valid)),
	qr/signed with HS256 and scuttlebutt.jwt_secret is not set/, 'without a secret HS256 is refused');

# ---- who may see and call ----
$node->safe_psql('postgres', 'CREATE ROLE plain LOGIN; GRANT USAGE ON SCHEMA scuttlebutt TO plain');
like(check('a.b.c', extra_params => [ '-U', 'plain' ]),
	qr/permission denied for function check_token/, 'check_token is not executable by PUBLIC');
my (undef, undef, $err) = $node->psql('postgres', 'SHOW scuttlebutt.jwt_secret',
	extra_params => [ '-U', 'plain' ]);
like($err, qr/permission denied|must be superuser|pg_read_all_settings/,
	'jwt_secret is hidden from roles that are not superuser');

$node->stop;
done_testing();
