# Live replication over libpq, both ways: D dials R for a key/value model,
# an events log and a value.
#
#  - latency: single writes at R reach D, and writes at D reach R, each
#    within a few seconds (the pull waits for R's commit in
#    wait_for_commit(); the push follows D's commit);
#  - sustained load: twenty rounds of set_many batches (5,000 new keys
#    each side per round, plus 1,000 keys both sides overwrite every
#    round), 500 events each side per round and a value each side per
#    round, written at both sides at once with no pause between rounds;
#    both sides end with the same history and clock, exact counts, and
#    every contested key and the value hold a write of the last round;
#  - values of 600 kB and 3 MB go both ways, and updates whose text is
#    not what JSON.stringify writes arrive byte for byte;
#  - a remote without the library preloaded is still replicated with,
#    its changes pulled at the next poll (at most 5 s later).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time);

my $nr = LibpqTest::new_node('r');
my $nd = LibpqTest::new_node('d');
sub qr1 { LibpqTest::q1($nr, @_) }
sub qd { LibpqTest::q1($nd, @_) }
my $id_r = qr1('SELECT scuttlebutt.node_id()');
my $id_d = qd('SELECT scuttlebutt.node_id()');

for my $n ($nr, $nd)
{
	LibpqTest::q1($n, q{
		SELECT scuttlebutt.create_model('kv', 'model');
		SELECT scuttlebutt.create_model('ev', 'events');
		SELECT scuttlebutt.create_model('val', 'value');
	});
}
my %peer = map { ($_ => LibpqTest::add_peer($nd, $_, LibpqTest::conninfo($nr))) } qw(kv ev val);
is(qd(q{SELECT scuttlebutt.wait_for_sync('kv', '60s') AND scuttlebutt.wait_for_sync('ev', '60s')
		AND scuttlebutt.wait_for_sync('val', '60s')}), 't', 'the three peers sync (empty models)');
is(qd(q{SELECT string_agg(state || '/' || transport, ',') FROM scuttlebutt.peer_status}),
	'live/libpq,live/libpq,live/libpq', 'D: three live libpq peers');

# ---- latency ----
my (@to_d, @to_r);
for my $i (1 .. 10)
{
	my $t = time;
	qr1("SELECT scuttlebutt.set('kv', 'lat_r$i', '$i')");
	my $ok = LibpqTest::poll($nd, "SELECT scuttlebutt.get('kv', 'lat_r$i') = '$i'", 5);
	push @to_d, $ok ? time - $t : 99;
	$t = time;
	qd("SELECT scuttlebutt.set('kv', 'lat_d$i', '$i')");
	$ok = LibpqTest::poll($nr, "SELECT scuttlebutt.get('kv', 'lat_d$i') = '$i'", 5);
	push @to_r, $ok ? time - $t : 99;
}
@to_d = sort { $a <=> $b } @to_d;
@to_r = sort { $a <=> $b } @to_r;
note(sprintf('R to D: median %.3fs, max %.3fs; D to R: median %.3fs, max %.3fs (including psql and polling)',
	$to_d[4], $to_d[-1], $to_r[4], $to_r[-1]));
cmp_ok($to_d[-1], '<', 5, 'each of 10 writes at R was visible on D within 5 s');
cmp_ok($to_r[-1], '<', 5, 'each of 10 writes at D was visible on R within 5 s');
qr1(q{SELECT scuttlebutt.emit('ev', 'lat', '"r"')});
ok(LibpqTest::poll($nd, q{SELECT count(*) = 1 FROM scuttlebutt.events('ev') WHERE data = '"r"'}, 5),
	'an event at R is visible on D within 5 s');
qd(q{SELECT scuttlebutt.emit('ev', 'lat', '"d"')});
ok(LibpqTest::poll($nr, q{SELECT count(*) = 1 FROM scuttlebutt.events('ev') WHERE data = '"d"'}, 5),
	'an event at D is visible on R within 5 s');
qr1(q{SELECT scuttlebutt.set_value('val', '"r"')});
ok(LibpqTest::poll($nd, q{SELECT scuttlebutt.get_value('val') = '"r"'}, 5), 'a value set at R is visible on D within 5 s');
qd(q{SELECT scuttlebutt.set_value('val', '"d"')});
ok(LibpqTest::poll($nr, q{SELECT scuttlebutt.get_value('val') = '"d"'}, 5), 'a value set at D is visible on R within 5 s');

