# listen_rules' cert method: a client certificate verified against
# scuttlebutt.ssl_ca_file whose Common Name names the role.  The test makes
# a CA and certificates with the openssl command line; S listens with TLS,
# D dials it with a client certificate (or none) per model:
#
#   mc (cert)           CN=alice: acts as alice, by cert, over TLS
#                       CN=nobody (no such role): authentication failed
#                       no certificate: authentication failed
#   mg (cert, readers)  CN=alice, not a member of readers: permission denied
#                       CN=bob, a member: acts as bob
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use StreamTest;
use TestCA;
use Test::More;

my $dir = PostgreSQL::Test::Utils::tempdir();

TestCA::make_ca($dir, 'ca');
sub issue { my ($name, $subject, $san, $usage) = @_; TestCA::issue($dir, $name, $subject, 'ca', $san, $usage, 2) }
issue('server', '/CN=localhost', 'DNS:localhost, IP:127.0.0.1', 'serverAuth');
issue($_, "/CN=$_", undef, 'clientAuth') for qw(alice bob nobody);

my $ns = StreamTest::new_node('s',
	conf => "scuttlebutt.ssl = on\n"
	  . "scuttlebutt.ssl_cert_file = '$dir/server.crt'\n"
	  . "scuttlebutt.ssl_key_file = '$dir/server.key'\n"
	  . "scuttlebutt.ssl_ca_file = '$dir/ca.crt'\n");
my $nd = StreamTest::new_node('d', listen => 0);
my $port = StreamTest::port($ns);
sub qs { StreamTest::q1($ns, @_) }
sub qd { StreamTest::q1($nd, @_) }

qs(q{CREATE ROLE alice; CREATE ROLE bob; CREATE ROLE readers; GRANT readers TO bob});
for my $m (qw(mc mc_nobody mc_none mg mg_bob))
{
	qs(qq{SELECT scuttlebutt.create_model('$m'); SELECT scuttlebutt.set('$m', 'from_s', '1')});
	qs(qq{SELECT scuttlebutt.grant('$m', '$_', 'read'); SELECT scuttlebutt.grant('$m', '$_', 'write')})
	  for qw(alice bob);
	qd(qq{SELECT scuttlebutt.create_model('$m'); SELECT scuttlebutt.set('$m', 'from_d', '1')});
}
qs(q{INSERT INTO scuttlebutt.listen_rules VALUES
	(1, '127.0.0.0/8', 'mc', 'cert', NULL), (2, NULL, 'mc_nobody', 'cert', NULL),
	(3, NULL, 'mc_none', 'cert', NULL), (4, NULL, 'mg', 'cert', 'readers'),
	(5, NULL, 'mg_bob', 'cert', 'readers')});

# D dials S for $model, with the client certificate $cert (or none)
sub dial
{
	my ($model, $cert) = @_;
	my $certs = $cert ? ", sslcert => '$dir/$cert.crt', sslkey => '$dir/$cert.key'" : '';
	return qd("SELECT scuttlebutt.add_stream_peer('$model', 'localhost', $port, tls => true,"
		  . " sslrootcert => '$dir/ca.crt'$certs)");
}

sub refused
{
	my ($label, $model, $cert, $reason, $detail) = @_;
	my $offset = -s $ns->logfile;
	my $peer = dial($model, $cert);
	ok(StreamTest::find_log($ns, qr/closing connection from [^\n]*: \Q$reason\E\n.*DETAIL:  [^\n]*$detail/, $offset),
		"$label: S closes it, \"$reason\", and says why");
	ok(StreamTest::poll($ns, "SELECT count > 0 FROM scuttlebutt.connection_errors WHERE reason = '$reason'"),
		"$label: counted in connection_errors");
	is(qs("SELECT count(*) FROM scuttlebutt.keys('$model') k WHERE k = 'from_d'"), '0',
		"$label: nothing of D reaches S");
	qd("SELECT scuttlebutt.remove_peer($peer)");
}

sub accepted
{
	my ($label, $model, $cert, $role) = @_;
	my $peer = dial($model, $cert);
	ok(StreamTest::wait_converged($model, [ $ns, $nd ]), "$label: S and D converge");
	ok(StreamTest::poll($ns,
			"SELECT role = '$role' AND method = 'cert' AND tls FROM scuttlebutt.peer_status WHERE direction = 'in' AND model = '$model'"),
		"$label: S's peer_status shows $role, by cert, over TLS");
	qd("SELECT scuttlebutt.remove_peer($peer)");
}

accepted('CN=alice', 'mc', 'alice', 'alice');
refused('CN=nobody', 'mc_nobody', 'nobody', 'authentication failed', 'Common Name "nobody" names no role');
refused('no client certificate', 'mc_none', undef, 'authentication failed', 'needs a verified client certificate; the connection presented none');
refused('CN=alice, not a member of readers', 'mg', 'alice', 'permission denied', 'admits members of role "readers" only; "alice" is not one');
accepted('CN=bob, a member of readers', 'mg_bob', 'bob', 'bob');

$ns->stop;
$nd->stop;
done_testing();
