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
# Whether a signature was split shows in the signing process: it runs the
# helper thread (/proc/PID/task), and a split that failed (its fault check
# included) says so at DEBUG1 before OpenSSL signs.  Keys of 1024, 3072 and
# 4096 bits and one whose first prime is the smaller are split too; one
# whose primes differ in size, like a multi-prime key, is OpenSSL's alone
# (its constant-time CRT needs primes of one size), and an RSA-PSS key is
# refused.  The odd keys are built from primes of "openssl prime" with the
# RSAPrivateKey written by "openssl asn1parse -genconf".
# The JavaScript interop (142, 144, 146) verifies these signatures with
# the reference package.
use strict;
use warnings;

use Digest::SHA qw(sha1_base64);
use FindBin;
use lib "$FindBin::RealBin/../lib";
use Math::BigInt;
use Time::HiRes;
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

# a two-prime RSA key (RSAPrivateKey, PKCS#1 PEM) of a prime of $pbits and
# one of $qbits bits, e = 65537; $order 'p<q' puts the smaller prime first;
# %broken sets some of its values (n e d p q dp dq qinv) to others
sub make_crt_key
{
	my ($name, $pbits, $qbits, $order, %broken) = @_;
	my $e = Math::BigInt->new(65537);
	my $prime = sub {
		my ($bits) = @_;
		for (;;)
		{
			my ($x) = run_command([ 'openssl', 'prime', '-generate', '-bits', $bits ]);
			chomp $x;
			my $p = Math::BigInt->new($x);
			return $p if Math::BigInt::bgcd($p - 1, $e) == 1;
		}
	};
	my ($p, $q) = ($prime->($pbits), $prime->($qbits));
	($p, $q) = ($q, $p) if ($order eq 'p<q') == ($p > $q);
	my $d = $e->copy->bmodinv(($p - 1) * ($q - 1));
	my %v = (
		n => $p * $q, e => $e, d => $d, p => $p, q => $q,
		dp => $d % ($p - 1), dq => $d % ($q - 1), qinv => $q->copy->bmodinv($p));
	$v{$_} = $broken{$_}->(\%v) for keys %broken;
	open(my $fh, '>', "$tmp/$name.cnf") or die;
	print $fh "asn1=SEQUENCE:key\n[key]\nversion=INTEGER:0\n";
	print $fh "$_=INTEGER:" . $v{$_}->as_hex . "\n" for qw(n e d p q dp dq qinv);
	close $fh;
	system_or_bail('openssl', 'asn1parse', '-genconf', "$tmp/$name.cnf", '-out', "$tmp/$name.der");
	system_or_bail('openssl', 'rsa', '-inform', 'DER', '-in', "$tmp/$name.der", '-traditional',
		'-out', "$tmp/$name.pem");
	chmod 0600, "$tmp/$name.pem";
	return "$tmp/$name.pem";
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

# The threads of process $pid (1 if /proc does not tell)
sub threads_of
{
	my ($pid) = @_;
	opendir(my $dir, "/proc/$pid/task") or return 1;
	my $n = grep { /^\d+$/ } readdir($dir);
	closedir($dir);
	return $n;
}

# $n set()s in a new session with messages down to DEBUG1: the session's
# threads and whether a split signature failed
sub sign_in_session
{
	my ($n) = @_;
	my $s = $node->background_psql('postgres');
	my $pid = $s->query_safe('SELECT pg_backend_pid()');
	$s->query_safe('SET client_min_messages = debug1');
	$s->query(
		"SELECT count(scuttlebutt.set('m', 'k' || i, to_jsonb(i))) FROM generate_series(1, $n) i");
	my $failed = $s->{stderr} =~ /OpenSSL signs alone/ ? 'a split failed' : 'none failed';
	my $threads = threads_of($pid);
	$s->quit;
	return ($threads, $failed);
}

# the node signs with $key from now on
sub use_key
{
	my ($key) = @_;
	my $key_id = key_id($key);
	$node->append_conf('postgresql.conf', "scuttlebutt.signing_key_file = '$key'\n");
	$node->reload;
	$node->poll_query_until('postgres', "SELECT scuttlebutt.node_id() = '$key_id'")
	  or die "the node does not take $key";
	return $key_id;
}

my ($threads, $failed) = sign_in_session(40);
is("$threads $failed", '2 none failed', 'a session splits its signatures on its helper thread');

# The CPU time (clock ticks) thread $tid of process $pid has used
sub cpu_ticks
{
	my ($pid, $tid) = @_;
	open(my $fh, '<', "/proc/$pid/task/$tid/stat") or die "no thread $tid in $pid: $!";
	my @f = split / /, (<$fh> =~ s/^.*\) //r);
	close $fh;
	return $f[11] + $f[12];    # utime + stime
}

# After signatures in close succession the helper spins for the next one
# for at most a millisecond, then sleeps: the helper of a session gone idle
# uses no CPU (one that spun on would use a core, 100 ticks a second)
{
	my $s = $node->background_psql('postgres');
	my $pid = $s->query_safe('SELECT pg_backend_pid()');
	$s->query_safe(
		q{SELECT count(scuttlebutt.set('m', 'k' || i, to_jsonb(i))) FROM generate_series(1, 200) i});
	opendir(my $dir, "/proc/$pid/task") or die;
	my ($helper) = grep { /^\d+$/ && $_ != $pid } readdir($dir);
	closedir($dir);
	ok(defined $helper, 'the signing session runs its helper thread');
	Time::HiRes::sleep(0.2);
	my $before = cpu_ticks($pid, $helper);
	Time::HiRes::sleep(1.5);
	my $used = cpu_ticks($pid, $helper) - $before;
	cmp_ok($used, '<=', 5, 'the helper of an idle session sleeps (CPU ticks in 1.5 s)');
	$s->quit;
}

# a three-prime key: OpenSSL signs alone
my $id3 = use_key($rsa3);
($threads, $failed) = sign_in_session(40);
is($threads, 1, 'a three-prime key is not split');
($n, $bad) = check_signatures($node, $rsa3, $id3);
is("$n $bad", '40 0', 'a three-prime key signs every write, as openssl does');

# more two-prime keys: [name, key, threads of the signing session]
my @keys = (
	[ '1024 bits', make_key('rsa1024', 'genrsa', '-traditional', '1024'), 2 ],
	[ '3072 bits', make_key('rsa3072', 'genrsa', '-traditional', '3072'), 2 ],
	[ '4096 bits', make_key('rsa4096', 'genrsa', '-traditional', '4096'), 2 ],
	[ 'the smaller prime first', make_crt_key('p_lt_q', 1024, 1024, 'p<q'), 2 ],
	[ 'primes of 1100 and 948 bits', make_crt_key('uneven', 1100, 948, 'p>q'), 1 ],
	[ 'primes of 948 and 1100 bits', make_crt_key('uneven2', 1100, 948, 'p<q'), 1 ]);
for my $k (@keys)
{
	my ($name, $key, $want_threads) = @$k;
	my $key_id = use_key($key);
	($threads, $failed) = sign_in_session(40);
	($n, $bad) = check_signatures($node, $key, $key_id);
	is("$n $bad $threads $failed", "40 0 $want_threads none failed",
		"RSA key, $name: every signature is openssl's, "
		  . ($want_threads == 2 ? 'split' : 'by OpenSSL alone'));
}

# an RSA-PSS key is refused: the node keeps signing with the key it has
my $pss = make_key('pss', 'genpkey', '-algorithm', 'RSA-PSS', '-pkeyopt', 'rsa_keygen_bits:2048');
my $before = $node->safe_psql('postgres', 'SELECT scuttlebutt.node_id()');
my $log_offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "scuttlebutt.signing_key_file = '$pss'\n");
$node->reload;
$node->wait_for_log(qr/neither RSA nor Ed25519/, $log_offset);
is($node->safe_psql('postgres', 'SELECT scuttlebutt.node_id()'), $before,
	'an RSA-PSS key is refused, the key before it kept');

# keys whose parts disagree are refused when loaded, not at every write:
# zeroed CRT values (OpenSSL will not sign), a wrong private exponent and
# CRT exponent (OpenSSL signs, the signature does not verify)
my %zero = map { my $k = $_; ($k => sub { Math::BigInt->new(0) }) } qw(p q dp dq qinv);
my %wrong = (d => sub { $_[0]{d} + 2 }, dp => sub { $_[0]{dp} + 2 });
for my $k ([ 'zeroed CRT values', make_crt_key('zero_crt', 1024, 1024, 'p>q', %zero) ],
	[ 'a wrong private exponent', make_crt_key('wrong_d', 1024, 1024, 'p>q', %wrong) ])
{
	my ($what, $key) = @$k;
	$log_offset = -s $node->logfile;
	$node->append_conf('postgresql.conf', "scuttlebutt.signing_key_file = '$key'\n");
	$node->reload;
	$node->wait_for_log(qr/cannot sign: OpenSSL refused it, or its signature did not verify/, $log_offset);
	is($node->safe_psql('postgres', 'SELECT scuttlebutt.node_id()'), $before,
		"a key with $what is refused at reload, the key before it kept");
}

$node->stop;
done_testing();