# ---- sustained batches ----
# Each side runs its rounds in its own session, both at once, while the
# peer replicates; each statement is its own transaction.
my $rounds = 20;
sub round_sql
{
	my ($p, $round) = @_;
	return qq{
		SELECT scuttlebutt.set_many('kv', (SELECT jsonb_object_agg('$p${round}_' || i, i) FROM generate_series(1, 5000) i));
		SELECT scuttlebutt.set_many('kv', (SELECT jsonb_object_agg('shared_' || i,
			jsonb_build_object('round', $round, 'by', '$p')) FROM generate_series(1, 1000) i));
		SELECT count(scuttlebutt.emit('ev', '$p$round', to_jsonb(i))) FROM generate_series(1, 500) i;
		SELECT scuttlebutt.set_value('val', jsonb_build_object('round', $round, 'by', '$p'));
	};
}
my $t0 = time;
my %writer;
for my $side ([ $nd, 'd' ], [ $nr, 'r' ])
{
	my ($n, $p) = @$side;
	# (files, not scalars: IPC::Run feeds scalars only when pumped)
	my $base = PostgreSQL::Test::Utils::tempdir() . "/writer_$p";
	open my $fh, '>', "$base.sql" or die $!;
	print $fh join('', map { round_sql($p, $_) } 1 .. $rounds);
	close $fh;
	my $w = { err => "$base.err" };
	$w->{h} = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $n->connstr('postgres'), '-f', "$base.sql" ],
		'<', \undef, '>', "$base.out", '2>', "$base.err");
	$writer{$p} = $w;
}
ok(LibpqTest::poll($nd, q{SELECT scuttlebutt.get('kv', 'r1_1') IS NOT NULL}, 60)
	  && LibpqTest::poll($nr, q{SELECT scuttlebutt.get('kv', 'd1_1') IS NOT NULL}, 60),
	'sustained: the first round of each side reaches the other');
note('R\'s writer was ' . ($writer{r}{h}->pumpable ? 'still' : 'no longer') . ' writing when its first round reached D');
for my $p (qw(d r))
{
	my $w = $writer{$p};
	ok(eval { $w->{h}->finish } && $w->{h}->result == 0, "sustained: the writer at " . uc($p) . " ran its $rounds rounds")
	  or diag(slurp_file($w->{err}));
}
note(sprintf('%d rounds written at both sides at once in %.2fs', $rounds, time - $t0));
is(qd(q{SELECT scuttlebutt.wait_for_sync('kv', '120s') AND scuttlebutt.wait_for_sync('ev', '120s')
		AND scuttlebutt.wait_for_sync('val', '120s')}), 't', 'sustained: wait_for_sync on D');
for my $m (qw(kv ev val))
{
	ok(LibpqTest::wait_converged($m, [ $nr, $nd ], 20), "sustained: $m converged");
}
note(sprintf('converged %.2fs after the first round', time - $t0));
my $want_keys = 20 + 2 * $rounds * 5000 + 1000;
for my $n ($nr, $nd)
{
	my $name = $n->name;
	is(LibpqTest::q1($n, q{SELECT count(*) FROM scuttlebutt.keys('kv')}), $want_keys, "$name: kv holds $want_keys keys");
	is(LibpqTest::q1($n, qq{SELECT count(*) FROM scuttlebutt.entries('kv') WHERE key LIKE 'shared\\_%' AND value->>'round' = '$rounds'}),
		1000, "$name: every contested key holds a write of the last round");
	is(LibpqTest::q1($n, q{SELECT count(*) FROM scuttlebutt.keys('kv') k WHERE k ~ '^[dr]\d+_\d+$'}),
		2 * $rounds * 5000, "$name: every batch key is there");
	is(LibpqTest::q1($n, qq{SELECT string_agg(source || ':' || n, ',' ORDER BY source = '$id_d') FROM
			(SELECT source, count(*) n FROM scuttlebutt.events('ev') GROUP BY source) s}),
		"$id_r:" . (1 + $rounds * 500) . ",$id_d:" . (1 + $rounds * 500), "$name: ev holds each side's events once");
	is(LibpqTest::q1($n, q{SELECT count(*) FROM (SELECT DISTINCT event, data, source FROM scuttlebutt.events('ev')) s}),
		2 * (1 + $rounds * 500), "$name: no event twice");
	is(LibpqTest::q1($n, q{SELECT scuttlebutt.get_value('val')->>'round'}), $rounds, "$name: the value is of the last round");
}
is(qd(q{SELECT scuttlebutt.to_json('kv') = } . LibpqTest::lit(qr1(q{SELECT scuttlebutt.to_json('kv')})) . '::jsonb'),
	't', 'sustained: same to_json');
is(qd(q{SELECT scuttlebutt.get_value('val')}), qr1(q{SELECT scuttlebutt.get_value('val')}), 'sustained: same value');
for my $m (qw(kv ev val))
{
	my $r = LibpqTest::peer($nd, "peer_id = $peer{$m}");
	# A lock cycle between D's writer and the worker's apply costs the
	# worker's transaction (it yields: deadlock_timeout 100ms), never the
	# writer's; the session then resumes.  Anything else is a fault.
	my $err = $r->{last_error};
	$err = undef if defined $err && $err eq 'database error: deadlock detected';
	is_deeply([ $r->{state}, $r->{rejected}, $err ], [ 'live', 0, undef ],
		"$m: D's peer live, nothing rejected, no error but a deadlock the worker yielded");
}

