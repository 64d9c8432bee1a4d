# A lone update of another node's source (as a live pull brings them, or
# apply_update() of one) is applied by direct table access
# (lone_apply.c): the clock row advanced, then the key's row replaced
# (deleted and inserted) or inserted, with the outcomes of the one SQL
# statement it replaces.  Which path ran shows in the transaction's table
# statistics: a replacement deletes a row of scuttlebutt.updates, the
# statement's upsert updates it.
#
#  - "direct": a newer update of a held key replaces it (one delete, one
#    insert), a new key is inserted, an update the clock already passed
#    writes nothing, one that loses to a newer held row advances the clock
#    only, two in one statement both apply;
#  - "wait": a local set() of the same new key, not committed, is waited
#    for, then replaced by the newer update;
#  - "trigger": a trigger on scuttlebutt.updates, or one of a user's on
#    scuttlebutt.clocks, sends the update through the statement, which
#    fires it; so does an index of a user's on clocks;
#  - "read only": in a read-only transaction apply_update() fails as the
#    statement does, writing nothing;
#  - "published": with scuttlebutt.updates in a publication, rows are
#    updated, not replaced (subscribers get an UPDATE), here and by a
#    large set_many().
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

# apply_update(model, line) in its own transaction; its result, then the
# transaction's inserted/updated/deleted rows of updates, updated rows of clocks
sub apply_counted
{
	my ($model, $line) = @_;
	return q1(qq{BEGIN;
		SELECT scuttlebutt.apply_update('$model', '$line')
			|| ' ' || pg_stat_get_xact_tuples_inserted('scuttlebutt.updates'::regclass)
			|| '/' || pg_stat_get_xact_tuples_updated('scuttlebutt.updates'::regclass)
			|| '/' || pg_stat_get_xact_tuples_deleted('scuttlebutt.updates'::regclass)
			|| ' ' || pg_stat_get_xact_tuples_updated('scuttlebutt.clocks'::regclass);
		COMMIT});
}
sub clock_of { my ($model, $source) = @_; return q1(qq{SELECT scuttlebutt.clock('$model') ->> '$source'}) }

# ---- direct ----
q1(q{SELECT scuttlebutt.create_model('m')});
is(q1(q{SELECT scuttlebutt.apply_update('m', '[["k1",1],1000,"A"]')}), 't', 'direct: the first update of A is stored');
is(apply_counted('m', '[["k1",2],2000,"A"]'), 'true 1/0/1 1', 'direct: a newer update of k1 replaces its row');
is(q1(q{SELECT scuttlebutt.get('m', 'k1')}), '2', 'direct: k1 holds the new value');
is(clock_of('m', 'A'), '2000', "direct: A's clock advanced");
is(apply_counted('m', '[["k2",1],3000,"A"]'), 'true 1/0/0 1', 'direct: a new key is inserted');
is(apply_counted('m', '[["k2",9],2500,"A"]'), 'false 0/0/0 0', 'direct: an update the clock passed writes nothing');
is(q1(q{SELECT scuttlebutt.get('m', 'k2')}), '1', 'direct: k2 is unchanged');
q1(q{SELECT scuttlebutt.apply_update('m', '[["x",1],1000,"B"]')});
is(apply_counted('m', '[["k1",3],1500,"B"]'), 'false 0/0/0 1',
	"direct: an update losing to k1's newer row advances B's clock only");
is(q1(q{SELECT scuttlebutt.get('m', 'k1')}), '2', 'direct: k1 keeps the newer value');
is(clock_of('m', 'B'), '1500', "direct: B's clock is at the lost update");
is(q1(q{SELECT scuttlebutt.apply_update('m', '[["k3",1],4000,"A"]') AND scuttlebutt.apply_update('m', '[["k3",2],5000,"A"]')}),
	't', 'direct: two updates of one key in one statement both apply');
is(q1(q{SELECT scuttlebutt.get('m', 'k3')}), '2', 'direct: k3 holds the second');
is(q1(q{SELECT count(*) FROM scuttlebutt.updates WHERE model_id = (SELECT id FROM scuttlebutt.registry WHERE name = 'm')}),
	4, 'direct: one row per key (k1, k2, k3, x)');

