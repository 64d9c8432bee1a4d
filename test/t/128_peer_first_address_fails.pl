# A peer whose first address refuses must still connect, through the next
# address, and sync.  A (dialed) listens for PostgreSQL and for stream
# peers on 127.0.0.1 only; B dials it, one peer at a time, each on a model
# of its own, and nothing else changes B's peers while a case waits (no
# other peer is added or removed, B has no listener): the peer must
# connect by itself, not because another change rebuilt B's wait set.
#
#  (a)  libpq, host=127.0.0.1,127.0.0.1 port=<closed>,<open>
#  (a6) libpq, host=::1,127.0.0.1 (A does not listen on ::1), where ::1
#       is configured
#  (b)  libpq, host=localhost, where localhost resolves to ::1, then
#       127.0.0.1: the system's resolver where it does so (Debian's stock
#       /etc/hosts), else B runs with libnss_wrapper and a hosts file
#       saying so; when neither is possible a diag says the case did not run
#  (c)  a stream peer, add_stream_peer(model, 'localhost', port): the
#       stream dialer tries every address, not only the first (with one
#       address only, when (b) cannot run, as a plain check)
#  (d)  a peer whose every address refuses: last_error holds libpq's
#       message for both addresses, whole (past 256 bytes)
#
# Each case proves the sync both ways (a write on each side before the
# peer reaches the other) and then live (a write at A after the sync).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

# how long a case may take to sync: far more than a working dialer needs
# (milliseconds), and past scuttlebutt.handshake_timeout, so that a
# dialer stuck on its first address has been retried at least once
my $patience = 30;

