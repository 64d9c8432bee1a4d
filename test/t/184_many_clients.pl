# Many clients at once: every connection a client opens is served or
# refused with a reason, none left waiting on the kernel's queue.
#
# 400 unmodified reference Models (test/interop/many_clients.js) dial the
# listener together while the worker is busy (stopped with SIGSTOP for
# 8 s, as a worker serving a reconnect storm is for a while):
# scuttlebutt.max_connections is 360, so 360 must sync (every key of the
# model) and 40 be refused, all within 4 s of the worker running again.
# Each synced client is in peer_status (by its id); each refused one is
# counted in connection_errors as "too many connections".  With an accept
# queue shorter than the storm (listen(128)), the connections beyond it
# waited for the kernel's retransmission backoff: seconds to tens of
# seconds with their header sent, absent from peer_status.
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
use Time::HiRes qw(time usleep);

plan skip_all => 'node.js and the npm packages are needed (test/run.sh installs them)'
  unless ScuttlebuttTest::node_available();

my $clients = 400;
my $limit = 360;
my $keys = 20;

my $na = StreamTest::new_node('a',
	conf => "scuttlebutt.max_connections = $limit\n"
	  . "scuttlebutt.max_connections_per_address = 1024\n");
sub qa { StreamTest::q1($na, @_) }
qa(qq{SELECT scuttlebutt.create_model('m');
	SELECT scuttlebutt.set('m', 'k' || i, to_jsonb(i)) FROM generate_series(1, $keys) i});

my $worker = StreamTest::worker_pid($na);
ok($worker, 'the worker runs');

# the worker busy: nothing accepted while every client dials
kill 'STOP', $worker or die "cannot stop the worker: $!";
END { kill 'CONT', $worker if $worker }
my ($in, $out, $err) = ('', '', '');
my $h = IPC::Run::start(
	[
		'node', "$FindBin::RealBin/../interop/many_clients.js",
		StreamTest::port($na), 'm', $clients, $keys, 'MANY'
	],
	'<', \$in, '>', \$out, '2>', \$err,
	IPC::Run::timeout(3 * $PostgreSQL::Test::Utils::timeout_default));
my $t0 = time;
while (time - $t0 < 8)
{
	$h->pump_nb;
	usleep(100_000);
}
kill 'CONT', $worker or die "cannot resume the worker: $!";
my ($connected) = $out =~ /.*CONNECTED (\d+)/s;
is($connected, $clients,
	'while the worker is busy, the accept queue holds every connection of the storm');

