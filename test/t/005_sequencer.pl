# This node's timestamps across restarts and slot evictions (the library
# preloaded, so local writes take timestamps from the shared-memory
# sequencer and the clock row of this node's source is a reservation).
#
#  - After a crash (immediate stop) new local timestamps start past the
#    reservation, so past every timestamp handed out before, while clock()
#    and the export header show the latest update held, not the reservation.
#  - A write that was running at the crash is gone and holds nothing back.
#  - With more models written than the sequencer has slots, idle slots are
#    evicted and rebuilt from the reservation: timestamps still increase
#    and clock() stays the latest write.
#  - One transaction may not hold timestamps of more models than there are
#    slots: a clear error, and nothing of it stays.
#  - clock() read in one transaction and then in a later one never goes
#    down, even when the writer's backend has folded committed entries
#    that an old snapshot still holds back (its floor).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use Test::More;

my $slots = 1024;    # SB_SEQ_SLOTS in src/sequencer.c

my $node = ScuttlebuttTest::new_node('sequencer');
my $id = $node->safe_psql('postgres', 'SELECT scuttlebutt.node_id()');

sub q1 { return $node->safe_psql('postgres', $_[0]); }

# the reservation in the clock row, and what clock() shows, for a model
sub reservation
{
	my ($model) = @_;
	return q1(qq{SELECT c.ts FROM scuttlebutt.clocks c JOIN scuttlebutt.registry r ON r.id = c.model_id
				 WHERE r.name = '$model' AND c.source = '$id'});
}
sub shown { return q1(qq{SELECT scuttlebutt.clock('$_[0]') ->> '$id'}); }

# ---- a crash ----
q1(q{SELECT scuttlebutt.create_model('kv'); SELECT scuttlebutt.create_model('ev', 'events')});
my @ts = map { q1(qq{SELECT scuttlebutt.set('kv', 'k$_', '$_')}) } 1 .. 5;
my $last = $ts[-1];
my $reserved = reservation('kv');
cmp_ok($reserved, '>', $last, 'the reservation runs ahead of the latest write');
is(shown('kv'), $last, 'clock() shows the latest write, not the reservation');

# a transaction holding a timestamp when the server crashes
my ($in, $out, $err) = ('', '', '');
my $open = IPC::Run::start([ 'psql', '-XAtq', '-d', $node->connstr('postgres') ],
	'<', \$in, '>', \$out, '2>', \$err);
$in .= "BEGIN;\nSELECT scuttlebutt.emit('ev', 'lost', '1');\n";
ok(pump_until($open, IPC::Run::timeout(30), \$out, qr/^\d+(\.\d+)?$/m), 'a transaction holds a timestamp of ev, not committed');

$node->stop('immediate');
$open->kill_kill;
$node->start;

is(q1(q{SELECT count(*) FROM scuttlebutt.events('ev')}), 0, 'crash: the running emit() is gone');
is(shown('kv'), $last, 'crash: clock() still shows the latest write held');
is(q1(q{SELECT scuttlebutt.export('kv') LIMIT 1}), qq({"id":"$id","clock":{"$id":$last}}),
	'crash: the export header shows it too');
my $after = q1(q{SELECT scuttlebutt.set('kv', 'after_crash', '1')});
cmp_ok($after, '>', $reserved, 'crash: the next timestamp is past the reservation (so past every one handed out)');
is(shown('kv'), $after, 'crash: clock() follows the new write');
q1(q{SELECT scuttlebutt.emit('ev', 'after_crash', '1')});
is(q1(q{SELECT string_agg(event, ',') FROM scuttlebutt.events('ev')}), 'after_crash',
	'crash: the events log holds only what committed');
is(q1(q{SELECT count(*) FROM scuttlebutt.history('kv')}), 6, 'crash: history holds every committed write');

