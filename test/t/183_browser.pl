# A real browser: headless Chromium (Debian's chromium package, driven by
# puppeteer-core) loads a page bundled at test time with browserify from
# the unmodified npm packages (scuttlebutt's Model over websocket-stream,
# test/browser), served over HTTP from an origin listed in
# scuttlebutt.websocket_origins (test/interop/browser.js does the
# browser's side):
#
#  - ws: initial sync (SQL's keys in the browser's Model), live edits both
#    ways with SQL, a Node.js peer over TCP seeing the browser's edit
#    through the database (and the other way), the server stopped and
#    started again (the page reconnects and edits made meanwhile on both
#    sides meet), a page of another origin refused, a token that expires
#    (let in, then refused with close code 1008 once expired; the log
#    says why);
#  - wss (after a reload with scuttlebutt.ssl = on): a browser without the
#    test CA fails the TLS handshake; with the CA in its NSS database
#    (certutil, as a user adds one) it syncs over wss.
# Chromium missing fails the test: test/lib/setup.sh installs it.
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

my $chromium = $ENV{SB_CHROMIUM} // '/usr/bin/chromium';
ok(-x $chromium, "$chromium is installed")
  or diag("no $chromium: test/lib/setup.sh installs Debian's chromium package; the checks below fail");
ok(system('certutil -H >/dev/null 2>&1') != -1, 'certutil (libnss3-tools) is installed');

my $dir = PostgreSQL::Test::Utils::tempdir();
TestCA::make_ca($dir, 'ca');
TestCA::issue($dir, 'server', '/CN=localhost', 'ca', 'DNS:localhost, IP:127.0.0.1', 'serverAuth', 2);

my $http = PostgreSQL::Test::Cluster::get_free_port();
my $secret = 'browser-test-secret-of-more-than-32-bytes';
my $node = StreamTest::new_node('browser',
	conf => "scuttlebutt.websocket_origins = 'http://127.0.0.1:$http'\n"
	  . "scuttlebutt.jwt_secret = '$secret'\n"
	  . "scuttlebutt.handshake_timeout = 5s\n");
my $port = StreamTest::port($node);
sub q1 { StreamTest::q1($node, @_) }

q1('CREATE ROLE alice LOGIN');
q1("SELECT scuttlebutt.create_model('mt')");
q1("SELECT scuttlebutt.grant('mt', 'alice', 'read'); SELECT scuttlebutt.grant('mt', 'alice', 'write')");
q1(q{INSERT INTO scuttlebutt.listen_rules VALUES (7, NULL, 'mt', 'token', NULL)});

$ENV{PG_TEST_TIMEOUT_DEFAULT} = $PostgreSQL::Test::Utils::timeout_default;
my $json = ScuttlebuttTest::json_codec();
sub browser
{
	my ($phase, %o) = @_;
	ScuttlebuttTest::run_interop($node, 'browser.js', $phase,
		$json->encode({ listen => $port, http => $http, dir => $dir, %o }));
}

my $log = -s $node->logfile;
browser('ws', datadir => $node->data_dir, logfile => $node->logfile, secret => $secret);
ok(StreamTest::find_log($node, qr/DETAIL:  .*the token has expired/, $log),
	'the log says the expired token was refused because it expired');

# wss: the same listener, TLS only from now on
$node->append_conf('postgresql.conf',
	"scuttlebutt.ssl = on\n"
	  . "scuttlebutt.ssl_cert_file = '$dir/server.crt'\n"
	  . "scuttlebutt.ssl_key_file = '$dir/server.key'\n");
ok(ScuttlebuttTest::reload_worker($node), 'the listener speaks TLS after the reload (the worker took it)');
browser('wss', ca => "$dir/ca.crt");

$node->stop;
done_testing();
