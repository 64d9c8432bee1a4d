# An initial sync stores pages of new keys by bulk insert, and falls back to the
# merge, losing nothing, where the model already holds a key or a local
# writer races the sync.
#
# D dials R over libpq.  R holds 30,000 keys of each of two models.
#   - "bulk": D already holds k9998 and k9999, written after R's
#     (newer).  R's history comes in timestamp order, which is set_many's
#     key order (the keys' text order: "k1", "k10", "k100", ... "k9999"
#     last): the first pages are bulk inserted; the page that meets k9998
#     is stored by bulk replace (each held row kept if newer), and D's
#     values stay D's (the merge rule, not a unique violation).  D's log
#     says which path each page took (DEBUG1).
#   - "race": while D pulls, a session on D writes 2,000 of the same keys
#     (newer than R's): whichever of the bulk insert and the local writer reaches a
#     key first, the newer value must win on both servers.
#   - "exact": values with escapes and non-ASCII text; bulk inserted, D's
#     rows are R's, byte for byte (the lines are not re-encoded).
#   - "trig": D's scuttlebutt.updates has a row trigger of its own (added
#     after the others' syncs): no page is bulk inserted, the trigger sees
#     every row.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $n = 30000;
my $nr = LibpqTest::new_node('r');
my $nd = LibpqTest::new_node('d', conf => "log_min_messages = debug1\n");
sub qr1 { LibpqTest::q1($nr, @_) }
sub qd { LibpqTest::q1($nd, @_) }

for my $m (qw(bulk race))
{
	qr1(qq{SELECT scuttlebutt.create_model('$m')});
	qd(qq{SELECT scuttlebutt.create_model('$m')});
	qr1(qq{SELECT scuttlebutt.set_many('$m', (SELECT jsonb_object_agg('k' || i, jsonb_build_object('r', i))
		FROM generate_series(1, $n) i))});
}

# bulk: D's own, newer k9998 and k9999
qd(q{SELECT scuttlebutt.set_many('bulk', '{"k9998": "d", "k9999": "d"}')});
my $offset = -s $nd->logfile;
# (pull only: pushed first, D's values would supersede R's there, and R
# would send D nothing of those keys)
my $pull = LibpqTest::add_peer($nd, 'bulk', LibpqTest::conninfo($nr), send => 'false');
is(qd(q{SELECT scuttlebutt.wait_for_sync('bulk', '120s')}), 't', 'bulk: D syncs with R');
is(qd(q{SELECT count(*) FROM scuttlebutt.entries('bulk')}), $n, "bulk: D holds $n keys");
is(qd(q{SELECT string_agg(scuttlebutt.get('bulk', k)::text, ' ') FROM unnest(ARRAY['k9998', 'k9999']) k}),
	'"d" "d"', "bulk: D's newer k9998 and k9999 are kept");
is(qd(q{SELECT scuttlebutt.get('bulk', 'k1') ->> 'r'}), '1', "bulk: R's k1 is on D");
qd(qq{SELECT scuttlebutt.remove_peer($pull)});
LibpqTest::add_peer($nd, 'bulk', LibpqTest::conninfo($nr));
ok(LibpqTest::poll($nr, q{SELECT scuttlebutt.get('bulk', 'k9998') = '"d"' AND scuttlebutt.get('bulk', 'k9999') = '"d"'}, 60),
	"bulk: D's k9998 and k9999 reach R once D also sends");
my $log = substr(slurp_file($nd->logfile), $offset);
my $copied = () = $log =~ /scuttlebutt: (\d+) updates of model "bulk" stored by bulk insert/g;
cmp_ok($copied, '>=', 1, "bulk: pages of new keys were stored by bulk insert ($copied)");
like($log, qr/scuttlebutt: model "bulk" held a key of a batch of \d+ updates/,
	'bulk: a page met a held key');
like($log, qr/scuttlebutt: \d+ of \d+ updates of model "bulk" stored by bulk replace/,
	'bulk: and was stored by bulk replace');
ok(LibpqTest::wait_converged('bulk', [ $nr, $nd ], 60), 'bulk: R and D converge');

