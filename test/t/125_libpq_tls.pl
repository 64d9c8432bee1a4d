# libpq peers over TLS.  The test makes a CA and a server certificate for
# "localhost" with the openssl command line; R (the remote) has ssl = on
# and accepts TCP only with hostssl; D dials it.
#
#  - sslmode=verify-full with the CA as sslrootcert: the peer converges
#    and R sees the sessions encrypted (pg_stat_ssl);
#  - a root certificate of another CA: certificate verification fails,
#    last_error says so, the peer is in backoff;
#  - the right CA but a host name the certificate does not name: last_error
#    says the names do not match;
#  - sslmode=disable: R's pg_hba refuses it (no encryption);
#  none of the failing peers stops the good one from replicating live.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use File::Copy;
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $dir = PostgreSQL::Test::Utils::tempdir();

sub openssl
{
	my (@args) = @_;
	return PostgreSQL::Test::Utils::run_log([ 'openssl', @args ]);
}

# a CA, another CA, and a server certificate for localhost signed by the first
for my $ca (qw(ca other-ca))
{
	ok( openssl('req', '-x509', '-new', '-nodes', '-newkey', 'rsa:2048', '-days', '2',
			'-subj', "/CN=scuttlebutt test $ca", '-keyout', "$dir/$ca.key", '-out', "$dir/$ca.crt",
			'-addext', 'basicConstraints=critical,CA:TRUE',
			'-addext', 'keyUsage=critical,keyCertSign,cRLSign'),
		"openssl: $ca certificate");
}
open my $ext, '>', "$dir/server.ext" or die $!;
print $ext "subjectAltName = DNS:localhost\nbasicConstraints = CA:FALSE\n"
  . "keyUsage = critical, digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n";
close $ext;
ok( openssl('req', '-new', '-nodes', '-newkey', 'rsa:2048', '-subj', '/CN=localhost',
		'-keyout', "$dir/server.key", '-out', "$dir/server.csr"),
	'openssl: server key and request');
ok( openssl('x509', '-req', '-in', "$dir/server.csr", '-CA', "$dir/ca.crt", '-CAkey', "$dir/ca.key",
		'-CAcreateserial', '-days', '2', '-out', "$dir/server.crt", '-extfile', "$dir/server.ext"),
	'openssl: server certificate signed by the CA');

my $nr = LibpqTest::new_node('r');
my $nd = LibpqTest::new_node('d');
sub qr1 { LibpqTest::q1($nr, @_) }
sub qd { LibpqTest::q1($nd, @_) }
my $id_r = qr1('SELECT scuttlebutt.node_id()');

