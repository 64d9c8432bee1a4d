# A server restored from a base backup (same node id) rejoins its mesh.
#
# R dials P1 over libpq (through proxy X), P2 dials R's stream listener
# (through proxy Y), P1 dials P2 over libpq: R has a libpq peer and a
# stream peer, and P1, P2 relay between themselves.  Models kv (model),
# ev (events), val (value) on all three.
#
#  1. All three write; converged.  pg_basebackup of R.
#  2. "An hour of writes" after the backup, which the test stands in for
#     with $ROUNDS rounds of writes at every server (set, emit, set_value,
#     short and multi-statement transactions) spread over a few seconds of
#     wall time.  Near the end, a third node whose clock runs 55 s ahead
#     (within max_clock_skew) writes key "hot" (applied at P1 with
#     apply_update); R then writes "hot": a local write takes a timestamp
#     past the key's current one, so from there on R's timestamps run up to 55
#     s ahead of the wall clock, and R's later writes carry them.  (After
#     a real hour the wall clock would be past every timestamp R handed
#     out; this is the case where it is not: a restore within
#     max_clock_skew of R's last timestamps.)  Converged: P1 and P2 hold
#     every write of R.
#  3. R is cut off (X and Y paused) and killed; its data directory is
#     replaced by the backup, and it starts, still cut off.  A local write
#     now must not take a timestamp its peers may already hold for R:
#     R refuses local writes while it rejoins (SQLSTATE 55000), and says
#     why in the log.
#  4. X and Y forward again.  Once R has synced with its peers it takes
#     local writes again; every timestamp it hands out is past every one it
#     handed out before the restore (none equal), and P1 and P2 accept them
#     (a peer drops an update at or below its clock of the source).
#  5. Everything R wrote after the backup is back on R (its own updates
#     from its peers, the events byte for byte); the three converge (every
#     model's history and clock).
#  6. The file scuttlebutt.rejoin, which an operator creates in the data
#     directory of a copy made otherwise, makes a start rejoin as well;
#     scuttlebutt.end_rejoin() ends it at once.  No PANIC, no worker crash.
use strict;
use warnings;

use File::Path qw(rmtree);
use FindBin;
use lib "$FindBin::RealBin/../lib";
use FaultProxy;
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::RecursiveCopy;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $ROUNDS = 60;
my $lit = \&LibpqTest::lit;

my $r = LibpqTest::new_node('r', listen => 1, conf => "wal_level = replica\nmax_wal_senders = 4\n");
my $p1 = LibpqTest::new_node('p1');
my $p2 = LibpqTest::new_node('p2');
my @all = ($r, $p1, $p2);
sub q1 { LibpqTest::q1(@_) }

for my $n (@all)
{
	q1($n, q{SELECT scuttlebutt.create_model('kv'), scuttlebutt.create_model('ev', 'events'),
		scuttlebutt.create_model('val', 'value')});
}
my $rid = q1($r, 'SELECT scuttlebutt.node_id()');

my $x = FaultProxy->forward('r-p1', $p1->port);
my $y = FaultProxy->forward('p2-r', LibpqTest::stream_port($r));
for my $m (qw(kv ev val))
{
	LibpqTest::add_peer($r, $m, LibpqTest::conninfo($p1, tcp => 1, port => $x->port));
	q1($p2, "SELECT scuttlebutt.add_stream_peer('$m', '127.0.0.1', " . $y->port . ')');
	LibpqTest::add_peer($p1, $m, LibpqTest::conninfo($p2, tcp => 1));
}

# write NODE TAG I: one round of writes at NODE; returns the timestamps
# (set, emit and set_value return them) as [model, ts] pairs: a source's
# timestamps are per model
sub write_round
{
	my ($n, $tag, $i) = @_;
	my $v = "{\"$tag\": $i}";
	my $out = q1($n,
		"SELECT scuttlebutt.set('kv', '$tag$i', '$v');"
		  . "SELECT scuttlebutt.emit('ev', '$tag', '$v');"
		  . "SELECT scuttlebutt.set_value('val', '$v');"
		  . "BEGIN; SELECT scuttlebutt.set('kv', '${tag}m$i', '$v');"
		  . " SELECT scuttlebutt.emit('ev', '${tag}m', '$v'); COMMIT;");
	my @ts = grep { /^[0-9.e+]+$/ } split /\n/, $out;
	die "expected 5 timestamps, got: $out" unless @ts == 5;
	my @models = qw(kv ev val kv ev);
	return map { [ $models[$_], $ts[$_] ] } 0 .. 4;
}