$in .= "report 5000\n";
$h->pump until $out =~ /^\{.*\}$/m || !$h->pumpable;
my ($json) = $out =~ /^(\{.*\})$/m;
my $res = ScuttlebuttTest::json_codec()->decode($json // '{}');
diag($err) if $err ne '';

my @synced = @{ $res->{synced} // [] };
my %refused = %{ $res->{refused} // {} };
my %waiting = %{ $res->{waiting} // {} };
is(scalar(keys %waiting), 0,
	'no client is left waiting 5 s after the worker runs again')
  or diag(join("\n", map { "$_: $waiting{$_}" } (sort keys %waiting)[0 .. 9]));
is(scalar(@synced), $limit, "$limit clients synced (scuttlebutt.max_connections)");
is(scalar(keys %refused), $clients - $limit, ($clients - $limit) . ' clients refused');
is_deeply($res->{wrong_keys}, {}, "every synced client holds the model's $keys keys");
note("slowest sync after the worker resumed: $res->{sync_ms_after_report} ms")
  if defined $res->{sync_ms_after_report};

# each synced client is in peer_status, each refused one counted with its reason
my %in_status = map { $_ => 1 } split /\n/,
  qa(q{SELECT remote_id FROM scuttlebutt.peer_status WHERE direction = 'in' AND state = 'live'});
my @missing = grep { !$in_status{$_} } @synced;
is(scalar(@missing), 0, 'every synced client is live in peer_status')
  or diag("missing: @missing[0 .. ($#missing < 9 ? $#missing : 9)]");
is(scalar(keys %in_status), $limit, "peer_status holds $limit incoming sessions");
is(StreamTest::error_count($na, 'too many connections'), $clients - $limit,
	'each refused client is counted in connection_errors as "too many connections"');
ok($na->log_contains(qr/closing connection from 127\.0\.0\.1:\d+: too many connections/),
	'the refusals are logged with their reason');
is(StreamTest::error_count($na, 'handshake timeout'), 0,
	'no accepted client waited out the handshake timeout, its header unread');

# live: each SQL write reaches every held client (they all lack the same
# page: one read is shared by all); a burst of commits as well
qa(qq{SELECT scuttlebutt.set('m', 'live$_', '$_')}) for 1 .. 5;
$in .= "keys 30000 " . ($keys + 5) . "\n";
$h->pump until $out =~ /"event":"keys"/ || !$h->pumpable;
my ($have, $of) = $out =~ /"have":(\d+),"of":(\d+)/;
is("$have/$of", "$limit/$limit", 'five SQL writes reach every held client');
ok(StreamTest::poll($na,
		qq{SELECT count(*) = $limit FROM scuttlebutt.peer_status WHERE direction = 'in' AND sent = $keys + 5}),
	'peer_status counts each client sent every update once');

# a burst of commits (one a statement, closer together than the gap the
# worker leaves between live rounds with this many clients): taken in
# rounds, none lost
my $burst = 200;
qa(join('', map { "SELECT scuttlebutt.set('m', 'burst$_', '$_');\n" } 1 .. $burst));
$in .= "keys 30000 " . ($keys + 5 + $burst) . "\n";
$h->pump until $out =~ /"event":"keys".*"event":"keys"/s || !$h->pumpable;
($have, $of) = $out =~ /.*"have":(\d+),"of":(\d+)/s;
is("$have/$of", "$limit/$limit", "a burst of $burst commits reaches every held client");
ok(StreamTest::poll($na,
		qq{SELECT count(*) = $limit FROM scuttlebutt.peer_status WHERE direction = 'in' AND sent = $keys + 5 + $burst}),
	'peer_status counts each client sent each of them once');

# one more while the $limit are held is refused too
my ($o2, $e2) = ('', '');
IPC::Run::run(
	[
		'node', "$FindBin::RealBin/../interop/many_clients.js",
		StreamTest::port($na), 'm', 1, $keys, 'AFTER'
	],
	'<', \"report 10000\n", '>', \$o2, '2>', \$e2,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
my ($j2) = $o2 =~ /^(\{.*\})$/m;
my $r2 = ScuttlebuttTest::json_codec()->decode($j2 // '{}');
is_deeply([ keys %{ $r2->{refused} // {} } ], ['AFTER0'],
	"a client beyond the limit while the $limit are held is refused");

# the storm leaves: the listener serves a new client
$in = '';
$h->finish;
ok(StreamTest::poll($na, q{SELECT count(*) = 0 FROM scuttlebutt.peer_status WHERE direction = 'in'}),
	'the closed connections leave peer_status');
($o2, $e2) = ('', '');
IPC::Run::run(
	[
		'node', "$FindBin::RealBin/../interop/many_clients.js",
		StreamTest::port($na), 'm', 1, $keys, 'LATER'
	],
	'<', \"report 10000\n", '>', \$o2, '2>', \$e2,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
($j2) = $o2 =~ /^(\{.*\})$/m;
$r2 = ScuttlebuttTest::json_codec()->decode($j2 // '{}');
is_deeply($r2->{synced}, ['LATER0'], 'once they left, a new client syncs');

# a model of several pages (2,000 updates each): clients sharing reads
# page by page, or reading their own when their socket lags, each get
# every key
qa(q{SELECT scuttlebutt.create_model('big');
	SELECT scuttlebutt.set_many('big', jsonb_object_agg('b' || i, i)) FROM generate_series(1, 4500) i});
($o2, $e2) = ('', '');
IPC::Run::run(
	[
		'node', "$FindBin::RealBin/../interop/many_clients.js",
		StreamTest::port($na), 'big', 30, 4500, 'BIG'
	],
	'<', \"report 120000\n", '>', \$o2, '2>', \$e2,
	IPC::Run::timeout(3 * $PostgreSQL::Test::Utils::timeout_default));
($j2) = $o2 =~ /^(\{.*\})$/m;
$r2 = ScuttlebuttTest::json_codec()->decode($j2 // '{}');
is(scalar(@{ $r2->{synced} // [] }), 30, '30 clients of a 4,500-key model sync');
is_deeply($r2->{wrong_keys}, {}, 'each holds the 4,500 keys');

$na->stop;
done_testing();
