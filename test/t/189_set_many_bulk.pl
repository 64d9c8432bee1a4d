# set_many() into a model that holds no key stores its rows by bulk insert
# (the table's multi-insert, as an initial sync's pages), with the same
# rows the upsert would store; into a model holding keys, or when a
# concurrent writer gets a key first, by bulk replace (190_set_many_replace);
# when the table has a trigger of its own, the upsert stores them, losing
# nothing.
#
#  - "bulk": 2,000 keys into an empty model (values with escapes and
#    non-ASCII text): stored by bulk insert (DEBUG1 says so), each row's
#    text the same as an upsert's of the same entries ("merged", which
#    held a key before), timestamps rising in key order, the clock at the
#    last; a second set_many() over the same keys replaces them;
#  - "race": session A writes k1..k1500 in an open transaction, session B
#    then k1000..k2500 into the same empty model: B's bulk insert waits for
#    A, meets A's keys, and all of B's (newer) values are stored;
#  - "trig": with a row trigger on scuttlebutt.updates, the upsert stores
#    the rows and the trigger sees each.
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
# a model's rows, as SQL
sub rows { return "(SELECT key, ts, doc FROM scuttlebutt.updates WHERE model_id = (SELECT id FROM scuttlebutt.registry WHERE name = '$_[0]'))" }

# set_many() with DEBUG1 messages; its stderr
sub set_many_debug
{
	my ($model, $entries_sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres',
		"SET client_min_messages = debug1; SELECT scuttlebutt.set_many('$model', $entries_sql)");
	is($rc, 0, "set_many() into $model succeeds") or diag($err);
	return $err;
}

my $entries = q{(SELECT jsonb_object_agg('k' || i, jsonb_build_object('i', i, 's', E'tab\t"q" \u00e9\u4e2d ' || i)) FROM generate_series(1, 2000) i)};

# ---- bulk ----
q1(q{SELECT scuttlebutt.create_model('bulk')});
q1(q{SELECT scuttlebutt.create_model('merged')});
q1(q{SELECT scuttlebutt.set('merged', 'held', '1')});
like(set_many_debug('bulk', $entries), qr/set_many\(\) stored 2000 keys of model "bulk" by bulk insert/,
	'bulk: 2,000 keys into an empty model are bulk inserted');
unlike(set_many_debug('merged', $entries), qr/by bulk insert/, 'merged: a model holding a key is upserted');
is(q1(q{SELECT count(*) FROM scuttlebutt.entries('bulk')}), 2000, 'bulk: 2,000 keys held');
is(q1(q{SELECT scuttlebutt.get('bulk', 'k7') ->> 's' = E'tab\t"q" \u00e9\u4e2d 7'}), 't',
	'bulk: a value reads back as written');
# each row's text, less its timestamp and source, as the upsert's
is( q1('SELECT count(*) FROM ' . rows('bulk') . ' b JOIN ' . rows('merged') . q{ m USING (key)
		WHERE regexp_replace(b.doc::text, ',[0-9.e+]+,"[^"]+"\]$', '') = regexp_replace(m.doc::text, ',[0-9.e+]+,"[^"]+"\]$', '')}),
	2000, 'bulk: every row holds the text the upsert stores');
is( q1(q{SELECT bool_and(ts > prev) FROM (SELECT ts, lag(ts, 1, '-infinity') OVER (ORDER BY key COLLATE "C") prev
		FROM } . rows('bulk') . ' r) s'),
	't', 'bulk: timestamps rise in key order');
is(q1(q{SELECT (scuttlebutt.clock('bulk') ->> (SELECT scuttlebutt.node_id()))::float8 = (SELECT max(ts) FROM } . rows('bulk') . ' r)'),
	't', "bulk: the model's clock is at its last write");
is(q1(q{SELECT count(*) FROM scuttlebutt.history('bulk')}), 2000, 'bulk: history() holds each update');
like(set_many_debug('bulk', q{(SELECT jsonb_object_agg('k' || i, 'again') FROM generate_series(1, 2000) i)}),
	qr/stored 2000 of 2000 keys of model "bulk" by bulk replace/,
	'bulk: a second set_many() over the held keys replaces them (190_set_many_replace)');
is(q1('SELECT count(*) FROM ' . rows('bulk') . q{ r WHERE doc::text LIKE '%"again"%'}), 2000,
	'bulk: and its values replace the first ones');

# ---- race ----
q1(q{SELECT scuttlebutt.create_model('race')});
my $holder = LibpqTest::hold($node,
	q{SELECT scuttlebutt.set_many('race', (SELECT jsonb_object_agg('k' || i, to_jsonb('a'::text)) FROM generate_series(1, 1500) i));},
	qr/^1500$/m);
ok($holder->{held}, 'race: A wrote 1,500 keys, not committed');
my ($waited, $b_out, $b_err) = LibpqTest::run_behind($node, $holder,
	q{SET client_min_messages = debug1; SELECT scuttlebutt.set_many('race', (SELECT jsonb_object_agg('k' || i, to_jsonb('b'::text)) FROM generate_series(1000, 2500) i))},
	q{set_many('race'});
ok($waited, "race: B's set_many() waits for A");
is($b_out, '1501', 'race: B wrote 1,501 keys');
unlike($b_err, qr/by bulk insert/, "race: B's keys were not bulk inserted (A's came first)");
is(q1(q{SELECT count(*) FROM scuttlebutt.entries('race')}), 2500, 'race: 2,500 keys held');
is(q1(q{SELECT string_agg(DISTINCT v, ',' ORDER BY v) FROM (SELECT scuttlebutt.get('race', 'k' || i) ::text v FROM generate_series(1000, 2500) i) s}),
	'"b"', "race: B's values win on every key it wrote");
is(q1(q{SELECT string_agg(DISTINCT v, ',' ORDER BY v) FROM (SELECT scuttlebutt.get('race', 'k' || i) ::text v FROM generate_series(1, 999) i) s}),
	'"a"', "race: A's stay where B did not write");

# ---- trig ----
q1(q{CREATE TABLE seen (n bigint); INSERT INTO seen VALUES (0)});
q1(q{CREATE FUNCTION count_row() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN UPDATE public.seen SET n = n + 1; RETURN NEW; END $$});
q1(q{CREATE TRIGGER count_row AFTER INSERT ON scuttlebutt.updates FOR EACH ROW EXECUTE FUNCTION public.count_row()});
q1(q{SELECT scuttlebutt.create_model('trig')});
unlike(set_many_debug('trig', q{(SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 1500) i)}),
	qr/by bulk insert/, 'trig: with a trigger on the table, the rows are upserted');
is(q1(q{SELECT n FROM seen}), 1500, 'trig: the trigger saw each row');
is(q1(q{SELECT count(*) FROM scuttlebutt.entries('trig')}), 1500, 'trig: 1,500 keys held');
q1(q{DROP TRIGGER count_row ON scuttlebutt.updates});

done_testing();