copy("$dir/server.crt", $nr->data_dir . '/server.crt') or die $!;
copy("$dir/server.key", $nr->data_dir . '/server.key') or die $!;
chmod 0600, $nr->data_dir . '/server.key';
$nr->append_conf('postgresql.conf', "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
open my $hba, '>', $nr->data_dir . '/pg_hba.conf' or die $!;
print $hba "local all all trust\nhostssl all all 127.0.0.1/32 trust\n";
close $hba;
$nr->restart;
is(qr1('SHOW ssl'), 'on', 'R: ssl is on');

for my $n ($nr, $nd)
{
	LibpqTest::q1($n, q{
		SELECT scuttlebutt.create_model('tls');
		SELECT scuttlebutt.create_model('bad_root');
		SELECT scuttlebutt.create_model('bad_host');
		SELECT scuttlebutt.create_model('no_tls');
	});
}
qr1(q{SELECT scuttlebutt.set('tls', 'r' || i, to_jsonb(i)) FROM generate_series(1, 3) i;
	  SELECT scuttlebutt.set('bad_root', 'r', '1'); SELECT scuttlebutt.set('bad_host', 'r', '1');
	  SELECT scuttlebutt.set('no_tls', 'r', '1')});
qd(q{SELECT scuttlebutt.set('tls', 'd' || i, to_jsonb(i)) FROM generate_series(1, 2) i});

my $port = $nr->port;
my $base = "port=$port dbname=postgres connect_timeout=10";

# ---- verify-full with the right CA ----
my $good = LibpqTest::add_peer($nd, 'tls', "host=localhost $base sslmode=verify-full sslrootcert=$dir/ca.crt");
is(qd(q{SELECT scuttlebutt.wait_for_sync('tls', '60s')}), 't', 'verify-full: wait_for_sync on D');
ok(LibpqTest::wait_converged('tls', [ $nr, $nd ]), 'verify-full: converged');
is(qr1(q{SELECT string_agg(k, ',' ORDER BY k) FROM scuttlebutt.keys('tls') k}), 'd1,d2,r1,r2,r3',
	'verify-full: R holds both sides\' keys');
my $r = LibpqTest::peer($nd, "peer_id = $good");
is_deeply([ @$r{qw(transport state remote_id)} ], [ 'libpq', 'live', $id_r ], 'verify-full: live, R\'s id');
like($r->{conninfo} // '', qr/sslmode=verify-full/, 'verify-full: the conninfo column shows the sslmode');
my $tls = qr1(q{SELECT count(*) || ' ' || bool_and(s.ssl) || ' ' || min(s.version)
	FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
	WHERE a.backend_type = 'client backend' AND a.client_addr = '127.0.0.1'});
like($tls, qr/^[1-9]\d* true TLSv1\.[23]$/, "R: every session from D is TLS ($tls)");

# ---- failures; the good peer goes on meanwhile ----
my $bad_root = LibpqTest::add_peer($nd, 'bad_root',
	"host=localhost $base sslmode=verify-full sslrootcert=$dir/other-ca.crt");
my $bad_host = LibpqTest::add_peer($nd, 'bad_host',
	"host=127.0.0.1 $base sslmode=verify-full sslrootcert=$dir/ca.crt");
my $no_tls = LibpqTest::add_peer($nd, 'no_tls', "host=127.0.0.1 $base sslmode=disable");

my ($ok, $row) = LibpqTest::wait_peer($nd, "peer_id = $bad_root",
	sub { $_[0]{state} eq 'backoff' && defined $_[0]{last_error} }, 30);
ok($ok, 'another CA: the peer is in backoff with last_error');
like($row->{last_error} // '', qr/certificate verify failed/, 'another CA: last_error says certificate verify failed');

($ok, $row) = LibpqTest::wait_peer($nd, "peer_id = $bad_host",
	sub { $_[0]{state} eq 'backoff' && defined $_[0]{last_error} }, 30);
ok($ok, 'wrong host name: the peer is in backoff with last_error');
like($row->{last_error} // '', qr/does not match host name "127\.0\.0\.1"/,
	'wrong host name: last_error says the certificate does not match the host name');

($ok, $row) = LibpqTest::wait_peer($nd, "peer_id = $no_tls",
	sub { $_[0]{state} eq 'backoff' && defined $_[0]{last_error} }, 30);
ok($ok, 'sslmode=disable: the peer is in backoff with last_error');
like($row->{last_error} // '', qr/no pg_hba\.conf entry.*no encryption/s,
	'sslmode=disable: last_error has R\'s refusal (no pg_hba.conf entry ..., no encryption)');

qr1(q{SELECT scuttlebutt.set('tls', 'live_r', '"during failures"')});
ok(LibpqTest::poll($nd, q{SELECT scuttlebutt.get('tls', 'live_r') = '"during failures"'}, 30),
	'the good peer still pulls live while the others fail');
qd(q{SELECT scuttlebutt.set('tls', 'live_d', '"during failures"')});
ok(LibpqTest::poll($nr, q{SELECT scuttlebutt.get('tls', 'live_d') = '"during failures"'}, 30),
	'the good peer still pushes live while the others fail');
for my $m (qw(bad_root bad_host no_tls))
{
	is(qd("SELECT scuttlebutt.get('$m', 'r')"), '', "$m: nothing replicated");
}
$tls = qr1(q{SELECT count(*) || ' ' || bool_and(s.ssl)
	FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
	WHERE a.backend_type = 'client backend' AND a.client_addr = '127.0.0.1'});
like($tls, qr/^[1-9]\d* true$/, "R: still every session from D is TLS ($tls)");

# ---- fixing one: the right root certificate ----
qd("UPDATE scuttlebutt.peers SET conninfo = 'host=localhost $base sslmode=verify-full sslrootcert=$dir/ca.crt'"
	  . " WHERE id = $bad_root");
is(qd(q{SELECT scuttlebutt.wait_for_sync('bad_root', '60s')}), 't', 'another CA, corrected: wait_for_sync');
is(qd(q{SELECT scuttlebutt.get('bad_root', 'r')}), '1', 'another CA, corrected: R\'s key arrived');

$nd->stop;
$nr->stop;
done_testing();
