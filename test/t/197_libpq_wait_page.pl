# A libpq peer's wait answers with the page a poll would return: a pulled
# update takes one round trip, is applied once, and nothing the peer
# pushed is sent back to it.
#
#  - the procedure itself: CALL scuttlebutt.wait_for_commit(model, clock,
#    wait_ms, max_updates, pusher, pushes) returns, once a commit ends the
#    wait, the updates newer than the clock and the header, as lines of
#    one text; '' when there is nothing newer; NULL when a push of the
#    caller's session numbered beyond pushes (_push(model, lines, pusher,
#    push)) came during the wait, but the page when the commit was an
#    import, a push the wait counted, or any push with pusher 0 (a
#    session that never pushes); also NULL when another session's push
#    took the slot (pusher % 1024) of one of the caller's;
#  - two servers, D dials R: ten set()s at R, each awaited on D, make R
#    run no poll() (counted with track_functions): each came with the
#    wait's answer; D received each exactly once;
#  - thirty set()s at D, pushed while D's pull waits on R: R holds them
#    all, and D receives none of them back;
#  - 1,800 set()s from four sessions at a time at D, back to back: none
#    comes back (a push may race a wait or a poll, and a commit may be
#    pushed before its backend counted it).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use IPC::Run;
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $nr = LibpqTest::new_node('r', conf => "track_functions = 'all'\n");
my $nd = LibpqTest::new_node('d');
sub qr1 { LibpqTest::q1($nr, @_) }
sub qd { LibpqTest::q1($nd, @_) }

my $foreign = 'F00DF00DF00DF00DF00DF00DF00DF00D';
my $n_line = 0;
# An update of model m from another source, as a line
sub foreign_line
{
	my ($key) = @_;
	$n_line++;
	return sprintf('[["%s",%d],%.3f,"%s"]', $key, $n_line, time * 1000 + $n_line, $foreign);
}