# race: a local writer on D during the pull
my $bg = $nd->background_psql('postgres');
LibpqTest::add_peer($nd, 'race', LibpqTest::conninfo($nr));
for my $lo (1, 10001, 20001, 28001)
{
	my $hi = $lo + 499;
	$bg->query_safe(qq{SELECT scuttlebutt.set_many('race', (SELECT jsonb_object_agg('k' || i, '"d"'::jsonb)
		FROM generate_series($lo, $hi) i))});
}
$bg->quit;
is(qd(q{SELECT scuttlebutt.wait_for_sync('race', '120s')}), 't', 'race: D syncs with R');
is(qd(q{SELECT count(*) FROM scuttlebutt.entries('race')}), $n, "race: D holds $n keys");
is(qd(q{SELECT count(*) FROM scuttlebutt.entries('race') WHERE value = '"d"'}), 2000,
	"race: D's 2,000 newer values won on D");
ok(LibpqTest::poll($nr, q{SELECT count(*) = 2000 FROM scuttlebutt.entries('race') WHERE value = '"d"'}, 60),
	"race: and reached R");
ok(LibpqTest::wait_converged('race', [ $nr, $nd ], 60), 'race: R and D converge');
is(qd(q{SELECT count(*) FROM scuttlebutt.entries('race') WHERE value ->> 'r' IS NOT NULL}), $n - 2000,
	"race: R's values of the other keys are on D");

# exact: the stored lines are the sent ones
my $exact_rows = q{SELECT md5(string_agg(source || ts::text || coalesce(key, '') || doc::text, ',' ORDER BY source, ts))
	FROM scuttlebutt.updates WHERE model_id = scuttlebutt._model_id('exact')};
for my $node ($nr, $nd)
{
	LibpqTest::q1($node, q{SELECT scuttlebutt.create_model('exact')});
}
qr1(q{SELECT scuttlebutt.set_many('exact', (SELECT jsonb_object_agg('k' || i,
	jsonb_build_object('s', E'caf\u00e9 "q" \\\\ \u2603 tab\t' || i, 'n', i * 0.5, 'a', jsonb_build_array(i, null, true)))
	FROM generate_series(1, 5000) i))});
$offset = -s $nd->logfile;
LibpqTest::add_peer($nd, 'exact', LibpqTest::conninfo($nr), send => 'false');
is(qd(q{SELECT scuttlebutt.wait_for_sync('exact', '120s')}), 't', 'exact: D syncs with R');
like(substr(slurp_file($nd->logfile), $offset), qr/scuttlebutt: \d+ updates of model "exact" stored by bulk insert/,
	'exact: stored by bulk insert');
is(qd($exact_rows), qr1($exact_rows), "exact: D's rows are R's, byte for byte");
is(qd(q{SELECT scuttlebutt.get('exact', 'k7') ->> 's' = E'caf\u00e9 "q" \\\\ \u2603 tab\t7'}), 't',
	'exact: a value reads back on D');

# trig: a trigger of D's own on the updates table sees every pulled row
qr1(qq{SELECT scuttlebutt.create_model('trig')});
qd(qq{SELECT scuttlebutt.create_model('trig')});
qr1(q{SELECT scuttlebutt.set_many('trig', (SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 5000) i))});
qd(q{CREATE TABLE public.seen (n bigint NOT NULL)});
qd(q{INSERT INTO public.seen VALUES (0)});
qd(q{CREATE FUNCTION public.count_row() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN UPDATE public.seen SET n = n + 1; RETURN NEW; END $$});
qd(q{CREATE TRIGGER count_rows AFTER INSERT ON scuttlebutt.updates FOR EACH ROW
	WHEN (NEW.model_id = scuttlebutt._model_id('trig')) EXECUTE FUNCTION public.count_row()});
$offset = -s $nd->logfile;
LibpqTest::add_peer($nd, 'trig', LibpqTest::conninfo($nr), send => 'false');
is(qd(q{SELECT scuttlebutt.wait_for_sync('trig', '120s')}), 't', 'trig: D syncs with R');
is(qd(q{SELECT n FROM public.seen}), 5000, "trig: D's trigger saw all 5,000 rows");
$log = substr(slurp_file($nd->logfile), $offset);
unlike($log, qr/updates of model "trig" stored by bulk insert/, 'trig: no page was bulk inserted');
like($log, qr/has triggers or constraints of its own, or the transaction is read-only: \d+ updates of model "trig" stored by merging/,
	'trig: the log says why');
ok(LibpqTest::wait_converged('trig', [ $nr, $nd ], 60), 'trig: R and D converge');

done_testing();