# ---- wait ----
my $future = q1(q{SELECT (extract(epoch FROM clock_timestamp()) * 1000 + 20000)::bigint});
my $holder = LibpqTest::hold($node, q{SELECT scuttlebutt.set('m', 'k9', '"local"') IS NOT NULL;}, qr/^t$/m);
ok($holder->{held}, 'wait: a local set() of the new key k9, not committed');
my ($waited, $y_out, $y_err) = LibpqTest::run_behind($node, $holder,
	qq{SELECT scuttlebutt.apply_update('m', '[["k9","peer"],$future,"A"]')}, q{apply_update('m'});
ok($waited, 'wait: the peer update of k9 waits for it');
is($y_out, 't', 'wait: then stores the newer update') or diag($y_err);
is(q1(q{SELECT scuttlebutt.get('m', 'k9')}), '"peer"', 'wait: k9 holds it');

# ---- trigger ----
q1(q{CREATE TABLE seen (tab text, n int)});
q1(q{CREATE FUNCTION count_row() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN INSERT INTO public.seen VALUES (TG_TABLE_NAME, 1); RETURN NEW; END $$});
q1(q{CREATE TRIGGER count_row AFTER INSERT OR UPDATE ON scuttlebutt.updates FOR EACH ROW EXECUTE FUNCTION public.count_row()});
is(apply_counted('m', '[["k1",4],' . ($future + 1) . ',"A"]'), 'true 0/1/0 1', 'trigger: with a trigger on updates the row is upserted');
is(q1(q{SELECT count(*) FROM seen WHERE tab = 'updates'}), 1, 'trigger: which fires it');
q1(q{DROP TRIGGER count_row ON scuttlebutt.updates});
q1(q{CREATE TRIGGER count_row AFTER UPDATE ON scuttlebutt.clocks FOR EACH ROW EXECUTE FUNCTION public.count_row()});
is(apply_counted('m', '[["k1",5],' . ($future + 2) . ',"A"]'), 'true 0/1/0 1', 'trigger: with a trigger of ours on clocks the statement applies');
is(q1(q{SELECT count(*) FROM seen WHERE tab = 'clocks'}), 1, 'trigger: and the trigger fires');
q1(q{DROP TRIGGER count_row ON scuttlebutt.clocks});
is(apply_counted('m', '[["k1",6],' . ($future + 3) . ',"A"]'), 'true 1/0/1 1', 'trigger: without them, replaced again');

q1(q{CREATE INDEX clocks_by_ts ON scuttlebutt.clocks (ts)});
is(apply_counted('m', '[["k1",61],' . ($future + 4) . ',"A"]'), 'true 0/1/0 1', 'trigger: with an index of ours on clocks the statement applies');
q1(q{DROP INDEX scuttlebutt.clocks_by_ts});

# ---- read only ----
my ($ro_rc, $ro_out, $ro_err) = $node->psql('postgres',
	q{BEGIN READ ONLY; SELECT scuttlebutt.apply_update('m', '[["k1",62],} . ($future + 5) . q{,"A"]')});
isnt($ro_rc, 0, 'read only: apply_update() in a read-only transaction fails');
like($ro_err, qr/read-only transaction/, 'read only: with the read-only error');
is(clock_of('m', 'A'), $future + 4, "read only: A's clock did not move");

# ---- published ----
q1(q{CREATE PUBLICATION pub FOR TABLE scuttlebutt.updates WITH (publish = 'insert, update')});
is(apply_counted('m', '[["k1",7],' . ($future + 6) . ',"A"]'), 'true 0/1/0 1', 'published: a lone update updates the row');
q1(q{SELECT scuttlebutt.create_model('many')});
q1(q{SELECT scuttlebutt.set_many('many', (SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 1500) i))});
is(q1(q{BEGIN;
	SELECT scuttlebutt.set_many('many', (SELECT jsonb_object_agg('k' || i, -i) FROM generate_series(1, 1500) i));
	SELECT pg_stat_get_xact_tuples_updated('scuttlebutt.updates'::regclass) || '/' || pg_stat_get_xact_tuples_deleted('scuttlebutt.updates'::regclass);
	COMMIT}), "1500\n1500/0", 'published: set_many() over held keys updates them, deleting none');
is(q1(q{SELECT count(*) FROM scuttlebutt.entries('many') WHERE value::text LIKE '-%'}), 1500, 'published: every key holds the new value');

done_testing();
