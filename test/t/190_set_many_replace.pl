# set_many() over keys a model holds stores its rows by "bulk replace"
# (bulk_insert.c: each held row found by the key index, judged by the merge
# rule, deleted where older; the new rows multi-inserted), with the
# outcome the upsert gives: every key one row, the newer update kept,
# concurrent writers waited for, no deadlock.
#
#  - "replace": 2,200 keys over a model holding 2,000 of them, one of
#    which (k7) a peer holds at a future timestamp: 2,199 stored by bulk
#    replace, k7 written again past the peer's (as the upsert path does);
#    one row per key, every value the new one, history() and the clock as
#    after an upsert;
#  - "twice": two set_many() over the same keys in one transaction: the
#    second replaces the rows the first inserted;
#  - "wait": session A holds an uncommitted set() of a held key and one of
#    a new key; B's set_many() over both waits for A, then replaces A's
#    (older) rows;
#  - "rr": in a REPEATABLE READ transaction the upsert stores the rows;
#  - "read only": in a read-only transaction set_many() fails, over held
#    keys or into an empty model, as the upsert fails;
#  - "both": two sessions write the same 3,000 held keys at once, ten
#    times: neither fails (no deadlock), every key one row.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = LibpqTest::new_node('n');
sub q1 { LibpqTest::q1($node, @_) }
sub model_rows { return "(SELECT key, source, ts, doc FROM scuttlebutt.updates WHERE model_id = (SELECT id FROM scuttlebutt.registry WHERE name = '$_[0]'))" }

# set_many() with DEBUG1 messages (after the statements in $pre); its stderr
sub set_many_debug
{
	my ($model, $entries_sql, $pre) = @_;
	$pre //= '';
	my ($rc, $out, $err) = $node->psql('postgres',
		"SET client_min_messages = debug1; $pre SELECT scuttlebutt.set_many('$model', $entries_sql); COMMIT");
	is($rc, 0, "set_many() into $model succeeds") or diag($err);
	return $err;
}
sub entries { my ($from, $to, $v) = @_; return qq{(SELECT jsonb_object_agg('k' || i, jsonb_build_object('v', $v, 'i', i)) FROM generate_series($from, $to) i)} }
# how many keys of model hold value v (an SQL expression)
sub holding { my ($model, $v) = @_; return q1(qq{SELECT count(*) FROM scuttlebutt.entries('$model') WHERE value ->> 'v' = $v}) }

# ---- replace ----
q1(q{SELECT scuttlebutt.create_model('r')});
like(set_many_debug('r', entries(1, 2000, q{'one'})), qr/stored 2000 keys of model "r" by bulk insert/,
	'replace: the first 2,000 keys are bulk inserted');
q1(q{SELECT scuttlebutt.apply_update('r', format('[["k7",{"v":"peer"}],%s,"F"]',
	(extract(epoch FROM clock_timestamp()) * 1000 + 30000)::bigint)::json)});
my $future = q1(q{SELECT ts FROM scuttlebutt.entries('r') WHERE key = 'k7'});
like(set_many_debug('r', entries(1, 2200, q{E'two \u00e9\t"q"'})),
	qr/stored 2199 of 2200 keys of model "r" by bulk replace/,
	'replace: 2,199 of 2,200 keys stored by bulk replace (k7 lost to the peer)');
is(q1('SELECT count(*), count(DISTINCT key) FROM ' . model_rows('r') . ' r'), '2200|2200',
	'replace: one row per key, none left over');
is(holding('r', q{E'two \u00e9\t"q"'}), 2200, 'replace: every key holds the new value');
is(q1(qq{SELECT ts > $future AND source = scuttlebutt.node_id() FROM scuttlebutt.entries('r') WHERE key = 'k7'}),
	't', "replace: k7 was written again past the peer's update");
is(q1(q{SELECT count(*) FROM scuttlebutt.history('r')}), 2200, 'replace: history() holds one update per key');
is(q1('SELECT count(*) FROM ' . model_rows('r') . ' r WHERE source = scuttlebutt.node_id()'), 2200,
	"replace: all of them this node's");
is( q1(q{SELECT bool_and(ts > prev) FROM (SELECT ts, lag(ts, 1, '-infinity') OVER (ORDER BY key COLLATE "C") prev
		FROM } . model_rows('r') . q{ r WHERE key <> 'k7') s}),
	't', 'replace: timestamps rise in key order');
