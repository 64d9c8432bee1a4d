# A chain of three servers over libpq: A dials B, C dials B.  A and C are
# not connected: what one writes reaches the other only if B relays it
# (C pushes to B, B's commit wakes A's pull).  Initial sync and live
# updates must reach the far end both ways, for a key/value model and an
# events log; no update may come back to the server it came from (the
# sent/received counts are exact); the chain heals when B restarts.
#
# Then a mixed chain: an unmodified JavaScript scuttlebutt Model connects
# to A's stream listener.  A write at C reaches it (C -libpq-> B -libpq->
# A -stream-> JS), and its writes reach C (JS -stream-> A -libpq-> B
# -libpq-> C); it ends holding exactly what C holds.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use Test::More;

ok(ScuttlebuttTest::node_available(), 'node.js and the npm packages are installed (npm ci in test/)')
  or BAIL_OUT('node.js or test/node_modules missing: run "npm ci" in test/');

my $na = LibpqTest::new_node('a', listen => 1);
my $nb = LibpqTest::new_node('b');
my $nc = LibpqTest::new_node('c');
my @all = ($na, $nb, $nc);
sub q1 { LibpqTest::q1(@_) }

for my $n (@all)
{
	q1($n, q{
		SELECT scuttlebutt.create_model('chain', 'model');
		SELECT scuttlebutt.create_model('log', 'events');
	});
}
my %id = map { ($_->name => q1($_, 'SELECT scuttlebutt.node_id()')) } @all;

# before connecting: A 2 keys and 1 event, B 1 key, C 3 keys and 2 events
q1($na, q{SELECT scuttlebutt.set('chain', 'a' || i, to_jsonb(i)) FROM generate_series(1, 2) i;
		  SELECT scuttlebutt.emit('log', 'from-a', '1')});
q1($nb, q{SELECT scuttlebutt.set('chain', 'b1', '"b"')});
q1($nc, q{SELECT scuttlebutt.set('chain', 'c' || i, to_jsonb(i)) FROM generate_series(1, 3) i;
		  SELECT scuttlebutt.emit('log', 'from-c', to_jsonb(i)) FROM generate_series(1, 2) i});

my $ci_b = LibpqTest::conninfo($nb);
my %peer;
for my $n ($na, $nc)
{
	for my $m (qw(chain log))
	{
		$peer{ $n->name }{$m} = LibpqTest::add_peer($n, $m, $ci_b);
	}
}
for my $n ($na, $nc)
{
	is(q1($n, q{SELECT scuttlebutt.wait_for_sync('chain', '60s') AND scuttlebutt.wait_for_sync('log', '60s')}),
		't', 'wait_for_sync on ' . $n->name);
}
ok(LibpqTest::wait_converged('chain', \@all), 'initial sync: chain converged on A, B and C');
ok(LibpqTest::wait_converged('log', \@all), 'initial sync: log converged on A, B and C');
is(q1($na, q{SELECT scuttlebutt.to_json('chain')}), '{"a1": 1, "a2": 2, "b1": "b", "c1": 1, "c2": 2, "c3": 3}',
	'A holds C\'s keys (relayed by B)');
is(q1($nc, q{SELECT scuttlebutt.to_json('chain')}), q1($na, q{SELECT scuttlebutt.to_json('chain')}),
	'C holds the same to_json');
is(q1($nc, q{SELECT scuttlebutt.clock('chain')}), q1($na, q{SELECT scuttlebutt.clock('chain')}),
	'C and A have the same clock');
is(q1($na, q{SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(scuttlebutt.clock('chain')) k}),
	join(',', sort values %id), 'the clock names all three nodes');
is(q1($na, q{SELECT string_agg(event, ',' ORDER BY ts) FROM scuttlebutt.events('log')}),
	'from-a,from-c,from-c', 'A holds C\'s events');

