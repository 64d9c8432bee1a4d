# A local set() of a latest-per-key model is written by direct table
# access (store.c, write_key_direct, as a live pull's lone update is):
# the key's held row replaced (deleted and inserted) or a new key
# inserted, with the outcomes of the upsert statement it replaces.  Which
# path ran shows in the transaction's table statistics: a replacement
# deletes a row of scuttlebutt.updates, the upsert updates it.
#
#  - "direct": a held key is replaced (the direct path's mark); a new key
#    is inserted and two set()s of one key in one statement both apply,
#    each timestamp past the last (either path's outcomes);
#  - "ahead": a key holding a peer's update from 20 s ahead (within
#    max_clock_skew) is written past it, in the same transaction,
#    replaced;
#  - "wait": another session's set() of the same new key, not committed,
#    is waited for, then replaced (its row deleted);
#  - "statement": where the direct write does not suit, the upsert runs,
#    with its own outcomes: a trigger on scuttlebutt.updates (which
#    fires), a repeatable read transaction, a published table, a value
#    model; a read-only transaction fails as the statement does.
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

# $query (one boolean) in its own transaction (begun with $begin): SQL
# whose output is its result, then the rows of updates the transaction
# inserted/updated/deleted
sub counted_sql
{
	my ($query, $begin) = @_;
	return ($begin // 'BEGIN') . qq{;
		$query;
		SELECT pg_stat_get_xact_tuples_inserted('scuttlebutt.updates'::regclass)
			|| '/' || pg_stat_get_xact_tuples_updated('scuttlebutt.updates'::regclass)
			|| '/' || pg_stat_get_xact_tuples_deleted('scuttlebutt.updates'::regclass);
		COMMIT};
}

# set('m', key, value) so: the rows it inserted/updated/deleted
sub set_counted
{
	my ($key, $value, $begin) = @_;
	return q1(counted_sql("SELECT scuttlebutt.set('m', '$key', '$value') IS NOT NULL", $begin)) =~ s/^t\n//r;
}
sub value_of { my ($key) = @_; return q1(qq{SELECT scuttlebutt.get('m', '$key')}) }

q1(q{SELECT scuttlebutt.create_model('m')});

# ---- direct (only the replacement tells the paths apart) ----
is(set_counted('k1', '1'), '1/0/0', 'a new key is inserted');
is(set_counted('k1', '2'), '1/0/1', 'direct: a held key is replaced');
is(value_of('k1'), '2', 'direct: k1 holds the new value');
is(q1(q{SELECT scuttlebutt.set('m', 'k2', '1') < scuttlebutt.set('m', 'k2', '2')}), 't',
	'two set()s of one key in one statement, the second past the first');
is(value_of('k2'), '2', 'k2 holds the second');
is(q1(q{SELECT count(*) FROM scuttlebutt.updates WHERE model_id = (SELECT id FROM scuttlebutt.registry WHERE name = 'm')}),
	2, 'one row per key');

# ---- ahead ----
my $future = q1(q{SELECT (extract(epoch FROM clock_timestamp()) * 1000 + 20000)::bigint});
q1(qq{SELECT scuttlebutt.apply_update('m', '[["a","peer"],$future,"F00DF00DF00DF00DF00DF00DF00DF00D"]')});
is(q1(counted_sql(qq{SELECT scuttlebutt.set('m', 'a', '"mine"') > $future})), "t\n1/0/1", "ahead: set() of a key a peer wrote ahead takes a timestamp past it, and replaces it");
is(value_of('a'), '"mine"', 'ahead: the key holds the local value');

# ---- wait ----
my $holder = LibpqTest::hold($node, q{SELECT scuttlebutt.set('m', 'k9', '"first"') IS NOT NULL;}, qr/^t$/m);
ok($holder->{held}, 'wait: a set() of the new key k9, not committed');
my ($waited, $out, $err) = LibpqTest::run_behind($node, $holder,
	counted_sql(q{SELECT scuttlebutt.set('m', 'k9', '"second"') IS NOT NULL}), q{set('m', 'k9', '"second"')});
ok($waited, "wait: another session's set() of k9 waits for it");
is($out, "t\n1/0/1", 'wait: then replaces its row') or diag($err);
is(value_of('k9'), '"second"', 'wait: k9 holds the later set()');
is(q1(q{SELECT count(*) FROM scuttlebutt.updates WHERE key = 'k9'}), 1, 'wait: one row of k9');

# ---- statement ----
q1(q{CREATE TABLE seen (n int)});
q1(q{CREATE FUNCTION count_row() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN INSERT INTO public.seen VALUES (1); RETURN NEW; END $$});
q1(q{CREATE TRIGGER count_row AFTER INSERT OR UPDATE ON scuttlebutt.updates FOR EACH ROW EXECUTE FUNCTION public.count_row()});
is(set_counted('k1', '3'), '0/1/0', 'statement: with a trigger on updates the key is upserted');
is(q1(q{SELECT count(*) FROM seen}), 1, 'statement: which fires it');
q1(q{DROP TRIGGER count_row ON scuttlebutt.updates});
is(set_counted('k1', '4', 'BEGIN ISOLATION LEVEL REPEATABLE READ'), '0/1/0',
	'statement: in a repeatable read transaction the key is upserted');
is(value_of('k1'), '4', 'statement: k1 holds the value');
q1(q{SELECT scuttlebutt.create_model('v', 'value')});
q1(q{SELECT scuttlebutt.set_value('v', '1')});
is(q1(counted_sql(q{SELECT scuttlebutt.set_value('v', '2') IS NOT NULL})), "t\n0/1/0", 'statement: a value model is upserted');
my ($ro_rc, $ro_out, $ro_err) = $node->psql('postgres', q{BEGIN READ ONLY; SELECT scuttlebutt.set('m', 'k1', '5')});
isnt($ro_rc, 0, 'statement: set() in a read-only transaction fails');
like($ro_err, qr/read-only transaction/, 'statement: with the read-only error');
q1(q{CREATE PUBLICATION pub FOR TABLE scuttlebutt.updates WITH (publish = 'insert, update')});
is(set_counted('k1', '6'), '0/1/0', 'statement: with updates published the key is updated');
is(value_of('k1'), '6', 'statement: k1 holds the value');

done_testing();
