# Connection slots: incoming stream connections are capped per remote
# address and in all; dialed peers never compete with them for slots.
#
# A listens on 127.0.0.1 and 127.0.0.2 with max_connections 5 and
# max_connections_per_address 3:
#  - three idle clients from 127.0.0.1 are held, a fourth is closed at once
#    ("too many connections from this address", counted in
#    connection_errors, a WARNING); one from 127.0.0.2 is still accepted;
#  - with 5 held, one more from anywhere is closed ("too many
#    connections");
#  - while every incoming slot is taken, a libpq peer and a dialed stream
#    peer of A still connect and sync with B;
#  - a few hundred idle clients that completed the handshake cost the
#    worker little memory each (its RssAnon; test/bench/idle_connections.sh
#    measures thousands).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use IO::Socket::INET;
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use StreamTest;
use Test::More;
use Time::HiRes qw(time usleep);

my $pa = PostgreSQL::Test::Cluster::get_free_port();
my $na = ScuttlebuttTest::new_node('a',
	conf => "scuttlebutt.listen_addresses = '127.0.0.1,127.0.0.2'\n"
	  . "scuttlebutt.port = $pa\n"
	  . "scuttlebutt.reconnect_min = 50ms\n"
	  . "scuttlebutt.reconnect_max = 500ms\n"
	  . "scuttlebutt.max_connections = 5\n"
	  . "scuttlebutt.max_connections_per_address = 3\n");
$na->wait_for_log(qr/listening for stream peers on "127\.0\.0\.1,127\.0\.0\.2" port $pa/);
my $nb = LibpqTest::new_node('b', listen => 1);
sub qa { StreamTest::q1($na, @_) }
sub qb { StreamTest::q1($nb, @_) }

for my $n ($na, $nb)
{
	StreamTest::q1($n, q{
		SELECT scuttlebutt.create_model('m');
		SELECT scuttlebutt.create_model('via_libpq');
		SELECT scuttlebutt.create_model('via_stream');
	});
}
qa(q{SELECT scuttlebutt.set('m', 'a', '1')});
$na->psql('postgres', 'SHOW scuttlebutt.max_connections_per_address', stdout => \my $per_address);
is($per_address, '3', 'max_connections_per_address is 3');

# A raw client of A's listener from the local address $from
sub client
{
	my ($from, $to) = @_;
	my $sock = IO::Socket::INET->new(
		LocalAddr => $from,
		PeerAddr => $to // '127.0.0.1',
		PeerPort => $pa,
		Proto => 'tcp') or die "cannot connect from $from: $!";
	binmode($sock);
	return bless { sock => $sock, addr => "$from:" . $sock->sockport, buf => '', eof => 0, err => undef },
	  'StreamTest::Raw';
}

sub incoming
{
	return qa(q{SELECT count(*) FROM scuttlebutt.peer_status WHERE direction = 'in'});
}

my @held;
for my $i (1 .. 3)
{
	my $c = client('127.0.0.1');
	my ($h) = $c->handshake('m', id => "ONE$i");
	ok(defined $h, "client $i from 127.0.0.1 is served");
	push @held, $c;
}
my $off = -s $na->logfile;
my $fourth = client('127.0.0.1');
$fourth->send_line('{"id":"ONE4","clock":{},"meta":"m"}');
ok($fourth->wait_closed(20), 'a fourth client from 127.0.0.1 is closed at once');
is(StreamTest::error_count($na, 'too many connections from this address'), 1,
	'connection_errors counts it as too many connections from this address');
ok(defined StreamTest::find_log($na,
		qr/WARNING:\s+scuttlebutt: closing connection from 127\.0\.0\.1:\d+: too many connections from this address/,
		$off),
	'a WARNING names the address and the reason');
like(qa(q{SELECT last_peer FROM scuttlebutt.connection_errors WHERE reason = 'too many connections from this address'}),
	qr/^127\.0\.0\.1:\d+$/, 'with the address as last_peer');