# Exact counts: nothing is echoed back.  For the ends: [sent, received]
sub check_counts
{
	my ($phase, %want) = @_;
	for my $end (qw(a c))
	{
		my $n = $end eq 'a' ? $na : $nc;
		for my $m (qw(chain log))
		{
			my ($s, $r) = @{ $want{$end}{$m} };
			my ($ok, $row) = LibpqTest::wait_peer($n, "peer_id = $peer{$end}{$m}",
				sub { $_[0]{state} eq 'live' && $_[0]{sent} == $s && $_[0]{received} == $r }, 15);
			is_deeply([ @$row{qw(transport state remote_id sent received)} ],
				[ 'libpq', 'live', $id{b}, $s, $r ],
				"$phase: " . uc($end) . "'s $m peer is live, B's id, sent $s, received $r");
		}
	}
}
check_counts('initial sync',
	a => { chain => [ 2, 4 ], log => [ 1, 2 ] },
	c => { chain => [ 3, 3 ], log => [ 2, 1 ] });
is(q1($nb, q{SELECT count(*) FROM scuttlebutt.peer_status}), 0, 'B (only dialed) shows no peer of its own');

# ---- live: each end reaches the other through B ----
q1($na, q{SELECT scuttlebutt.set('chain', 'live_a', '"A"')});
ok(LibpqTest::poll($nc, q{SELECT scuttlebutt.get('chain', 'live_a') = '"A"'}, 30), 'live: a write at A reaches C');
q1($nc, q{SELECT scuttlebutt.set('chain', 'live_c', '"C"')});
ok(LibpqTest::poll($na, q{SELECT scuttlebutt.get('chain', 'live_c') = '"C"'}, 30), 'live: a write at C reaches A');
q1($na, q{SELECT scuttlebutt.emit('log', 'live-a', '"A"')});
ok(LibpqTest::poll($nc, q{SELECT count(*) = 1 FROM scuttlebutt.events('log') WHERE event = 'live-a'}, 30),
	'live: an event at A reaches C');
q1($nc, q{SELECT scuttlebutt.emit('log', 'live-c', '"C"')});
ok(LibpqTest::poll($na, q{SELECT count(*) = 1 FROM scuttlebutt.events('log') WHERE event = 'live-c'}, 30),
	'live: an event at C reaches A');
q1($nb, q{SELECT scuttlebutt.set('chain', 'live_b', '"B"')});
ok(LibpqTest::poll($na, q{SELECT scuttlebutt.get('chain', 'live_b') = '"B"'}, 30), 'live: a write at B reaches A');
ok(LibpqTest::poll($nc, q{SELECT scuttlebutt.get('chain', 'live_b') = '"B"'}, 30), 'live: a write at B reaches C');
ok(LibpqTest::wait_converged('chain', \@all), 'live: chain converged');
ok(LibpqTest::wait_converged('log', \@all), 'live: log converged');
check_counts('live',
	a => { chain => [ 3, 6 ], log => [ 2, 3 ] },
	c => { chain => [ 4, 5 ], log => [ 3, 2 ] });
for my $n (@all)
{
	is(q1($n, q{SELECT count(*) FROM scuttlebutt.events('log')}), 5, $n->name . ' holds the 5 events, none twice');
}

# ---- the same key written at both ends: every node agrees ----
q1($na, q{SELECT scuttlebutt.set('chain', 'contested', '"A"')});
q1($nc, q{SELECT scuttlebutt.set('chain', 'contested', '"C"')});
q1($na, q{SELECT scuttlebutt.set('chain', 'contested', '"A again"')});
ok(LibpqTest::wait_converged('chain', \@all), 'contested key: converged');
my $v = q1($na, q{SELECT scuttlebutt.get('chain', 'contested')});
is(q1($nc, q{SELECT scuttlebutt.get('chain', 'contested')}), $v, 'contested key: same value at A and C');
is($v, '"A again"', 'contested key: the latest write wins');
is(q1($nb, q{SELECT count(*) FROM scuttlebutt.keys('chain')}), 10, 'B holds the 10 keys');

# ---- the middle goes away and comes back: the chain heals ----
$nb->restart;
q1($na, q{SELECT scuttlebutt.set('chain', 'after_b_restart', '"A"')});
ok(LibpqTest::poll($nc, q{SELECT scuttlebutt.get('chain', 'after_b_restart') = '"A"'}, 60),
	'after B restarts, a write at A reaches C again');
