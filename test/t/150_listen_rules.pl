# Who may connect on the stream port: scuttlebutt.listen_rules.
#
# One node listens on 127.0.0.1 (and ::1 when this machine has it).  Raw
# clients send a header naming a model (with a token in meta when the
# rule asks for one) and see either the worker's header (accepted) or the
# connection closed before any byte (refused); the log says why, and
# connection_errors counts each reason.  Checked: the two default
# loopback rules; only superusers may write the table; each method
# (trust, reject, token, cert on a connection without TLS); rule order;
# model-specific rules; address matching (127.0.0.1 against ::1); no
# matching rule; changes applied without a restart; peer_status's role
# and method; an unmodified JavaScript client with a token in its meta.
#
# Tests that need the real token verifier (src/jwt.c checking
# scuttlebutt.jwt_secret) are labelled "[jwt]"; while the verifier refuses
# every token ("tokens are not configured" in the log) they run as TODO.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use IO::Socket::IP;
use JSON::PP;
use JwtTest;
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use StreamTest;
use Test::More;

# An HS256 token under $secret (alg: what its header says)
sub hs256
{
	my ($secret, $claims, %o) = @_;
	return JwtTest::token(alg => $o{alg} // 'HS256', secret => $secret, claims => $claims);
}

# Whether the log since $offset shows that no token can be checked yet
sub verifier_missing
{
	my ($node, $offset) = @_;
	return slurp_file($node->logfile, $offset) =~ /tokens are not configured/ ? 1 : 0;
}

my $secret = 'listen-rules-test-secret-of-more-than-32-bytes';
my $ipv6 = LibpqTest::ipv6_loopback();
my $addresses = $ipv6 ? '127.0.0.1,::1' : '127.0.0.1';
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $node = ScuttlebuttTest::new_node('rules',
	conf => "scuttlebutt.listen_addresses = '$addresses'\n"
	  . "scuttlebutt.port = $port\n"
	  . "scuttlebutt.jwt_secret = '$secret'\n");
$node->wait_for_log(qr/listening for stream peers on "\Q$addresses\E" port $port/);
sub q1 { StreamTest::q1($node, @_) }

my $owner = q1('SELECT current_user');
q1(q{CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; CREATE ROLE readers;
	GRANT readers TO bob});
for my $m (qw(m1 m2 m3 m4 m5 mc mt mg mj))
{
	q1(qq{SELECT scuttlebutt.create_model('$m')});
	q1(qq{SELECT scuttlebutt.set('$m', 'k', '1')});
	for my $r (qw(alice bob))
	{
		q1(qq{SELECT scuttlebutt.grant('$m', '$r', 'read'); SELECT scuttlebutt.grant('$m', '$r', 'write')});
	}
}

# ---- the table out of the box ----

is(q1(q{SELECT string_agg(format('%s %s %s %s %s', position, address, coalesce(model, '*'), method, role), '; ' ORDER BY position)
	FROM scuttlebutt.listen_rules}),
	"100 127.0.0.0/8 * trust $owner; 101 ::1/128 * trust $owner",
	'after CREATE EXTENSION: loopback clients are trusted as the extension owner');
my ($rc, $out, $err) = $node->psql('postgres',
	q{INSERT INTO scuttlebutt.listen_rules VALUES (1, NULL, NULL, 'trust', 'alice')},
	extra_params => [ '-U', 'alice' ]);
like($err, qr/permission denied for table listen_rules/, 'a role that is not superuser may not add rules');
($rc, $out, $err) = $node->psql('postgres', q{SELECT * FROM scuttlebutt.listen_rules},
	extra_params => [ '-U', 'alice' ]);
like($err, qr/permission denied for table listen_rules/, '... nor read them');
($rc, $out, $err) = $node->psql('postgres', q{INSERT INTO scuttlebutt.listen_rules VALUES (1, NULL, NULL, 'trust', NULL)});
like($err, qr/listen_rules_trust_role_check/, 'a trust rule needs a role');
($rc, $out, $err) = $node->psql('postgres', q{INSERT INTO scuttlebutt.listen_rules VALUES (1, NULL, NULL, 'password', 'alice')});
like($err, qr/listen_rules_method_check/, 'methods are trust, cert, token and reject');

# ---- clients ----

my $nclients = 0;

# A raw client on 127.0.0.1 (or ::1 with v6 => 1) that sends a header for
# $model (meta an object with the token when one is given).  Returns the
# client and the first line the worker sent (undef: closed without one).
sub attempt
{
	my ($model, %o) = @_;
	my $raw;
	if ($o{v6})
	{
		my $sock = IO::Socket::IP->new(PeerHost => '::1', PeerPort => $port, Proto => 'tcp')
		  or die "cannot connect to [::1]:$port: $!";
		$raw = bless { sock => $sock, addr => "[::1]:" . $sock->sockport, buf => '', eof => 0 },
		  'StreamTest::Raw';
	}
	else
	{
		$raw = StreamTest::Raw->new($port);
	}
	my $meta = exists $o{token}
	  ? JSON::PP->new->canonical->encode({ model => $model, token => $o{token} })
	  : qq("$model");
	$nclients++;
	$raw->send_line(qq({"id":"RAW-$nclients","clock":{},"meta":$meta}));
	my $line = $raw->read_line(30);
	return ($raw, $line);
}

# Whether the client is let in: it gets the worker's header
sub accepted
{
	my ($label, $model, %o) = @_;
	my ($raw, $line) = attempt($model, %o);
	my $ok = ok(defined $line && $line =~ /^\{"id":/, "$label: accepted (the worker's header)");
	$raw->close_fin;
	return $ok;
}

# Whether the client is refused for $reason: closed with no byte sent,
# logged with $detail, counted in connection_errors
sub refused
{
	my ($label, $model, $reason, $detail, %o) = @_;
	my $before = StreamTest::error_count($node, $reason);
	my $offset = -s $node->logfile;
	my ($raw, $line) = attempt($model, %o);
	# a test expected to fail (TODO) need not wait long for its log line
	my $wait = $TODO ? 3 : 30;
	ok(!defined $line && $raw->wait_closed(30), "$label: closed without a byte from the worker")
	  or diag('got: ' . ($line // '(nothing)'));
	my $addr = quotemeta($raw->addr);
	ok(StreamTest::find_log($node,
			qr/closing connection from $addr: \Q$reason\E\n.*DETAIL:  [^\n]*$detail/, $offset, $wait),
		"$label: logged as \"$reason\" with the reason");
	ok(StreamTest::poll($node,
			"SELECT count > $before FROM scuttlebutt.connection_errors WHERE reason = '$reason'", $wait),
		"$label: counted in connection_errors as \"$reason\"");
}

# The peer_status row of a connection held open: role/method
sub role_method_of
{
	my ($raw) = @_;
	my $addr = $raw->addr;
	StreamTest::poll($node,
		"SELECT count(*) = 1 FROM scuttlebutt.peer_status WHERE direction = 'in' AND remote_addr = '$addr' AND role IS NOT NULL");
	return q1("SELECT role || '/' || method FROM scuttlebutt.peer_status WHERE direction = 'in' AND remote_addr = '$addr'");
}

# ---- the defaults ----

{
	my ($raw, $line) = attempt('m1');
	ok(defined $line && $line =~ /^\{"id":/, 'default rules: a loopback client is accepted');
	is(role_method_of($raw), "$owner/trust", 'peer_status: it acts as the extension owner, by trust');
	$raw->close_fin;
}
SKIP:
{
	skip 'no IPv6 loopback here', 3 unless $ipv6;
	my ($raw, $line) = attempt('m1', v6 => 1);
	ok(defined $line && $line =~ /^\{"id":/, 'default rules: a client on ::1 is accepted');
	like($raw->addr, qr/^\[::1\]/, 'the client is on ::1');
	is(role_method_of($raw), "$owner/trust", 'peer_status: by the ::1 rule, as the extension owner');
	$raw->close_fin;
}

# ---- reject, order, models, addresses ----

q1(q{INSERT INTO scuttlebutt.listen_rules VALUES (10, '127.0.0.1/32', 'm2', 'reject', NULL)});
refused('reject rule for m2', 'm2', 'rejected by rule', 'Rule 10 of scuttlebutt.listen_rules rejects');
accepted('the reject rule names m2 only: m1', 'm1');

q1(q{INSERT INTO scuttlebutt.listen_rules VALUES (5, NULL, 'm2', 'trust', 'alice')});
{
	my ($raw, $line) = attempt('m2');
	ok(defined $line && $line =~ /^\{"id":/, 'a trust rule at a lower position wins over the reject rule');
	is(role_method_of($raw), 'alice/trust', 'peer_status: it acts as alice, by trust');
	$raw->close_fin;
}
q1(q{DELETE FROM scuttlebutt.listen_rules WHERE position = 5});
refused('the trust rule deleted: the reject rule again, with no restart', 'm2', 'rejected by rule', 'Rule 10');
q1(q{UPDATE scuttlebutt.listen_rules SET method = 'trust', role = 'bob' WHERE position = 10});
{
	my ($raw, $line) = attempt('m2');
	ok(defined $line, 'the reject rule changed to trust bob: accepted, with no restart');
	is(role_method_of($raw), 'bob/trust', 'peer_status: it acts as bob');
	$raw->close_fin;
}

# address NULL is any address
q1(q{INSERT INTO scuttlebutt.listen_rules VALUES (3, NULL, 'm3', 'reject', NULL)});
refused('a rule without an address matches 127.0.0.1', 'm3', 'rejected by rule', 'Rule 3');
# an address that is not ours does not match
q1(q{INSERT INTO scuttlebutt.listen_rules VALUES (1, '127.0.0.2/32', NULL, 'reject', NULL)});
accepted('a rule for 127.0.0.2 leaves 127.0.0.1 alone', 'm1');
SKIP:
{
	skip 'no IPv6 loopback here', 6 unless $ipv6;
	refused('a rule without an address matches ::1', 'm3', 'rejected by rule', 'Rule 3', v6 => 1);
	q1(q{INSERT INTO scuttlebutt.listen_rules VALUES (2, '::1/128', 'm1', 'reject', NULL)});
	refused('a rule for ::1/128 refuses a client on ::1', 'm1', 'rejected by rule', 'Rule 2', v6 => 1);
	accepted('... and leaves 127.0.0.1 alone', 'm1');
	q1(q{DELETE FROM scuttlebutt.listen_rules WHERE position = 2});
}

# no rule matches
q1(q{UPDATE scuttlebutt.listen_rules SET model = 'm1' WHERE position IN (100, 101)});
refused('no rule matches m4', 'm4', 'no matching rule', 'No rule of scuttlebutt.listen_rules matches');
q1(q{UPDATE scuttlebutt.listen_rules SET model = NULL WHERE position IN (100, 101)});
accepted('the default rules back: m4', 'm4');

# a trust rule for a role that does not exist
q1(q{INSERT INTO scuttlebutt.listen_rules VALUES (4, NULL, 'm5', 'trust', 'nosuchrole')});
refused('trust as a role that does not exist', 'm5', 'authentication failed', 'names role "nosuchrole", which does not exist');

# cert: this connection has no TLS
q1(q{INSERT INTO scuttlebutt.listen_rules VALUES (6, NULL, 'mc', 'cert', NULL)});
refused('a cert rule on a connection without TLS', 'mc', 'authentication failed', 'needs a verified client certificate; the connection is not TLS');

# ---- tokens ----

q1(q{INSERT INTO scuttlebutt.listen_rules VALUES (7, NULL, 'mt', 'token', NULL),
	(8, NULL, 'mg', 'token', 'readers'), (9, NULL, 'mj', 'token', NULL)});
my $now = time;
refused('a token rule, no token', 'mt', 'authentication failed', 'needs a token in the header.s meta.token; there is none');
refused('a forged token (another secret)', 'mt', 'authentication failed', 'invalid token',
	token => hs256('not-the-secret', { role => 'alice', exp => $now + 600 }));
refused('an expired token', 'mt', 'authentication failed', 'invalid token',
	token => hs256($secret, { role => 'alice', exp => $now - 600 }));
refused('a token not valid yet (nbf)', 'mt', 'authentication failed', 'invalid token',
	token => hs256($secret, { role => 'alice', nbf => $now + 600, exp => $now + 1200 }));
refused('a token signed with "none"', 'mt', 'authentication failed', 'invalid token',
	token => do { my $t = hs256($secret, { role => 'alice', exp => $now + 600 }, alg => 'none'); $t =~ s/[^.]*$//; $t });
refused('a token longer than 8192 bytes', 'mt', 'authentication failed', 'is longer than 8192 bytes',
	token => 'x' x 9000);

my $offset = -s $node->logfile;
my $good = hs256($secret, { role => 'alice', exp => $now + 600 });
my ($graw, $gline) = attempt('mt', token => $good);
my $stub = verifier_missing($node, $offset);
diag('the token verifier refuses every token: the [jwt] tests run as TODO') if $stub;
TODO:
{
	local $TODO = 'needs the token verifier (src/jwt.c)' if $stub;
	ok(defined $gline && $gline =~ /^\{"id":/, '[jwt] a valid token for alice: accepted');
	is(defined $gline ? role_method_of($graw) : undef, 'alice/token', '[jwt] peer_status: alice, by token');
	$graw->close_fin;
	refused('[jwt] a valid token naming a role that does not exist', 'mt', 'authentication failed',
		'the token.s role "nosuchrole" does not exist',
		token => hs256($secret, { role => 'nosuchrole', exp => $now + 600 }));
	refused('[jwt] a rule for members of readers: alice is not one', 'mg', 'permission denied',
		'admits members of role "readers" only',
		token => hs256($secret, { role => 'alice', exp => $now + 600 }));
	accepted('[jwt] a rule for members of readers: bob is one', 'mg',
		token => hs256($secret, { role => 'bob', exp => $now + 600 }));
}

# ---- an unmodified JavaScript client with a token in its meta ----

SKIP:
{
	skip 'node.js or test/node_modules missing', 1 unless ScuttlebuttTest::node_available();
	$ENV{PG_TEST_TIMEOUT_DEFAULT} = $PostgreSQL::Test::Utils::timeout_default;
	my $token = hs256($secret, { role => 'alice', exp => time + 600 });
	# a trust rule: the token in meta changes nothing, the model is read
	ScuttlebuttTest::run_interop($node, 'stream_token.js', $port, 'm1', $token,
		'accept', $owner, 'trust');
	ScuttlebuttTest::run_interop($node, 'stream_token.js', $port, 'mj',
		hs256('forged', { role => 'alice', exp => time + 600 }), 'refuse');
	TODO:
	{
		local $TODO = 'needs the token verifier (src/jwt.c)' if $stub;
		ScuttlebuttTest::run_interop($node, 'stream_token.js', $port, 'mj', $token,
			'accept', 'alice', 'token');
	}
}

# ---- pg_dump keeps the rules ----

# a changed default is dumped too, and replaces the default at a restore
q1(q{UPDATE scuttlebutt.listen_rules SET method = 'reject', role = NULL WHERE position = 101});
my $rules = q{SELECT string_agg(format('%s %s %s %s %s', position, address, model, method, role), '; ' ORDER BY position)
	FROM scuttlebutt.listen_rules};
my $before = q1($rules);
my $dump = PostgreSQL::Test::Utils::tempdir() . '/rules.sql';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('postgres'), '-f', $dump ], 'pg_dump of the database');
q1('CREATE DATABASE restored');
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored'), '-f', $dump ],
	'the dump restores without an error');
is($node->safe_psql('restored', $rules), $before, 'the restored database has the same rules');

$node->stop;
done_testing();