my $dual = LibpqTest::dual_stack_localhost();
my $na = LibpqTest::new_node('a', listen => 1);
my $nb = do
{
	local @ENV{ keys %{ $dual->{env} // {} } } = values %{ $dual->{env} // {} };
	LibpqTest::new_node('b');
};
sub qa { LibpqTest::q1($na, @_) }
sub qb { LibpqTest::q1($nb, @_) }
my $id_a = qa('SELECT scuttlebutt.node_id()');
my $closed = PostgreSQL::Test::Cluster::get_free_port();    # nothing listens there
my $open = $na->port;

if ($dual->{how})
{
	diag("case (b) and (c): localhost resolves to ::1, then 127.0.0.1 ($dual->{families}) "
		  . ($dual->{how} eq 'system' ? 'through the system resolver' : "through $dual->{env}{LD_PRELOAD}"));
}
else
{
	diag("case (b) not run, case (c) with one address only: $dual->{why}");
}

# The models of a case, with a write at A and one at B before the peer
sub prepare
{
	my ($m) = @_;
	for my $n ($na, $nb)
	{
		LibpqTest::q1($n, "SELECT scuttlebutt.create_model('$m', 'model')");
		LibpqTest::q1($n, "SELECT scuttlebutt.set('$m', '" . $n->name . "', '\"before\"')");
	}
}

# Seconds left until $deadline (at least 1)
sub left
{
	my ($deadline) = @_;
	my $l = int($deadline - time + 0.5);
	return $l < 1 ? 1 : $l;
}

# After B added the peer $id for $m: both writes made before cross, the
# peer is live with A's id, and a write at A after the sync reaches B;
# all within $patience seconds.  Then the peer is removed, and the case
# ends once B no longer holds it, so that a peer that never connected
# cannot go on changing B's wait set during the next case.
sub check_synced
{
	my ($case, $m, $id, $transport) = @_;
	my $deadline = time + $patience;
	ok(LibpqTest::poll($nb, "SELECT scuttlebutt.get('$m', 'a') = '\"before\"'", left($deadline)),
		"$case: B pulled A's write")
	  or diag('B: ' . LibpqTest::show(LibpqTest::peer($nb, "peer_id = $id")));
	ok(LibpqTest::poll($na, "SELECT scuttlebutt.get('$m', 'b') = '\"before\"'", left($deadline)),
		"$case: A received B's write");
	my ($ok, $r) = LibpqTest::wait_peer($nb, "peer_id = $id",
		sub { $_[0]{state} eq 'live' && defined $_[0]{synced_at} }, left($deadline));
	ok($ok, "$case: B's peer is live and synced");
	is_deeply([ @{ $r // {} }{qw(transport remote_id)} ], [ $transport, $id_a ],
		"$case: B's peer: $transport, A's node id");
	qa("SELECT scuttlebutt.set('$m', 'live', '\"after\"')");
	ok(LibpqTest::poll($nb, "SELECT scuttlebutt.get('$m', 'live') = '\"after\"'", left($deadline)),
		"$case: a live write at A reaches B");
}

# Removes B's peer $id and waits until B no longer shows it
sub drop_peer
{
	my ($case, $id) = @_;
	qb("SELECT scuttlebutt.remove_peer($id)");
	ok(LibpqTest::poll($nb, "SELECT NOT EXISTS (SELECT FROM scuttlebutt.peer_status WHERE peer_id = $id)", 30),
		"$case: the peer is gone once removed");
}

# ---- (a) the first host of a libpq conninfo refuses ----
prepare('first_a');
my $p = LibpqTest::add_peer($nb, 'first_a',
	"host=127.0.0.1,127.0.0.1 port=$closed,$open dbname=postgres");
check_synced('(a) host=127.0.0.1,127.0.0.1 port=<closed>,<open>', 'first_a', $p, 'libpq');
drop_peer('(a)', $p);

# ---- (a6) ::1 first, on a server listening on 127.0.0.1 only ----
if (LibpqTest::ipv6_loopback())
{
	prepare('first_a6');
	$p = LibpqTest::add_peer($nb, 'first_a6', "host=::1,127.0.0.1 port=$open dbname=postgres");
	check_synced('(a6) host=::1,127.0.0.1', 'first_a6', $p, 'libpq');
	drop_peer('(a6)', $p);
}
else
{
	diag('case (a6) not run: ::1 is not configured here');
}

# ---- (b) localhost: ::1 refuses, 127.0.0.1 answers ----
if ($dual->{how})
{
	prepare('first_b');
	$p = LibpqTest::add_peer($nb, 'first_b', "host=localhost port=$open dbname=postgres");
	check_synced('(b) host=localhost (::1, then 127.0.0.1)', 'first_b', $p, 'libpq');
	drop_peer('(b)', $p);
}

# ---- (c) a stream peer dialing localhost ----
prepare('first_c');
$p = qb("SELECT scuttlebutt.add_stream_peer('first_c', 'localhost', " . LibpqTest::stream_port($na) . ')');
check_synced('(c) stream peer to localhost' . ($dual->{how} ? ' (::1, then 127.0.0.1)' : ''),
	'first_c', $p, 'stream');
my $in = LibpqTest::peer($na, "model = 'first_c'");
like($in->{remote_addr} // '', qr/^127\.0\.0\.1:\d+$/, '(c) A was reached over IPv4');
drop_peer('(c)', $p);

# ---- (d) every address refuses: last_error tells of each, whole ----
my $closed2 = PostgreSQL::Test::Cluster::get_free_port();
qa("SELECT scuttlebutt.create_model('first_d', 'model')");
qb("SELECT scuttlebutt.create_model('first_d', 'model')");
$p = LibpqTest::add_peer($nb, 'first_d', "host=127.0.0.1,127.0.0.1 port=$closed,$closed2 dbname=postgres");
my ($ok, $r) = LibpqTest::wait_peer($nb, "peer_id = $p",
	sub { defined $_[0]{last_error} && $_[0]{last_error} =~ /port $closed2/ }, $patience);
ok($ok, '(d) last_error names the second address');
my $err = $r->{last_error} // '';
like($err, qr/port $closed failed: Connection refused/, '(d) last_error: the first address refused');
like($err, qr/port $closed2 failed: Connection refused/, '(d) last_error: the second address refused');
is(scalar(() = $err =~ /accepting TCP\/IP connections\?/g), 2,
	'(d) last_error holds libpq\'s whole message for each address');
like($err, qr/port $closed2 failed: Connection refused\s+Is the server running on that host and accepting TCP\/IP connections\?/,
	'(d) last_error holds the second address\'s message to its end');
cmp_ok(length($err), '>', 256, '(d) last_error is not cut at 256 bytes');

$nb->stop;
$na->stop;
done_testing();