q1($nc, q{SELECT scuttlebutt.emit('log', 'after-b-restart', '"C"')});
ok(LibpqTest::poll($na, q{SELECT count(*) = 1 FROM scuttlebutt.events('log') WHERE event = 'after-b-restart'}, 60),
	'after B restarts, an event at C reaches A again');
ok(LibpqTest::wait_converged('chain', \@all), 'after B restarts: chain converged');
ok(LibpqTest::wait_converged('log', \@all), 'after B restarts: log converged');

# ---- a JavaScript client of A's stream listener, at the end of the chain ----
my $js = <<'EOJS';
'use strict';
const h = require(process.env.SB_INTEROP + '/lib/harness');
const st = require(process.env.SB_INTEROP + '/lib/stream');

const connA = process.argv[2];
const port = Number(process.argv[3]);
const connC = process.argv[4];
const name = 'chain';
const adbA = new st.AsyncDb(connA);
const dbC = new h.Db(connC);
const adbC = new st.AsyncDb(connC);
const QC = st.modelQueries(dbC, adbC);

h.main(async () => {
	const idC = dbC.value('SELECT scuttlebutt.node_id()');
	const sb = new h.Model('JS-mixed-chain');
	sb.set('js_before', 'set by the JS client before connecting');
	const peer = await st.connectClient(port, sb, { meta: name }, 'JS client of A');
	h.ok(await st.until(() => peer.synced), 'the JS client syncs with A\'s listener');
	h.ok(await adbA.waitForSync(name), 'wait_for_sync on A (stream client and libpq peer)');
	h.same(sb.get('c3'), 3, 'the JS client holds a key written at C before it connected');
	h.same(sb.get('contested'), 'A again', 'and the contested key as every server holds it');

	// C -libpq-> B -libpq-> A -stream-> JS
	const tsC = Number(await adbC.value(`SELECT scuttlebutt.set('chain', 'live_from_c', '{"via": ["B", "A"]}')`));
	h.ok(await st.until(() => st.hasSeen(sb, idC, tsC), 30000),
		'a write at C reaches the JS client (C -> B -> A over libpq, A -> JS over the stream)');
	h.same(sb.get('live_from_c'), { via: ['B', 'A'] }, 'with its value');

	// JS -stream-> A -libpq-> B -libpq-> C
	sb.set('live_from_js', { via: ['A', 'B'] });
	const tsJ = sb.sources[sb.id];
	h.ok(await QC.pollSeen(name, sb.id, tsJ), 'a write of the JS client reaches C');
	h.is(await adbC.value(`SELECT scuttlebutt.get('chain', 'live_from_js')::text`), '{"via": ["A", "B"]}',
		'with its value');
	h.is(await adbC.value(`SELECT scuttlebutt.get('chain', 'js_before')::text`),
		'"set by the JS client before connecting"', 'the JS client\'s initial history reached C too');
	h.ok(await adbC.waitForSync(name), 'wait_for_sync on C');

	QC.compare('the JS client against C', 'model', name, sb);
	h.ok(await peer.finish(), 'A closes its side when the JS client ends');
	h.is(st.fromSource(peer.lines(), sb.id).length, 0, 'the JS client\'s own updates are never sent back to it');
	h.is(peer.errors.join('; '), '', 'no socket or stream error on the JS side');
});
EOJS
LibpqTest::run_js($na, 'mixed_chain', $js, LibpqTest::stream_port($na), $nc->connstr('postgres'));
ok(LibpqTest::wait_converged('chain', \@all), 'after the JS client: chain converged on A, B and C');
is(q1($nb, q{SELECT scuttlebutt.get('chain', 'live_from_js')}), '{"via": ["A", "B"]}',
	'B holds the JS client\'s write');

for my $n ($na, $nc)
{
	is(q1($n, q{SELECT count(*) FROM scuttlebutt.peer_status WHERE transport = 'libpq' AND state = 'live'}), 2,
		$n->name . ': both libpq peers live at the end');
}

$_->stop for @all;
done_testing();