# still live after the load
qr1(q{SELECT scuttlebutt.set('kv', 'after_load', '"r"')});
ok(LibpqTest::poll($nd, q{SELECT scuttlebutt.get('kv', 'after_load') = '"r"'}, 5), 'after the load: a write at R reaches D within 5 s');
qd(q{SELECT scuttlebutt.set('kv', 'after_load_d', '"d"')});
ok(LibpqTest::poll($nr, q{SELECT scuttlebutt.get('kv', 'after_load_d') = '"d"'}, 5), 'after the load: a write at D reaches R within 5 s');

# ---- large updates, and updates kept byte for byte ----
# A value much larger than a push buffer (256 kB) or a stream line
# (max_line_bytes, 1MB), each way; remote updates whose text is not what
# JSON.stringify writes (spacing, number notation, escapes) must reach the
# other side byte for byte, as they were stored.
for my $size (600_000, 3_000_000)
{
	qr1("SELECT scuttlebutt.set('kv', 'big_r$size', to_jsonb(repeat('r', $size)))");
	qd("SELECT scuttlebutt.set('kv', 'big_d$size', to_jsonb(repeat('d', $size)))");
	ok(LibpqTest::poll($nd, "SELECT length(scuttlebutt.get('kv', 'big_r$size') #>> '{}') = $size", 30),
		"a $size-character value set at R reaches D");
	ok(LibpqTest::poll($nr, "SELECT length(scuttlebutt.get('kv', 'big_d$size') #>> '{}') = $size", 30),
		"a $size-character value set at D reaches R");
}
my $odd_r = '[["odd_r",{"z":1,  "a":[1,2.50], "u":"\u00e9\u2028\ud83d\ude00"}],1795477184259.5,"THIRD"]';
my $odd_d = '[["odd_d" , 1E21 ],1795477184260,"FOURTH"]';
qr1('SELECT scuttlebutt.apply_update(\'kv\', ' . LibpqTest::lit($odd_r) . ')');
qd('SELECT scuttlebutt.apply_update(\'kv\', ' . LibpqTest::lit($odd_d) . ')');
ok(LibpqTest::poll($nd, q{SELECT scuttlebutt.get('kv', 'odd_r') IS NOT NULL}, 10), 'an update of a third node applied at R reaches D');
ok(LibpqTest::poll($nr, q{SELECT scuttlebutt.get('kv', 'odd_d') IS NOT NULL}, 10), 'an update of a fourth node applied at D reaches R');
is(qd(q{SELECT h::text FROM scuttlebutt.history('kv', '{}') h WHERE h::text LIKE '[["odd_r"%'}), $odd_r,
	'D holds it byte for byte as R received it');
is(qr1(q{SELECT h::text FROM scuttlebutt.history('kv', '{}') h WHERE h::text LIKE '[["odd_d"%'}), $odd_d,
	'R holds it byte for byte as D received it');
ok(LibpqTest::wait_converged('kv', [ $nr, $nd ], 30), 'large and odd updates: kv converged');

# ---- a remote without the library preloaded ----
# poll() there cannot wait for commits in shared memory: a change waits for
# the next poll (at most 5 s), and replication still works both ways.
my $np = LibpqTest::new_node('np', preload => 0);
is(LibpqTest::q1($np, q{SHOW shared_preload_libraries}), '', 'np: the library is not preloaded');
LibpqTest::q1($np, q{SELECT scuttlebutt.create_model('np'); SELECT scuttlebutt.set('np', 'before', '"np"')});
qd(q{SELECT scuttlebutt.create_model('np'); SELECT scuttlebutt.set('np', 'before_d', '"d"')});
my $np_peer = LibpqTest::add_peer($nd, 'np', LibpqTest::conninfo($np));
is(qd(q{SELECT scuttlebutt.wait_for_sync('np', '60s')}), 't', 'np: wait_for_sync on D');
ok(LibpqTest::wait_converged('np', [ $np, $nd ], 30), 'np: converged');
my $t = time;
LibpqTest::q1($np, q{SELECT scuttlebutt.set('np', 'live', '"np"')});
ok(LibpqTest::poll($nd, q{SELECT scuttlebutt.get('np', 'live') = '"np"'}, 8), 'np: a write there reaches D within 8 s');
note(sprintf('np: a write there reached D in %.2fs', time - $t));
qd(q{SELECT scuttlebutt.set('np', 'live_d', '"d"')});
ok(LibpqTest::poll($np, q{SELECT scuttlebutt.get('np', 'live_d') = '"d"'}, 8), 'np: a write at D reaches it within 8 s');
ok(LibpqTest::wait_converged('np', [ $np, $nd ], 30), 'np: converged after live writes');
is(LibpqTest::peer($nd, "peer_id = $np_peer")->{state}, 'live', 'np: the peer is live');

$_->stop for ($nr, $nd, $np);
done_testing();
