# scuttlebutt.max_connections beyond 8,192: the status slots in shared
# memory are sized at server start from the setting (4,096 incoming at
# least, so a reload may still raise it that far), not fixed at the
# largest value a user might set.
#
#  - A, max_connections 8,300: 8,300 lightweight stream clients
#    (test/bench/js/fanout_clients.js, the line protocol) sync a model at
#    once and each is live in peer_status; a write reaches them all.
#  - B, max_connections 5: its shared memory is that of the default
#    (the floor), A's more by a slot per connection beyond it.
#  - B reloaded with max_connections 5,000: a WARNING says the worker holds
#    4,096 incoming connections until a restart.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use StreamTest;
use Test::More;

plan skip_all => 'node.js and the npm packages are needed (test/run.sh installs them)'
  unless ScuttlebuttTest::node_available();
my $clients = 8300;
my $hard = `bash -c 'ulimit -Hn'`;
chomp $hard;
plan skip_all => "the hard limit on open files ($hard) is below " . ($clients + 200)
  unless $hard eq 'unlimited' || $hard >= $clients + 200;

my $keys = 5;
my $na = StreamTest::new_node('a',
	conf => "scuttlebutt.max_connections = $clients\n"
	  . "scuttlebutt.max_connections_per_address = $clients\n");
my $nb = StreamTest::new_node('b', conf => "scuttlebutt.max_connections = 5\n");
sub qa { StreamTest::q1($na, @_) }
sub qb { StreamTest::q1($nb, @_) }

is(qa('SHOW scuttlebutt.max_connections'), $clients, "A's max_connections is $clients");
qa(qq{SELECT scuttlebutt.create_model('m');
	SELECT scuttlebutt.set('m', 'k' || i, to_jsonb(i)) FROM generate_series(1, $keys) i});

# shared memory: a slot per connection, from the default's count on
my $shm = q{SELECT size FROM pg_shmem_allocations WHERE name = 'scuttlebutt'};
my ($size_a, $size_b) = (qa($shm), qb($shm));
my $slot = ($size_a - $size_b) / ($clients - 4096);
ok($slot >= 1000 && $slot <= 2000 && $slot == int($slot),
	"A's shared memory is B's and a slot per connection beyond 4,096 ($size_a - $size_b bytes, $slot a slot)");
ok($size_b < 8 * 1024 * 1024, "B's (max_connections 5) is under 8 MB ($size_b bytes)");

# every client at once, each its own socket
my ($in, $out, $err) = ('', '', '');
local $ENV{FANOUT_SYNC_KEYS} = $keys;
local $ENV{FANOUT_DEADLINE_MS} = 120000;
local $ENV{FANOUT_ID} = 'MANY';
my $h = IPC::Run::start(
	[
		'bash', '-c', 'ulimit -n ' . ($clients + 200) . ' && exec node "$@"', 'clients',
		"$FindBin::RealBin/../bench/js/fanout_clients.js", StreamTest::port($na), 'm', $clients
	],
	'<', \$in, '>', \$out, '2>', \$err,
	IPC::Run::timeout(4 * $PostgreSQL::Test::Utils::timeout_default));
$h->pump until $out =~ /"event":"synced"/ || !$h->pumpable;
my ($synced) = $out =~ /"event":"synced".*?"synced":(\d+)/;
is($synced, $clients, "$clients clients synced every key") or diag("$out\n$err");
# (the worker publishes statuses at the end of the loop iteration that
# changed them: a client may hold the server's SYNC a moment before its
# row says live; one that never shows live fails after 30 s)
my $live = q{SELECT count(*) FROM scuttlebutt.peer_status WHERE direction = 'in' AND state = 'live'};
StreamTest::poll($na, "SELECT ($live) = $clients", 30);
is(qa($live), $clients, "peer_status shows $clients live incoming connections");

# a write reaches each of them
$in .= "reset\n";
$h->pump until $out =~ /"event":"reset"/ || !$h->pumpable;
qa(q{SELECT scuttlebutt.set('m', 'live', '1')});
ok(StreamTest::poll($na,
		qq{SELECT count(*) = $clients FROM scuttlebutt.peer_status WHERE direction = 'in' AND sent = $keys + 1}),
	'a write is sent to every client');
$in .= "report\n";
$h->pump until $out =~ /"event":"report"/ || !$h->pumpable;
my ($deliveries) = $out =~ /"event":"report".*?"deliveries":(\d+)/;
is($deliveries, $clients, 'every client received it');
$in .= "quit\n";
$h->finish;

# B: a reload past its slots says what it holds until a restart
my $offset = -s $nb->logfile;
$nb->append_conf('postgresql.conf', "scuttlebutt.max_connections = 5000\n");
$nb->reload;
ok($nb->wait_for_log(
		qr/WARNING:  scuttlebutt: the worker holds at most 4096 incoming connections until the server restarts, fewer than scuttlebutt.max_connections \(5000\)/,
		$offset),
	'a reload past the slots set up at start is warned about');

$na->stop;
$nb->stop;
done_testing();