# ---- the procedure ----
qr1(q{SELECT scuttlebutt.create_model('m')});
qr1(q{SELECT scuttlebutt.import('m', } . LibpqTest::lit(foreign_line('k0')) . ')');

# One wait in a background session while $write runs in another; its page
sub wait_while
{
	my ($pusher, $pushes, $write) = @_;
	my ($out, $err) = ('', '');
	# a file, not a scalar: IPC::Run feeds a scalar only while pumped
	my $in = PostgreSQL::Test::Utils::tempdir() . '/wait.sql';
	PostgreSQL::Test::Utils::append_to_file($in, "\\pset null <null>\nSET application_name = 'waiter';\n"
		  . "CALL scuttlebutt.wait_for_commit('m', scuttlebutt.clock('m')::jsonb, 20000, 100, $pusher, $pushes);\n");
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-At', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $nr->connstr('postgres') ],
		'<', $in, '>', \$out, '2>', \$err);
	my $deadline = time + 20;
	while (time < $deadline)
	{
		last if qr1(q{SELECT count(*) FROM pg_stat_activity WHERE application_name = 'waiter'
			AND query LIKE 'CALL%' AND wait_event = 'Extension'}) eq '1';
		usleep(20_000);
	}
	my $t = time;
	qr1($write);
	$h->finish;
	diag("waiter: $err") if $err ne '';
	return ($out =~ s/\n+$//r, time - $t);
}

my ($page, $took) = wait_while(77, 0, q{SELECT scuttlebutt.import('m', } . LibpqTest::lit(foreign_line('k1')) . ')');
like($page, qr/^\[\["k1",\d+\],[\d.]+,"$foreign"\]\n\{"id":"\w+","clock":\{.*"$foreign":/,
	'a wait ended by an import answers with the new update and the header');
cmp_ok($took, '<', 10, 'the wait ended with the commit, not its timeout');

($page) = wait_while(77, 0, q{SELECT scuttlebutt._push('m', } . LibpqTest::lit(foreign_line('k2')) . ', 77, 1)');
is($page, '<null>', "a wait ended by its own session's later push answers no page");

($page) = wait_while(77, 1, q{SELECT scuttlebutt._push('m', } . LibpqTest::lit(foreign_line('k3')) . ', 77, 1)');
like($page, qr/^\[\["k3",/, 'a push the wait counted (its updates are in the clock given) does not stop the page');

($page) = wait_while(77, 5, q{SELECT scuttlebutt._push('m', } . LibpqTest::lit(foreign_line('k4')) . ', 78, 1)');
like($page, qr/^\[\["k4",/, "another session's push does not stop the page");

($page) = wait_while(77, 5, q{SELECT scuttlebutt.create_model('other')});
is($page, '', 'a wait ended by nothing newer answers an empty page');

($page) = wait_while(0, 0, q{SELECT scuttlebutt._push('m', } . LibpqTest::lit(foreign_line('k5')) . ', 79, 1)');
like($page, qr/^\[\["k5",/, 'pusher 0 (a session that never pushes): no push stops the page');

# The caller's push lands before its wait begins, then another session's
# push takes the same slot (pusher % 1024): the wait cannot tell that
# ours came, and must not answer with it.
sub wait_after_pushes
{
	my ($pusher, $other) = @_;
	my $sql = "\\pset null <null>\n"
	  . "SELECT scuttlebutt.clock('m')::jsonb AS c \\gset\n"
	  . "SELECT scuttlebutt._push('m', " . LibpqTest::lit(foreign_line("mine$pusher")) . ", $pusher, 1) \\g /dev/null\n"
	  . ($other ? "SELECT scuttlebutt._push('m', " . LibpqTest::lit(foreign_line("other$other")) . ", $other, 1) \\g /dev/null\n" : '')
	  . "CALL scuttlebutt.wait_for_commit('m', :'c', 20000, 100, $pusher, 0);\n";
	my ($rc, $out, $err) = $nr->psql('postgres', $sql, extra_params => ['-At']);
	diag("wait: $err") if $err ne '';
	return $out;
}
is(wait_after_pushes(177, 0), '<null>', "a push of the caller's before its wait began: no page");
is(wait_after_pushes(277, 277 + 1024), '<null>',
	"the same, then another session's push in the same slot: still no page");

is(qr1(q{CALL scuttlebutt.wait_for_commit('m', '{}', 0, 2)}) =~ tr/\n//, 2,
	'max_updates bounds the page (no header after a full page)');

# ---- two servers ----
for my $n ($nr, $nd) { LibpqTest::q1($n, q{SELECT scuttlebutt.create_model('kv')}) }
LibpqTest::add_peer($nd, 'kv', LibpqTest::conninfo($nr));
is(qd(q{SELECT scuttlebutt.wait_for_sync('kv', '60s')}), 't', 'D syncs kv with R');

# R's calls of a function of ours so far, once R's pull session has reported them
sub calls
{
	my ($f) = @_;
	return qr1(qq{SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions
		WHERE schemaname = 'scuttlebutt' AND funcname = '$f'});
}

sub received { return qd(q{SELECT received FROM scuttlebutt.peer_status WHERE model = 'kv'}) }

# R's pull session reports its counts when idle between calls, at most
# once a second: two writes 1.2 s apart make it report what came before
for my $i (1 .. 2)
{
	qr1("SELECT scuttlebutt.set('kv', 'w$i', '$i')");
	LibpqTest::poll($nd, "SELECT scuttlebutt.get('kv', 'w$i') = '$i'", 10);
	usleep(1_200_000);
}
my $polls = calls('poll');
my $waits = calls('wait_for_commit');
my $got = received();
for my $i (1 .. 10)
{
	qr1("SELECT scuttlebutt.set('kv', 'r$i', '$i')");
	ok(LibpqTest::poll($nd, "SELECT scuttlebutt.get('kv', 'r$i') = '$i'", 10), "set() $i at R reaches D");
}
my $deadline = time + 30;
usleep(200_000) while calls('wait_for_commit') < $waits + 10 && time < $deadline;
cmp_ok(calls('wait_for_commit'), '>=', $waits + 10, "R's pull session has reported its waits");
is(calls('poll') - $polls, 0, 'no poll(): each update came with the answer of a wait');
$deadline = time + 10;
usleep(100_000) while received() < $got + 10 && time < $deadline;
usleep(500_000);
is(received() - $got, 10, 'D received each of the ten updates once');
is(qd(q{SELECT count(*) FROM scuttlebutt.keys('kv') k WHERE k LIKE 'r%'}), '10', 'D holds the ten keys');

# ---- pushed, never sent back ----
# R holds the $n keys with $prefix D wrote, D is in sync, and received
# none of them back since it had received $got updates
sub pushed_none_back
{
	my ($got, $prefix, $n) = @_;
	ok(LibpqTest::poll($nr, qq{SELECT count(*) = $n FROM scuttlebutt.keys('kv') k WHERE k LIKE '$prefix%'}, 60),
		"R holds the $n keys ($prefix...) D wrote");
	is(qd(q{SELECT scuttlebutt.wait_for_sync('kv', '30s')}), 't', "D is in sync with R after its $n writes");
	sleep(1);
	is(received() - $got, 0, "D received none of its $n updates back");
	is(LibpqTest::digest($nd, 'kv'), LibpqTest::digest($nr, 'kv'), 'both hold the same history');
}

$got = received();
for my $i (1 .. 30)
{
	qd("SELECT scuttlebutt.set('kv', 'd$i', '$i')");
	usleep(($i % 3) * 3_000);
}
pushed_none_back($got, 'd', 30);

# ---- many pushes racing the waits ----
# Three rounds of four sessions at D committing 150 set()s each, back to
# back, while D's pull waits on R: D's worker pushes them as they become
# visible, which may be before the committing backend has counted its
# commit, and while a poll is out.  The clock a wait or a poll carries
# must still hold every update pushed before it.
$got = received();
for my $round (1 .. 3)
{
	my @writers;
	for my $w (1 .. 4)
	{
		my $in = PostgreSQL::Test::Utils::tempdir() . "/writes$round-$w.sql";
		PostgreSQL::Test::Utils::append_to_file($in,
			join('', map { "SELECT scuttlebutt.set('kv', 's$round-$w-$_', '$_');\n" } 1 .. 150));
		push @writers, IPC::Run::start(
			[ 'psql', '-X', '-At', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $nd->connstr('postgres'), '-f', $in ],
			'>', \my $out, '2>', \my $err);
	}
	$_->finish for @writers;
}
pushed_none_back($got, 's', 1800);

done_testing();