# ---- more models than slots: idle slots are evicted ----
q1(qq{DO \$\$ BEGIN FOR i IN 1..$slots + 16 LOOP
	PERFORM scuttlebutt.create_model('m' || i);
	PERFORM scuttlebutt.set('m' || i, 'k', to_jsonb(i));
	COMMIT;
	END LOOP; END \$\$});
is(q1(qq{SELECT count(*) FROM scuttlebutt.models WHERE name LIKE 'm%' AND updates = 1}), $slots + 16,
	"eviction: $slots + 16 models written, one transaction each");
# m1 was evicted long ago; kv too
my $m1_before = q1(q{SELECT ts FROM scuttlebutt.entries('m1')});
my $m1_after = q1(q{SELECT scuttlebutt.set('m1', 'k2', '2')});
cmp_ok($m1_after, '>', $m1_before, 'eviction: a rebuilt slot goes on past its earlier timestamps');
is(shown('m1'), $m1_after, 'eviction: clock() is the latest write');
my $kv_again = q1(q{SELECT scuttlebutt.set('kv', 'after_eviction', '1')});
cmp_ok($kv_again, '>', $after, 'eviction: kv too');
is( q1(q{SELECT bool_and(ok) FROM (SELECT (h -> 1)::text::float8 > lag((h -> 1)::text::float8, 1, '-infinity')
			OVER (ORDER BY ordinality) AS ok FROM scuttlebutt.history('kv') WITH ORDINALITY h) s}),
	't', 'eviction: kv history is still in increasing timestamp order');

# ---- one transaction over the limit ----
my ($rc, $stdout, $stderr) = $node->psql('postgres', qq{
	BEGIN;
	SELECT count(scuttlebutt.set('m' || i, 'over', '1')) FROM generate_series(1, $slots + 1) i;
	COMMIT;});
like($stderr, qr/ERROR:  too many scuttlebutt models are being written at once/,
	'a transaction writing more models than there are slots gets a clear error');
like($stderr, qr/DETAIL:  Running transactions hold timestamps of $slots models\./, '... with a detail');
is(q1(q{SELECT count(*) FROM scuttlebutt.updates WHERE key = 'over'}), 0, '... and nothing of it stays');
my $m2 = q1(q{SELECT scuttlebutt.set('m2', 'k3', '3')});
cmp_ok($m2, '>', q1(q{SELECT max(ts) FROM scuttlebutt.entries('m2') WHERE key <> 'k3'}),
	'after that error, writes go on');

# ---- a later snapshot is never given less ----
# The writer's backend keeps 16 entries (SB_SEQ_ENTRIES); a snapshot held
# open (H) keeps them from being forgotten, so older ones are folded into
# its floor, which caps every snapshot taken before the latest folded
# commit with the smallest timestamp folded.
q1(q{SELECT scuttlebutt.create_model('fold')});
my $hold = $node->background_psql('postgres');
$hold->query_safe(q{BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1});
my $write_n = sub {
	my ($from, $to) = @_;
	q1(qq{DO \$\$ BEGIN FOR i IN $from..$to LOOP
		   PERFORM scuttlebutt.set('fold', 'k' || i, '1'); COMMIT; END LOOP; END \$\$});
};
$write_n->(1, 20);
my $reader = $node->background_psql('postgres');
my $first = $reader->query_safe(qq{SELECT scuttlebutt.clock('fold') ->> '$id'});
is($first, q1(q{SELECT max(ts) FROM scuttlebutt.entries('fold')}), 'fold: clock() is the latest write');
# a later snapshot, taken before the writer's next 17 commits and read after
$reader->query_safe(q{BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1});
$write_n->(21, 37);
my $later = $reader->query_safe(qq{SELECT scuttlebutt.clock('fold') ->> '$id'});
cmp_ok($later, '>=', $first, 'fold: a later snapshot\'s clock() is not below an earlier one\'s');
is($later, $first, 'fold: ... and holds none of the writes it does not see');
$reader->query_safe(q{COMMIT});
$hold->query_safe(q{COMMIT});
$_->quit for $reader, $hold;

$node->stop;
done_testing();

