# A local update superseded by a pulled one before the push read it: the
# remote's clock must still reach ours.
#
# D dials R over libpq for a key/value model.  On D a transaction holds a
# timestamp t0 of the model, uncommitted, so every reader of D's own
# source, the push included, is held below t0 (see the sequencer).  D then
# writes key "contested" at t1 > t0 (committed, but not yet readable by
# the push), R writes the same key at t2 > t1, and D pulls and applies
# R's write, which supersedes D's.  When the transaction ends, the push
# finds no update of D's source at t1 any more: R never receives it, so
# R's clock for D's source stays below t1, while D's is t1.  Both sides
# hold the same values; their clocks must be equal too, once
# wait_for_sync() on D says the peer is caught up.
#
# Once with the holding transaction committed (its update at t0 is still
# pushed), once rolled back (that moves the readers' horizon as a commit
# does: D's other write made meanwhile, at ts between t0 and t1, must
# reach R, and not only at D's next commit).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $nr = LibpqTest::new_node('r');
# A reservation far ahead: the writes below never move it, so the second
# local write does not wait for the first transaction's clock row.
my $nd = LibpqTest::new_node('d', conf => "scuttlebutt.timestamp_reserve = '10min'\n");
sub qr1 { LibpqTest::q1($nr, @_) }
sub qd { LibpqTest::q1($nd, @_) }
my $id_d = qd('SELECT scuttlebutt.node_id()');

qr1(q{SELECT scuttlebutt.create_model('kv')});
qd(q{SELECT scuttlebutt.create_model('kv')});
my $peer = LibpqTest::add_peer($nd, 'kv', LibpqTest::conninfo($nr));
qr1(q{SELECT scuttlebutt.set('kv', 'warm_r', '1')});
qd(q{SELECT scuttlebutt.set('kv', 'warm_d', '1')});
is(qd(q{SELECT scuttlebutt.wait_for_sync('kv', '60s')}), 't', 'D syncs with R');
ok(LibpqTest::wait_converged('kv', [ $nr, $nd ], 30), 'R and D converge before the race');

# D's clock entry for its own source, as clock() shows it on $n
sub clock_of_d
{
	my ($n) = @_;
	return LibpqTest::q1($n, qq{SELECT scuttlebutt.clock('kv') ->> '$id_d'});
}

for my $end (qw(COMMIT ROLLBACK))
{
	my $key = 'contested_' . lc($end);

	# a transaction on D holds t0: readers of D's source stay below it
	my $bg = $nd->background_psql('postgres');
	$bg->query_safe(q{BEGIN});
	my $t0 = $bg->query_safe(qq{SELECT scuttlebutt.set('kv', 'held_' || lower('$end'), '"t0"')});
	my $solo = 'solo_' . lc($end);
	my $ts = qd(qq{SELECT scuttlebutt.set('kv', '$solo', '"d"')});
	my $t1 = qd(qq{SELECT scuttlebutt.set('kv', '$key', '"d"')});
	ok($t0 < $ts && $ts < $t1, "$end: D wrote $solo, then $key at t1, after t0");
	cmp_ok(clock_of_d($nd), '<', $t0, "$end: D's clock (what its push reads) is held below t0");

	# R writes the key later (its wall clock past t1), and D pulls it
	ok(LibpqTest::poll($nr, qq{SELECT extract(epoch FROM clock_timestamp()) * 1000 > $t1}, 10),
		"$end: R's wall clock is past t1");
	my $t2 = qr1(qq{SELECT scuttlebutt.set('kv', '$key', '"r"')});
	cmp_ok($t2, '>', $t1, "$end: R wrote $key at t2 > t1");
	ok(LibpqTest::poll($nd, qq{SELECT scuttlebutt.get('kv', '$key') = '"r"'}, 30),
		"$end: D pulled R's write, which superseded its own before its push read it");
	cmp_ok(clock_of_d($nd), '<', $t0, "$end: D's own writes were still held back meanwhile");

	$bg->query_safe($end);
	$bg->quit;
	is(clock_of_d($nd), $t1, "$end: D's clock for its own source is now t1");

	# caught up: R holds what D holds, clock included
	is(qd(q{SELECT scuttlebutt.wait_for_sync('kv', '30s')}), 't', "$end: wait_for_sync on D");
	is(qr1(qq{SELECT scuttlebutt.get('kv', '$solo')}), '"d"',
		"$end: once D says it is in sync, R holds $solo, written while t0 was held");
	is(clock_of_d($nr), $t1, "$end: once D says it is in sync, R's clock for D's source is t1 too");
	ok(LibpqTest::wait_converged('kv', [ $nr, $nd ], 10), "$end: R and D converge (updates and clock)");
	is(qr1(qq{SELECT scuttlebutt.get('kv', '$key')}), '"r"', "$end: R's write stands on R");
	is(qr1(qq{SELECT scuttlebutt.get('kv', 'held_' || lower('$end')) IS NOT NULL}),
		$end eq 'COMMIT' ? 't' : 'f', "$end: R holds the held transaction's write only if it committed");
}

my $r = LibpqTest::peer($nd, "peer_id = $peer");
is_deeply([ $r->{state}, $r->{rejected}, $r->{last_error} ], [ 'live', 0, undef ],
	"D's peer is live, nothing rejected, no error");

$_->stop for ($nr, $nd);
done_testing();