sub converged
{
	my ($what, $timeout) = @_;
	my $ok = 1;
	$ok &&= LibpqTest::wait_converged($_, \@all, $timeout // 60) for qw(kv ev val);
	ok($ok, "$what: kv, ev and val converged on R, P1 and P2 (history and clock)");
}

# ---- 1. before the backup ----
write_round($_, $_->name . '_pre', 0) for @all;
converged('before the backup');
$r->backup('b1');
my $backup = $r->backup_dir . '/b1';

# ---- 2. "an hour of writes" after it ----
my @before;		# R's timestamps handed out before the restore
my $t0 = time;
for my $i (1 .. $ROUNDS)
{
	push @before, write_round($r, 'r', $i);
	write_round($p1, 'p1_', $i);
	write_round($p2, 'p2_', $i);
	if ($i == $ROUNDS - 5)
	{
		# a third node 55 s ahead writes "hot"; once R holds it, R writes it
		my $ahead = sprintf('%.3f', time * 1000 + 55000);
		q1($p1, "SELECT scuttlebutt.apply_update('kv', '[[\"hot\",\"far\"],$ahead,\"FARNODE\"]')");
		ok(LibpqTest::poll($r, q{SELECT scuttlebutt.get('kv', 'hot') = '"far"'}), 'R holds the far node\'s "hot"');
		my ($ts) = q1($r, q{SELECT scuttlebutt.set('kv', 'hot', '"r"')});
		cmp_ok($ts, '>', $ahead, 'R\'s write of "hot" took a timestamp past the far node\'s');
		push @before, [ 'kv', $ts ];
	}
	usleep(50_000);
}
note(sprintf('%d rounds of writes at each server after the backup, %.1f s', $ROUNDS, time - $t0));
converged('after the writes');
my %before_max;
for (@before)
{
	my ($m, $ts) = @$_;
	$before_max{$m} = $ts if !defined $before_max{$m} || $ts > $before_max{$m};
}
cmp_ok($before_max{kv}, '>', time * 1000, 'R\'s last timestamps of kv run ahead of the wall clock');
my %p1_clock_r = map { $_ => q1($p1, "SELECT scuttlebutt.clock('$_') ->> " . $lit->($rid)) } qw(kv ev val);
my %r_events = map { $_ => 1 } split /\n/,
  q1($p1, "SELECT ts FROM scuttlebutt.events('ev') WHERE source = " . $lit->($rid));
my $r_kv_keys = q1($p1, "SELECT count(*) FROM scuttlebutt.entries('kv') WHERE source = " . $lit->($rid));

# ---- 3. R is lost and restored from the backup, cut off ----
$x->pause;
$y->pause;
$r->stop('immediate');
rmtree($r->data_dir);
PostgreSQL::Test::RecursiveCopy::copypath($backup, $r->data_dir);
chmod(0700, $r->data_dir);
my $log_offset = -s $r->logfile;
$r->start;
is(q1($r, 'SELECT scuttlebutt.node_id()'), $rid, 'the restored R has the same node id');
is(q1($r, q{SELECT count(*) FROM scuttlebutt.entries('kv') WHERE key ~ '^r(m)?[0-9]+$' OR key = 'hot'}), '0',
	'the restored R lacks its writes made after the backup');

my ($ret, $out, $err) = $r->psql('postgres', q{SELECT scuttlebutt.set('kv', 'cut_off', '1')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
isnt($ret, 0, 'cut off after the restore, R refuses a local write');
like($err, qr/55000/, '... with SQLSTATE 55000 (object_not_in_prerequisite_state)');
like($err, qr/rejoin/i, '... saying it rejoins its peers');
ok(LibpqTest::find_count($r, qr/restored from a backup/, $log_offset, 1, 30),
	'the log says R was restored and waits for its peers');
is(q1($r, 'SELECT scuttlebutt.rejoining()'), 't', 'rejoining() says so');
ok(-e $r->data_dir . '/scuttlebutt.rejoin', 'the file scuttlebutt.rejoin marks the rejoin');

# ---- 4. the links forward again ----
$x->heal;
$y->heal;
my $t_heal = time;
ok(LibpqTest::poll($r,
		q{SELECT scuttlebutt.set('kv', 'probe', '1') IS NOT NULL}
		  . q{ AND scuttlebutt.emit('ev', 'probe', '1') IS NOT NULL}, 60),
	'once its peers are back, R takes local writes');
note(sprintf('R took local writes again %.1f s after its links came back', time - $t_heal));
is(q1($r, 'SELECT scuttlebutt.rejoining()'), 'f', 'the rejoin is over');
ok(!-e $r->data_dir . '/scuttlebutt.rejoin', '... and its file is gone');

my @after;
for my $i (1 .. 10)
{
	push @after, write_round($r, 'ra', $i);
}
my %before = map { ("$_->[0] $_->[1]" => 1) } @before;
my @reused = grep { $before{"$_->[0] $_->[1]"} } @after;
is(scalar @reused, 0, 'no (model, timestamp) R hands out after the restore equals one from before');
for my $m (qw(kv ev val))
{
	my ($after_min) = sort { $a <=> $b } map { $_->[1] } grep { $_->[0] eq $m } @after;
	cmp_ok($after_min, '>', $before_max{$m},
		"$m: every timestamp R hands out after the restore is past all from before");
	cmp_ok($after_min, '>', $p1_clock_r{$m}, "$m: ... and past P1's clock of R before the restore");
}

converged('after the rejoin');

# ---- 5. what R lost came back; its new writes are everywhere ----
for my $n (@all)
{
	my $name = $n->name;
	is(q1($n, q{SELECT count(*) FROM scuttlebutt.entries('kv') WHERE key ~ '^ra(m)?[0-9]+$' AND source = }
			  . $lit->($rid)), '20', "$name holds R's 20 keys written after the rejoin");
	is(q1($n, q{SELECT count(*) FROM scuttlebutt.events('ev') WHERE event IN ('ra', 'ram')}), '20',
		"$name holds R's 20 events emitted after the rejoin");
}
my %r_events_now = map { $_ => 1 } split /\n/,
  q1($r, "SELECT ts FROM scuttlebutt.events('ev') WHERE source = " . $lit->($rid));
is(scalar(grep { !$r_events_now{$_} } keys %r_events), 0,
	'every event R emitted before the restore is back on R');
is(q1($r, q{SELECT count(*) FROM scuttlebutt.entries('kv') WHERE key ~ '^r(m)?[0-9]+$'}),
	2 * $ROUNDS, 'every key R wrote after the backup is back on R');
is(q1($r, q{SELECT scuttlebutt.get('kv', 'hot')}), '"r"', 'R\'s "hot" is back on R');

# ---- 6. a copy made otherwise: the operator's file, and end_rejoin() ----
$x->pause;
$y->pause;
$r->stop;
PostgreSQL::Test::Utils::append_to_file($r->data_dir . '/scuttlebutt.rejoin', '');
$r->start;
($ret, $out, $err) = $r->psql('postgres', q{SELECT scuttlebutt.set('kv', 'copy', '1')});
isnt($ret, 0, 'with the file scuttlebutt.rejoin, R refuses local writes after a start');
is(q1($r, 'SELECT scuttlebutt.end_rejoin()'), 't', 'end_rejoin() ends the rejoin');
is(q1($r, 'SELECT scuttlebutt.end_rejoin()'), 'f', '... once');
isnt(q1($r, q{SELECT scuttlebutt.set('kv', 'copy', '1')}), '', 'then R takes local writes at once');
ok(!-e $r->data_dir . '/scuttlebutt.rejoin', 'the file is gone');
$x->heal;
$y->heal;
converged('after the end of the rejoin');

for my $n (@all)
{
	my $log = slurp_file($n->logfile);
	unlike($log, qr/PANIC|terminated by signal/, $n->name . ': no PANIC, no crashed process');
}
done_testing();
