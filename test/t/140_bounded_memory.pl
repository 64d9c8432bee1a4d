# What the worker buffers per connection is bounded in bytes, whatever the
# sizes of the values.  A holds a model of 150 values of 1 MB.
#
#  - 8 stream clients send a header and never read: A's worker grows by
#    less than 64 MB in all (a page of history stops once the outbox passes
#    its high-water mark), and a good client still gets all 150 values;
#  - A pushes the model over libpq to B (send only): A's worker stays
#    within the same bound (the pushed outbox is cut the same way);
#  - C pulls it over libpq from A: poll() answers pages cut by their size,
#    so C's worker stays within the bound, and C ends with all of it.
#
# Memory is the worker's RssAnon (/proc/<pid>/status): its private heap,
# not the shared buffers it touches.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use IO::Socket::INET;
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamTest;
use Test::More;
use Time::HiRes qw(time usleep);

my $nvalues = 150;
my $value_bytes = 1_000_000;
my $bound_kb = 64 * 1024;

my $na = LibpqTest::new_node('a', listen => 1);
my $nb = LibpqTest::new_node('b');
my $nc = LibpqTest::new_node('c');
my $port = LibpqTest::stream_port($na);
sub qa { LibpqTest::q1($na, @_) }

for my $n ($na, $nb, $nc)
{
	LibpqTest::q1($n, q{SELECT scuttlebutt.create_model('big')});
}
# built server-side, one transaction per value (one statement each, sent
# by one psql session)
qa(join('', map { "SELECT scuttlebutt.set('big', 'k$_', to_jsonb(repeat(chr(97 + $_ % 26), $value_bytes)));\n" }
	  1 .. $nvalues));
is(qa(q{SELECT count(*) FROM jsonb_object_keys(scuttlebutt.to_json('big'))}), $nvalues,
	"A holds $nvalues values of 1 MB");

# RssAnon of $node's worker; its pid is asked for once, and again only
# when the process is gone (a new worker)
my %worker_pid;
sub rss_anon_kb
{
	my ($node) = @_;
	for (1 .. 2)
	{
		my $pid = $worker_pid{ $node->name } //= StreamTest::worker_pid($node);
		my $kb = StreamTest::rss_anon_kb($pid);

		return $kb if defined $kb;
		delete $worker_pid{ $node->name };
	}
	return undef;
}

# The largest RssAnon of $node's worker seen while $cond is false (at most
# $timeout seconds); returns (max kB, whether $cond came true).  Memory is
# read every 50 ms, $cond (a query) every half second.
sub peak_while
{
	my ($node, $cond, $timeout) = @_;
	my $deadline = time + $timeout;
	my $max = 0;
	my $next_cond = 0;
	while (time < $deadline)
	{
		my $kb = rss_anon_kb($node) // 0;
		$max = $kb if $kb > $max;
		if (time >= $next_cond)
		{
			return ($max, 1) if $cond->();
			$next_cond = time + 0.5;
		}
		usleep(50_000);
	}
	return ($max, 0);
}

# ---- clients that send a header and never read ----
my $before = rss_anon_kb($na);
ok(defined $before, "A's worker memory can be read ($before kB)");
my @hogs;
for my $i (1 .. 8)
{
	my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp')
	  or die "connect: $!";
	syswrite($sock, qq({"id":"HOG$i","clock":{},"meta":"big"}\n));
	push @hogs, $sock;
}
ok(StreamTest::poll($na,
		q{SELECT count(*) = 8 FROM scuttlebutt.peer_status WHERE remote_id LIKE 'HOG%' AND sent > 0}, 60),
	'the 8 clients that never read were each sent something');
# let every session fill what it may
my ($peak) = peak_while($na, sub { 0 }, 4);
my $growth = $peak - $before;
note("A's worker: $before kB before, $peak kB with 8 stalled clients (+$growth kB)");
cmp_ok($growth, '<', $bound_kb, '8 stalled clients grow the worker by less than 64 MB');
is(qa(q{SELECT count(*) FROM scuttlebutt.peer_status WHERE remote_id LIKE 'HOG%' AND state = 'syncing'}), 8,
	'the stalled clients are still connected, syncing');

my $g = StreamTest::Raw->new($port);
my ($header, @updates) = $g->handshake('big', id => 'GOOD');
is(scalar(@updates), $nvalues, "a good client gets all $nvalues values meanwhile");
is(scalar(grep { length($_) > $value_bytes } @updates), $nvalues, 'each of them whole');
my %keys = map { /^\[\["(k\d+)"/ ? ($1 => 1) : () } @updates;
is(scalar(keys %keys), $nvalues, 'every key once');
$g->close_fin;
close($_) for @hogs;
ok(StreamTest::poll($na, q{SELECT count(*) = 0 FROM scuttlebutt.peer_status WHERE direction = 'in'}, 30),
	'A drops the closed connections');

# ---- libpq push: A sends its history to B ----
$before = rss_anon_kb($na);
LibpqTest::add_peer($na, 'big', LibpqTest::conninfo($nb), receive => 'false');
my ($push_peak, $pushed) = peak_while($na,
	sub { LibpqTest::q1($nb, q{SELECT count(*) FROM scuttlebutt.updates}) == $nvalues }, 120);
ok($pushed, "B got all $nvalues values pushed by A");
note("A's worker pushing: $before kB before, peak $push_peak kB (+" . ($push_peak - $before) . ' kB)');
cmp_ok($push_peak - $before, '<', $bound_kb, 'pushing grows A\'s worker by less than 64 MB');

# ---- libpq pull: C pulls from A ----
$before = rss_anon_kb($nc);
LibpqTest::add_peer($nc, 'big', LibpqTest::conninfo($na), send => 'false');
my ($pull_peak, $pulled) = peak_while($nc,
	sub { LibpqTest::q1($nc, q{SELECT count(*) FROM scuttlebutt.updates}) == $nvalues }, 120);
ok($pulled, "C pulled all $nvalues values from A");
note("C's worker pulling: $before kB before, peak $pull_peak kB (+" . ($pull_peak - $before) . ' kB)');
cmp_ok($pull_peak - $before, '<', $bound_kb, 'pulling grows C\'s worker by less than 64 MB');
is(LibpqTest::q1($nc, q{SELECT scuttlebutt.wait_for_sync('big', '60s')}), 't', 'C is synced with A');
is(LibpqTest::q1($nc, q{SELECT md5(scuttlebutt.to_json('big')::text)}),
	qa(q{SELECT md5(scuttlebutt.to_json('big')::text)}), 'C holds what A holds');

done_testing();