for my $i (1 .. 2)
{
	my $c = client('127.0.0.2', '127.0.0.2');
	my ($h) = $c->handshake('m', id => "TWO$i");
	ok(defined $h, "client $i from 127.0.0.2 is served meanwhile");
	push @held, $c;
}
is(incoming(), 5, 'A holds 5 incoming connections (max_connections)');
my $sixth = client('127.0.0.3');
ok($sixth->wait_closed(20), 'one more, from a third address, is closed at once');
is(StreamTest::error_count($na, 'too many connections'), 1, 'counted as too many connections');
is(incoming(), 5, 'A still holds the 5');

# ---- dialed peers while every incoming slot is taken ----
my $libpq_peer = LibpqTest::add_peer($na, 'via_libpq', LibpqTest::conninfo($nb));
my $stream_peer = qa("SELECT scuttlebutt.add_stream_peer('via_stream', '127.0.0.1', "
	  . LibpqTest::stream_port($nb) . ')');
qa(q{SELECT scuttlebutt.set('via_libpq', 'from_a', '1'); SELECT scuttlebutt.set('via_stream', 'from_a', '2')});
qb(q{SELECT scuttlebutt.set('via_libpq', 'from_b', '3'); SELECT scuttlebutt.set('via_stream', 'from_b', '4')});
is(qa(q{SELECT scuttlebutt.wait_for_sync('via_libpq', '60s')}), 't',
	'a libpq peer of A syncs while A\'s incoming slots are full');
is(qa(q{SELECT scuttlebutt.wait_for_sync('via_stream', '60s')}), 't',
	'a dialed stream peer of A syncs too');
ok(StreamTest::poll($nb, q{SELECT scuttlebutt.get('via_libpq', 'from_a') = '1' AND scuttlebutt.get('via_stream', 'from_a') = '2'}, 30),
	'B got A\'s updates over both');
# (B's writes may come after A's sessions synced: live, a moment later)
ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('via_libpq', 'from_b') = '3' AND scuttlebutt.get('via_stream', 'from_b') = '4'}, 30),
	'A got B\'s over both');
is(incoming(), 5, 'the 5 incoming connections are still held');
my $seventh = client('127.0.0.1');
ok($seventh->wait_closed(20), 'and a new incoming one is still refused');
$_->close_fin for @held;
ok(StreamTest::poll($na, q{SELECT count(*) = 0 FROM scuttlebutt.peer_status WHERE direction = 'in'}, 30),
	'the idle clients gone, A holds no incoming connection');
my $again = client('127.0.0.1');
ok(defined(($again->handshake('m', id => 'AGAIN'))[0]), 'a new client from 127.0.0.1 is served again');
$again->close_fin;

# ---- memory per idle connection ----
my $n = 300;
$na->append_conf('postgresql.conf',
	"scuttlebutt.max_connections = 1000\nscuttlebutt.max_connections_per_address = 1000\n");
ok(ScuttlebuttTest::reload_worker($na, 30), 'reloaded (the worker took it)');
usleep(500_000);

sub rss_anon_kb { return StreamTest::rss_anon_kb(StreamTest::worker_pid($na)) }

my $before = rss_anon_kb();
my @idle;
my $served = 0;
for my $i (1 .. $n)
{
	my $c = client('127.0.0.1');
	my ($h) = $c->handshake('m', id => "IDLE$i");
	$served++ if defined $h;
	push @idle, $c;
}
is($served, $n, "$n idle clients are all served");
is(incoming(), $n, "A holds $n incoming connections");
my $after = rss_anon_kb();
my $per_conn = ($after - $before) / $n;
note(sprintf('worker RssAnon %d kB before, %d kB with %d idle clients: %.1f kB each',
		$before, $after, $n, $per_conn));
cmp_ok($per_conn, '<', 64, 'an idle connection costs the worker less than 64 kB');
$_->close_fin for @idle;
ok(StreamTest::poll($na, q{SELECT count(*) = 0 FROM scuttlebutt.peer_status WHERE direction = 'in'}, 60),
	'all of them closed');

done_testing();