is(q1(q{SELECT (scuttlebutt.clock('r') ->> (SELECT scuttlebutt.node_id()))::float8 = (SELECT max(ts) FROM } . model_rows('r') . ' r)'),
	't', "replace: the model's clock is at its last write");
is(q1(q{SELECT scuttlebutt.get('r', 'k2100') ->> 'i'}), '2100', 'replace: a new key reads back');

# ---- twice ----
q1(q{SELECT scuttlebutt.create_model('twice')});
q1('SELECT scuttlebutt.set_many(\'twice\', ' . entries(1, 1200, q{'zero'}) . ')');
like(set_many_debug('twice', entries(1, 1200, q{'b'}),
		'BEGIN; SELECT scuttlebutt.set_many(\'twice\', ' . entries(1, 1200, q{'a'}) . ');'),
	qr/stored 1200 of 1200 keys of model "twice" by bulk replace(?s:.*)stored 1200 of 1200 keys of model "twice" by bulk replace/,
	'twice: both set_many() in one transaction replace by bulk');
is(q1('SELECT count(*) FROM ' . model_rows('twice') . ' r'), 1200, 'twice: one row per key');
is(holding('twice', q{'b'}), 1200, 'twice: the second set_many() wins');

# ---- wait ----
q1(q{SELECT scuttlebutt.create_model('w')});
q1('SELECT scuttlebutt.set_many(\'w\', ' . entries(1, 1500, q{'zero'}) . ')');
my $holder = LibpqTest::hold($node,
	qq{SELECT scuttlebutt.set('w', 'k5', '{"v":"a"}') IS NOT NULL;\nSELECT scuttlebutt.set('w', 'k1600', '{"v":"a"}') IS NOT NULL;},
	qr/^t\nt$/m);
ok($holder->{held}, 'wait: A set k5 and the new k1600, not committed');
my ($waited, $b_out, $b_err) = LibpqTest::run_behind($node, $holder,
	q{SET client_min_messages = debug1; SELECT scuttlebutt.set_many('w', } . entries(1, 1600, q{'b'}) . ')',
	q{set_many('w'});
ok($waited, "wait: B's set_many() waits for A");
is($b_out, '1600', 'wait: B wrote 1,600 keys');
like($b_err, qr/stored 1600 of 1600 keys of model "w" by bulk replace/, "wait: B replaced A's rows by bulk");
is(holding('w', q{'b'}), 1600, "wait: B's values win on every key");
is(q1('SELECT count(*) FROM ' . model_rows('w') . ' r'), 1600, 'wait: one row per key');

# ---- rr ----
unlike(set_many_debug('w', entries(1, 1600, q{'rr'}), 'BEGIN ISOLATION LEVEL REPEATABLE READ;'),
	qr/by bulk/, 'rr: in a REPEATABLE READ transaction the rows are upserted');
is(holding('w', q{'rr'}), 1600, 'rr: and replace the held ones');

# ---- read only ----
for my $m ('w', 'empty')
{
	q1(qq{SELECT scuttlebutt.create_model('$m') WHERE NOT EXISTS (SELECT FROM scuttlebutt.registry WHERE name = '$m')});
	my ($rc, $out, $err) = $node->psql('postgres',
		"BEGIN READ ONLY; SELECT scuttlebutt.set_many('$m', " . entries(1, 1600, q{'ro'}) . ')');
	isnt($rc, 0, "read only: set_many() into $m in a read-only transaction fails");
	like($err, qr/read-only transaction/, 'read only: with the read-only error');
	is(holding($m, q{'ro'}), 0, "read only: $m holds none of its values");
}

# ---- both ----
q1(q{SELECT scuttlebutt.create_model('both')});
q1('SELECT scuttlebutt.set_many(\'both\', ' . entries(1, 3000, q{'zero'}) . ')');
my $failed = 0;
for my $round (1 .. 10)
{
	my @runs = map {
		LibpqTest::start_psql($node,
			q{SET client_min_messages = debug1; SELECT scuttlebutt.set_many('both', } . entries(1, 3000, "'$_$round'") . ')')
	} ('x', 'y');
	for my $r (@runs)
	{
		my ($out, $err) = LibpqTest::finish_psql($r);
		next if $out eq '3000' && $err =~ /keys of model "both" by bulk replace/;
		$failed++;
		diag("both, round $round: $err");
	}
}
is($failed, 0, 'both: twenty concurrent set_many() over the same keys all succeed, by bulk replace');
is(q1('SELECT count(*), count(DISTINCT key) FROM ' . model_rows('both') . ' r'), '3000|3000', 'both: one row per key');
is(q1(q{SELECT count(*) FROM scuttlebutt.entries('both') WHERE value ->> 'v' IN ('x10', 'y10')}), 3000,
	"both: every key holds the last round's value");

done_testing();
