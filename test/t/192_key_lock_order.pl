# Writers of many keys take them in one order, byte order (SB_LOCK_ORDER:
# COLLATE "C", strcmp), whatever the database's collation: the upsert of a
# small set_many() as the bulk paths and the worker's batches do, so that
# two writers of the same keys wait for each other instead of deadlocking.
#
# The server's default collation is ICU's "en", under which 'a' sorts
# before 'B' (byte order: 'B' first).  Session A holds key a (an open
# set()); a writer of {a, B} behind it (a set_many() of two keys: the
# upsert; an import() of two updates: the worker's batch upsert) must take
# B first, then wait for A at a: a third session's set() of B then waits
# for the writer (pg_blocking_pids).  Were the keys taken in the
# database's order, the writer would wait at a holding nothing, and the
# third set() would pass.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# the order differs from byte order only under a linguistic collation
plan skip_all => 'PostgreSQL built without ICU' unless check_pg_config('#define USE_ICU 1');

# (a reservation far ahead: a set() that passes the committed one waits
# for whoever is moving it, the holder A included, whichever key it
# writes; README, Limits. Here a set() of B must wait for the writer.)
my $node = LibpqTest::new_node('n',
	initdb => [ '--encoding=UTF8', '--locale=C', '--locale-provider=icu', '--icu-locale=en' ],
	conf => "scuttlebutt.timestamp_reserve = 10min\n");
sub q1 { LibpqTest::q1($node, @_) }

is(q1(q{SELECT 'a' < 'B', 'a' < 'B' COLLATE "C"}), 't|f',
	"the database's collation orders a before B, byte order B before a");
q1(q{SELECT scuttlebutt.create_model('m')});
q1(q{SELECT scuttlebutt.set_many('m', '{"a": 0, "B": 0}')});

# a writer of {a, B} behind a holder of a: B must be taken first
sub takes_b_first
{
	my ($label, $sql, $like, $value) = @_;
	my $holder = LibpqTest::hold($node, q{SELECT scuttlebutt.set('m', 'a', '"A"') IS NOT NULL;}, qr/^t$/m);
	ok($holder->{held}, "$label: A holds key a, not committed");
	my $writer = LibpqTest::start_psql($node, $sql);
	ok(LibpqTest::waits_on_lock($node, $like), "$label: the writer waits for A");
	# the third session waits for the writer itself, not for A
	my $third = LibpqTest::start_psql($node, q{SELECT scuttlebutt.set('m', 'B', '"c"') IS NOT NULL});
	ok(LibpqTest::poll($node, q{SELECT EXISTS (SELECT FROM pg_stat_activity c, pg_stat_activity w
			WHERE c.query LIKE '%set(''m'', ''B''%' AND w.query LIKE } . LibpqTest::lit("%$like%") . q{
			AND pg_blocking_pids(c.pid) = ARRAY[w.pid])}, 15),
		"$label: a set() of B meanwhile waits for the writer (which took B first, in byte order)");
	LibpqTest::release($holder);
	my ($out, $err) = LibpqTest::finish_psql($writer);
	is($out, '2', "$label: the writer then stores both keys") or diag($err);
	my ($cout, $cerr) = LibpqTest::finish_psql($third);
	is($cout, 't', "$label: the set() of B then completes") or diag($cerr);
	is(q1(q{SELECT scuttlebutt.get('m', 'a')}), $value, "$label: key a holds the writer's value, newer than A's");
}

takes_b_first('set_many', q{SELECT scuttlebutt.set_many('m', '{"a": "b", "B": "b"}')}, q{set_many('m'}, '"b"');
my $ahead = q1(q{SELECT (extract(epoch FROM clock_timestamp()) * 1000 + 30000)::bigint});
takes_b_first('import', qq{SELECT scuttlebutt.import('m', '[["a","x"],$ahead,"X"]' || E'\\n' || '[["B","x"],} . ($ahead + 1) . q{,"X"]')},
	q{import('m'}, '"x"');

done_testing();
