# A chain of three servers, once over the scuttlebutt stream protocol and
# once over libpq: A dials B, C dials B.  A and C are not connected: what
# one writes reaches the other only if B relays it.  Initial sync and live
# updates must reach the far end both ways, for a key/value model and an
# events log; no update may come back to the server it came from (the
# sent/received counts are exact); the chain heals when B restarts.
#
# Then a mixed chain: an unmodified JavaScript scuttlebutt Model connects
# to A's stream listener.  A write at C reaches it (C -> B -> A over the
# transport, A -> JS over the stream), and its writes reach C; it ends
# holding exactly what C holds.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PeerTransport;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use StreamTest;
use Test::More;
use Time::HiRes qw(usleep);

ok(ScuttlebuttTest::node_available(), 'node.js and the npm packages are installed (npm ci in test/)')
  or BAIL_OUT('node.js or test/node_modules missing: run "npm ci" in test/');

scenario($_) for PeerTransport->all;
done_testing();

sub scenario
{
	my ($t) = @_;
	my $tn = $t->name;
	my $na = $t->new_node("${tn}_a", js => 1);
	my $nb = $t->new_node("${tn}_b", dialed => 1);
	my $nc = $t->new_node("${tn}_c");
	my @all = ($na, $nb, $nc);
	my $q1 = \&LibpqTest::q1;
	my $label = sub { uc(substr($_[0]->name, -1)) };

	for my $n (@all)
	{
		$q1->($n, q{
			SELECT scuttlebutt.create_model('chain', 'model');
			SELECT scuttlebutt.create_model('log', 'events');
		});
	}
	my %id = map { ($label->($_) => $q1->($_, 'SELECT scuttlebutt.node_id()')) } @all;

	# before connecting: A 2 keys and 1 event, B 1 key, C 3 keys and 2 events
	$q1->($na, q{SELECT scuttlebutt.set('chain', 'a' || i, to_jsonb(i)) FROM generate_series(1, 2) i;
		  SELECT scuttlebutt.emit('log', 'from-a', '1')});
	$q1->($nb, q{SELECT scuttlebutt.set('chain', 'b1', '"b"')});
	$q1->($nc, q{SELECT scuttlebutt.set('chain', 'c' || i, to_jsonb(i)) FROM generate_series(1, 3) i;
		  SELECT scuttlebutt.emit('log', 'from-c', to_jsonb(i)) FROM generate_series(1, 2) i});

	my %peer;
	for my $n ($na, $nc)
	{
		$peer{ $label->($n) }{$_} = $t->add_peer($n, $_, $nb) for qw(chain log);
	}
	for my $n ($na, $nc)
	{
		is($q1->($n, q{SELECT scuttlebutt.wait_for_sync('chain', '60s') AND scuttlebutt.wait_for_sync('log', '60s')}),
			't', "$tn: wait_for_sync on " . $label->($n));
	}
	ok(LibpqTest::wait_converged('chain', \@all), "$tn: initial sync: chain converged on A, B and C");
	ok(LibpqTest::wait_converged('log', \@all), "$tn: initial sync: log converged on A, B and C");
	is($q1->($na, q{SELECT scuttlebutt.to_json('chain')}), '{"a1": 1, "a2": 2, "b1": "b", "c1": 1, "c2": 2, "c3": 3}',
		"$tn: A holds C's keys (relayed by B)");
	is($q1->($nc, q{SELECT scuttlebutt.to_json('chain')}), $q1->($na, q{SELECT scuttlebutt.to_json('chain')}),
		"$tn: C holds the same to_json");
	is($q1->($nc, q{SELECT scuttlebutt.clock('chain')}), $q1->($na, q{SELECT scuttlebutt.clock('chain')}),
		"$tn: C and A have the same clock");
	is($q1->($na, q{SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(scuttlebutt.clock('chain')) k}),
		join(',', sort values %id), "$tn: the clock names all three nodes");
	is($q1->($na, q{SELECT string_agg(event, ',' ORDER BY ts) FROM scuttlebutt.events('log')}),
		'from-a,from-c,from-c', "$tn: A holds C's events");

	# Exact counts: nothing is echoed back.  For the ends: [sent, received]
	my $check_counts = sub {
		my ($phase, %want) = @_;
		for my $n ($na, $nc)
		{
			my $end = $label->($n);
			$t->check_dialed_row("$tn: $phase", $end, $n, $nb, $peer{$end}{$_}, $_, $want{$end}{$_})
			  for qw(chain log);
		}
	};
	$check_counts->('initial sync',
		A => { chain => [ 2, 4 ], log => [ 1, 2 ] },
		C => { chain => [ 3, 3 ], log => [ 2, 1 ] });
	# over a stream B shows the four connections it accepted; over libpq
	# a dialed server shows none
	my $rows_b = $t->rows_at_dialed ? 4 : 0;
	is($q1->($nb, q{SELECT count(*) FROM scuttlebutt.peer_status}), $rows_b,
		"$tn: B (only dialed) shows $rows_b rows");

	# ---- live: each end reaches the other through B ----
	$q1->($na, q{SELECT scuttlebutt.set('chain', 'live_a', '"A"')});
	ok(LibpqTest::poll($nc, q{SELECT scuttlebutt.get('chain', 'live_a') = '"A"'}), "$tn: live: a write at A reaches C");
	$q1->($nc, q{SELECT scuttlebutt.set('chain', 'live_c', '"C"')});
	ok(LibpqTest::poll($na, q{SELECT scuttlebutt.get('chain', 'live_c') = '"C"'}), "$tn: live: a write at C reaches A");
	$q1->($na, q{SELECT scuttlebutt.emit('log', 'live-a', '"A"')});
	ok(LibpqTest::poll($nc, q{SELECT count(*) = 1 FROM scuttlebutt.events('log') WHERE event = 'live-a'}),
		"$tn: live: an event at A reaches C");
	$q1->($nc, q{SELECT scuttlebutt.emit('log', 'live-c', '"C"')});
	ok(LibpqTest::poll($na, q{SELECT count(*) = 1 FROM scuttlebutt.events('log') WHERE event = 'live-c'}),
		"$tn: live: an event at C reaches A");
	$q1->($nb, q{SELECT scuttlebutt.set('chain', 'live_b', '"B"')});
	ok(LibpqTest::poll($na, q{SELECT scuttlebutt.get('chain', 'live_b') = '"B"'}), "$tn: live: a write at B reaches A");
	ok(LibpqTest::poll($nc, q{SELECT scuttlebutt.get('chain', 'live_b') = '"B"'}), "$tn: live: a write at B reaches C");
	ok(LibpqTest::wait_converged('chain', \@all), "$tn: live: chain converged");
	ok(LibpqTest::wait_converged('log', \@all), "$tn: live: log converged");
	$check_counts->('live',
		A => { chain => [ 3, 6 ], log => [ 2, 3 ] },
		C => { chain => [ 4, 5 ], log => [ 3, 2 ] });
	for my $n (@all)
	{
		is($q1->($n, q{SELECT count(*) FROM scuttlebutt.events('log')}), 5,
			"$tn: " . $label->($n) . ' holds the 5 events, none twice');
	}

	# After the contested key: over libpq the chain converges, clocks and
	# all.  Over a stream, when A's second write reaches B before C's,
	# B holds C's update superseded and does not relay it: A's clock of
	# C's source then stays behind B's, as a reference Model's would
	# (a stream carries a clock only in its first header; t/130's TODO).
	my $converged_contested = sub {
		my ($what) = @_;
		if ($tn ne 'stream')
		{
			ok(LibpqTest::wait_converged('chain', \@all), "$tn: $what: chain converged");
			return;
		}
		my $values = q{SELECT md5(string_agg(h::text, E'\n' ORDER BY h::text)) FROM scuttlebutt.history('chain') h};
		my $same = 0;
		for (1 .. 300)
		{
			my %seen = map { ($q1->($_, $values) => 1) } @all;
			last if ($same = keys %seen == 1);
			usleep(100_000);
		}
		ok($same, "$tn: $what: A, B and C hold the same updates");
		TODO:
		{
			local $TODO = 'a stream carries a clock only in its first header';
			is($q1->($na, q{SELECT scuttlebutt.clock('chain')}), $q1->($nc, q{SELECT scuttlebutt.clock('chain')}),
				"$tn: $what: A's clock is C's");
		}
	};

	# ---- the same key written at both ends: every node agrees ----
	$q1->($na, q{SELECT scuttlebutt.set('chain', 'contested', '"A"')});
	$q1->($nc, q{SELECT scuttlebutt.set('chain', 'contested', '"C"')});
	$q1->($na, q{SELECT scuttlebutt.set('chain', 'contested', '"A again"')});
	$converged_contested->('contested key');
	my $v = $q1->($na, q{SELECT scuttlebutt.get('chain', 'contested')});
	is($q1->($nc, q{SELECT scuttlebutt.get('chain', 'contested')}), $v, "$tn: contested key: same value at A and C");
	is($v, '"A again"', "$tn: contested key: the latest write wins");
	is($q1->($nb, q{SELECT count(*) FROM scuttlebutt.keys('chain')}), 10, "$tn: B holds the 10 keys");

	# ---- the middle goes away and comes back: the chain heals ----
	$nb->restart;
	$q1->($na, q{SELECT scuttlebutt.set('chain', 'after_b_restart', '"A"')});
	ok(LibpqTest::poll($nc, q{SELECT scuttlebutt.get('chain', 'after_b_restart') = '"A"'}),
		"$tn: after B restarts, a write at A reaches C again");
	$q1->($nc, q{SELECT scuttlebutt.emit('log', 'after-b-restart', '"C"')});
	ok(LibpqTest::poll($na, q{SELECT count(*) = 1 FROM scuttlebutt.events('log') WHERE event = 'after-b-restart'}),
		"$tn: after B restarts, an event at C reaches A again");
	$converged_contested->('after B restarts');
	ok(LibpqTest::wait_converged('log', \@all), "$tn: after B restarts: log converged");

	my $reasons = join(', ', map { LibpqTest::lit($_) } $t->close_reasons);
	for my $n (@all)
	{
		is($q1->($n, qq{SELECT string_agg(reason, ',') FROM scuttlebutt.connection_errors
				WHERE reason NOT IN ($reasons)}), '',
			"$tn: " . $label->($n) . ': no connection closed for a protocol or database fault');
	}

	# ---- a JavaScript client of A's stream listener, at the end of the chain ----
	LibpqTest::run_js($na, "mixed_chain_$tn", mixed_chain_js($tn), $t->stream_port($na),
		$nc->connstr('postgres'));
	ok(LibpqTest::wait_converged('chain', \@all), "$tn: after the JS client: chain converged on A, B and C");
	is($q1->($nb, q{SELECT scuttlebutt.get('chain', 'live_from_js')}), '{"via": ["A", "B"]}',
		"$tn: B holds the JS client's write");

	for my $n ($na, $nc)
	{
		is($q1->($n, qq{SELECT count(*) FROM scuttlebutt.peer_status WHERE transport = '$tn' AND direction = 'out' AND state = 'live'}),
			2, "$tn: " . $label->($n) . ": both $tn peers live at the end");
	}

	$_->stop for @all;
}

# The JavaScript client of the mixed chain; $tn names the servers' transport
sub mixed_chain_js
{
	my ($tn) = @_;
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
	h.ok(await adbA.waitForSync(name), 'wait_for_sync on A (stream client and TRANSPORT peer)');
	h.same(sb.get('c3'), 3, 'the JS client holds a key written at C before it connected');
	h.same(sb.get('contested'), 'A again', 'and the contested key as every server holds it');

	// C -> B -> A over TRANSPORT, A -> JS over the stream
	const tsC = Number(await adbC.value(`SELECT scuttlebutt.set('chain', 'live_from_c', '{"via": ["B", "A"]}')`));
	h.ok(await st.until(() => st.hasSeen(sb, idC, tsC), 30000),
		'a write at C reaches the JS client (C -> B -> A over TRANSPORT, A -> JS over the stream)');
	h.same(sb.get('live_from_c'), { via: ['B', 'A'] }, 'with its value');

	// JS -> A over the stream, A -> B -> C over TRANSPORT
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
	$js =~ s/TRANSPORT/$tn/g;
	return $js;
}
