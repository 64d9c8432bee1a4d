# Two servers replicate, both ways, for each kind of model, once over the
# scuttlebutt stream protocol (add_stream_peer) and once over libpq
# (add_peer): B dials A for "kv" (model), "ev" (events) and "val" (value);
# A dials B for "kv2" (over TCP).  Each side writes before the peers
# (initial sync both ways) and after (live both ways); both must end with
# the same history, to_json and clock.
#
# peer_status must describe the peers exactly (direction, transport,
# state, synced_at, exact sent and received counts: nothing echoed; over a
# stream the dialed side's rows too, every byte read); a peer shows there
# even before the worker has read it.  remove_peer() must end a peer; the
# configured peers must come back after a restart of the dialing server
# and catch up with what was written meanwhile; the side dialing a stopped
# server must show backoff.  send => false only pulls, receive => false
# only pushes.  Values written on both sides before the peer must leave
# the same clock on both.
#
# Over libpq only: the conninfo shows in peer_status without its
# password, which no column, connection_errors nor the log may show, not
# even before the worker has read the new peer; each peer is two sessions
# on the dialed server, and remove_peer() closes them.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PeerTransport;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamTest;
use Test::More;

# Expected [sent, received] of B's rows, per transport and model, after the
# initial sync and after the live updates.  Over libpq a session pushes
# before it pulls: B's "b0" reaches A first and supersedes "a0" there, so
# B pulls no update of val (it learns of "a0" through A's clock).
my %counts = (
	stream => {
		initial => { kv => [ 2, 3 ], ev => [ 1, 2 ], val => [ 1, 1 ] },
		live => { kv => [ 3, 6 ], ev => [ 2, 3 ], val => [ 2, 2 ] }
	},
	libpq => {
		initial => { kv => [ 2, 3 ], ev => [ 1, 2 ], val => [ 1, 0 ] },
		live => { kv => [ 3, 6 ], ev => [ 2, 3 ], val => [ 2, 1 ] }
	});

scenario($_) for PeerTransport->all;
done_testing();

sub scenario
{
	my ($t) = @_;
	my $tn = $t->name;
	my $na = $t->new_node("${tn}_a", dialed => 1);
	my $nb = $t->new_node("${tn}_b", dialed => 1);
	my $qa = sub { LibpqTest::q1($na, @_) };
	my $qb = sub { LibpqTest::q1($nb, @_) };
	my $lit = \&LibpqTest::lit;
	my $libpq = $tn eq 'libpq';

	my $id_a = $qa->('SELECT scuttlebutt.node_id()');
	my $id_b = $qb->('SELECT scuttlebutt.node_id()');
	isnt($id_a, $id_b, "$tn: the two servers are different nodes");

	StreamTest::two_server_fixture($na, $nb, qw(ro_pull ro_push));

	# A's trust authentication ignores the password, but the worker must
	# hide it all the same; the kv peer's sessions name themselves, the
	# others get the worker's names
	my $secret = 'pw111-Hush-8b1f';
	my %o_a = $libpq ? (extra => "password=$secret") : ();
	my %o_kv = $libpq ? (extra => "password=$secret application_name=sb111_kv") : ();
	my %o_b = $libpq ? (tcp => 1, extra => "password='$secret'") : ();

	# ---- a new peer, before the worker has read it ----
	# In the transaction that adds it, the worker cannot know the peer:
	# the view shows it from scuttlebutt.peers.
	my $pending = $qb->(
		'BEGIN;' . "\n"
		  . 'SELECT ' . $t->add_peer_sql('kv', $na, %o_kv) . ' AS id \gset' . "\n"
		  . 'SELECT :id || \'|\' || coalesce((SELECT string_agg(row_to_json(s)::text, \',\') FROM scuttlebutt.peer_status s), \'\');' . "\n"
		  . 'COMMIT;');
	my ($kv_id, $pending_rows) = split /\|/, $pending, 2;
	like($kv_id, qr/^\d+$/, "$tn: adding a peer returns the peer id");
	like($pending_rows, qr/"transport":"$tn"/,
		"$tn: a peer not yet read by the worker shows in peer_status, transport $tn");
	like($pending_rows, qr/"conninfo":/, "$tn: peer_status has a conninfo column");
	if ($libpq)
	{
		unlike($pending_rows, qr/\Q$secret\E/, "$tn: a peer not yet read by the worker: no column shows the password");
	}

	my %peer = (kv => $kv_id);
	$peer{$_} = $t->add_peer($nb, $_, $na, %o_a) for qw(ev val);
	my $kv2_peer = $t->add_peer($na, 'kv2', $nb, %o_b);
	is($qb->('SELECT count(*) FROM scuttlebutt.peers'), 3, "$tn: B keeps its three peers in scuttlebutt.peers");
	is($qb->(q{SELECT string_agg(model || ':' || transport || ':' || send || ':' || receive, ',' ORDER BY id)
			FROM scuttlebutt.peers}), "kv:$tn:true:true,ev:$tn:true:true,val:$tn:true:true",
		"$tn: B keeps its three $tn peers in scuttlebutt.peers, send and receive by default");
	if ($libpq)
	{
		is($qb->("SELECT conninfo FROM scuttlebutt.peers WHERE id = $kv_id"),
			LibpqTest::conninfo($na, %o_kv), "$tn: scuttlebutt.peers holds the conninfo as given");
	}

	# ---- initial sync ----
	for my $m (qw(kv ev val))
	{
		is($qb->("SELECT scuttlebutt.wait_for_sync('$m', '60s')"), 't',
			"$tn: wait_for_sync('$m') on the dialing side");
	}
	is($qa->("SELECT scuttlebutt.wait_for_sync('kv2', '60s')"), 't', "$tn: wait_for_sync('kv2') on A (dialing)");
	for my $m (qw(kv ev val kv2))
	{
		ok(LibpqTest::wait_converged($m, [ $na, $nb ]), "$tn: initial sync: $m converged");
	}
	StreamTest::check_two_server_fixture($na, $nb, $tn);

	# ---- peer_status ----
	my $check_rows = sub {
		my ($phase, $counts) = @_;
		$t->check_out_row("$tn: $phase", $nb, $na, $peer{$_}, $_, $counts->{$_}, $libpq ? $secret : undef)
		  for qw(kv ev val);
	};
	$check_rows->('initial sync', $counts{$tn}{initial});
	my ($ok, $kv2_row) = LibpqTest::wait_peer($na, "peer_id = $kv2_peer",
		sub { $_[0]{state} eq 'live' && $_[0]{received} == 1 }, 15);
	is_deeply([ @$kv2_row{qw(direction transport model remote_id state sent received)} ],
		[ 'out', $tn, 'kv2', $id_b, 'live', 1, 1 ],
		"$tn: A's row for kv2: out, $tn, B's id, live, sent 1, received 1");
	if ($libpq)
	{
		like($kv2_row->{conninfo} // '', qr/127\.0\.0\.1/, "$tn: A's row for kv2 shows the TCP host");
	}
	else
	{
		is($kv2_row->{remote_addr}, $t->remote_addr($nb), "$tn: A's row for kv2 names B's address");
	}
	# over a stream each side also shows the connections it accepted
	my ($rows_a, $rows_b) = $t->rows_at_dialed ? (4, 4) : (1, 3);
	is($qa->("SELECT count(*) FROM scuttlebutt.peer_status"), $rows_a,
		"$tn: A shows $rows_a peer_status row(s), no stray rows");
	is($qb->("SELECT count(*) FROM scuttlebutt.peer_status"), $rows_b,
		"$tn: B shows $rows_b peer_status row(s), no stray rows");

	# ---- live updates, both ways, every kind ----
	$qa->(q{SELECT scuttlebutt.set('kv', 'live_a', '"from a"')});
	ok(LibpqTest::poll($nb, q{SELECT scuttlebutt.get('kv', 'live_a') = '"from a"'}), "$tn: live: set() at A reaches B");
	$qb->(q{SELECT scuttlebutt.set('kv', 'live_b', '"from b"')});
	ok(LibpqTest::poll($na, q{SELECT scuttlebutt.get('kv', 'live_b') = '"from b"'}), "$tn: live: set() at B reaches A");
	$qa->(q{SELECT scuttlebutt.delete('kv', 'a1')});
	ok(LibpqTest::poll($nb, q{SELECT NOT (scuttlebutt.to_json('kv') ? 'a1')}), "$tn: live: delete() at A reaches B");
	$qa->(q{SELECT scuttlebutt.emit('ev', 'live', '"from a"')});
	ok(LibpqTest::poll($nb, q{SELECT count(*) = 1 FROM scuttlebutt.events('ev') WHERE data = '"from a"'}),
		"$tn: live: emit() at A reaches B");
	$qb->(q{SELECT scuttlebutt.emit('ev', 'live', '"from b"')});
	ok(LibpqTest::poll($na, q{SELECT count(*) = 1 FROM scuttlebutt.events('ev') WHERE data = '"from b"'}),
		"$tn: live: emit() at B reaches A");
	$qa->(q{SELECT scuttlebutt.set_value('val', '{"by": "a"}')});
	ok(LibpqTest::poll($nb, q{SELECT scuttlebutt.get_value('val') = '{"by": "a"}'}),
		"$tn: live: set_value() at A reaches B");
	$qb->(q{SELECT scuttlebutt.set_value('val', '{"by": "b"}')});
	ok(LibpqTest::poll($na, q{SELECT scuttlebutt.get_value('val') = '{"by": "b"}'}),
		"$tn: live: set_value() at B reaches A");
	$qb->(q{SELECT scuttlebutt.set('kv2', 'live_b', 'true')});
	ok(LibpqTest::poll($na, q{SELECT scuttlebutt.get('kv2', 'live_b') = 'true'}),
		"$tn: live: kv2 from B (dialed) to A (dialing)");
	$qa->(q{SELECT scuttlebutt.set('kv2', 'live_a', 'false')});
	ok(LibpqTest::poll($nb, q{SELECT scuttlebutt.get('kv2', 'live_a') = 'false'}),
		"$tn: live: kv2 from A (dialing) to B (dialed)");
	$qa->(q{SELECT scuttlebutt.apply_update('kv', '[["relayed",1],1795477184259,"SOMEONE"]')});
	ok(LibpqTest::poll($nb, q{SELECT scuttlebutt.get('kv', 'relayed') = '1'}),
		"$tn: live: apply_update() at A (a third source) reaches B");
	for my $m (qw(kv ev val kv2))
	{
		ok(LibpqTest::wait_converged($m, [ $na, $nb ]), "$tn: live: $m converged");
	}
	is($qa->(q{SELECT scuttlebutt.to_json('kv')}), $qb->(q{SELECT scuttlebutt.to_json('kv')}), "$tn: live: kv same to_json");
	is($qa->(q{SELECT scuttlebutt.clock('kv')}), $qb->(q{SELECT scuttlebutt.clock('kv')}), "$tn: live: kv same clock");
	is($qa->(q{SELECT scuttlebutt.clock('ev')}), $qb->(q{SELECT scuttlebutt.clock('ev')}), "$tn: live: ev same clock");
	is($qb->(q{SELECT count(*) FROM scuttlebutt.events('ev')}), 5, "$tn: live: ev holds 5 events on B, none twice");
	is($qa->(q{SELECT count(*) FROM scuttlebutt.events('ev')}), 5, "$tn: live: and 5 on A");
	ok(LibpqTest::poll($nb, q{SELECT bool_and(state = 'live') FROM scuttlebutt.peer_status}),
		"$tn: live: every B row live");
	$check_rows->('after live updates', $counts{$tn}{live});

	# ---- remove_peer ends a peer ----
	my $sessions = q{SELECT string_agg(application_name || ':' || n, ',' ORDER BY application_name) FROM
		(SELECT application_name, count(*) n FROM pg_stat_activity WHERE backend_type = 'client backend'
		 AND pid <> pg_backend_pid() GROUP BY application_name) s};
	if ($libpq)
	{
		is($qa->($sessions), 'sb111_kv:2,scuttlebutt pull:2,scuttlebutt push:2',
			"$tn: A serves two sessions per peer of B: \"scuttlebutt pull\" and \"scuttlebutt push\", or the conninfo's application_name");
	}
	my $off_a = -s $na->logfile;
	$qb->("SELECT scuttlebutt.remove_peer($peer{kv})");
	is($qb->('SELECT count(*) FROM scuttlebutt.peers'), 2, "$tn: remove_peer: the row is gone from scuttlebutt.peers");
	ok(LibpqTest::poll($nb, q{SELECT NOT EXISTS (SELECT FROM scuttlebutt.peer_status WHERE model = 'kv')}),
		"$tn: remove_peer: B no longer shows the kv peer");
	if ($libpq)
	{
		ok(LibpqTest::poll($na, "SELECT ($sessions) = 'scuttlebutt pull:2,scuttlebutt push:2'"),
			"$tn: remove_peer: B closed the kv peer's two sessions on A, and only those");
	}
	else
	{
		ok(LibpqTest::poll($na, q{SELECT NOT EXISTS (SELECT FROM scuttlebutt.peer_status WHERE model = 'kv')}),
			"$tn: remove_peer: A sees the kv connection closed");
		ok(StreamTest::find_log($na, qr/closing connection from 127\.0\.0\.1:\d+: closed by peer/, $off_a),
			"$tn: remove_peer: A logs the close");
	}
	my ($rc, $out, $err) = $nb->psql('postgres', 'SELECT scuttlebutt.remove_peer(9999)');
	like($err, qr/peer 9999 does not exist/, "$tn: remove_peer of an unknown id is an error");
	# Both ends have closed the kv connection (above); the writes below
	# come after that.  Barrier: a write on a model still connected, made
	# after them, has crossed both ways, so each worker has been woken by
	# the kv writes' commits and has handled them.
	$qa->(q{SELECT scuttlebutt.set('kv', 'after_remove_a', '1')});
	$qb->(q{SELECT scuttlebutt.set('kv', 'after_remove_b', '1')});
	$qa->(q{SELECT scuttlebutt.emit('ev', 'barrier', '1')});
	$qb->(q{SELECT scuttlebutt.emit('ev', 'barrier', '2')});
	ok(LibpqTest::wait_converged('ev', [ $na, $nb ]), "$tn: remove_peer: ev still replicates");
	is($qb->(q{SELECT scuttlebutt.get('kv', 'after_remove_a')}), '', "$tn: remove_peer: kv writes at A no longer reach B");
	is($qa->(q{SELECT scuttlebutt.get('kv', 'after_remove_b')}), '', "$tn: remove_peer: kv writes at B no longer reach A");
	is($qb->(q{SELECT scuttlebutt.wait_for_sync('kv', '1s')}), 't',
		"$tn: wait_for_sync of a model without peers is true");

	# ---- the dialing server restarts: its peers come back ----
	$nb->stop;
	my ($down_ok, $down_row) = LibpqTest::wait_peer($na, "peer_id = $kv2_peer",
		sub { $_[0]{state} eq 'backoff' && defined $_[0]{last_error} }, 30);
	ok($down_ok, "$tn: B down: A's peer dialing B is in backoff, with last_error");
	like($down_row->{last_error} // '', qr/refused|could not connect|connection/i,
		"$tn: B down: A's last_error says the connection failed");
	$qa->(q{SELECT scuttlebutt.emit('ev', 'while_b_down', '1')});
	$qa->(q{SELECT scuttlebutt.set_value('val', '"set while B was down"')});
	$qa->(q{SELECT scuttlebutt.set('kv2', 'while_b_down', '1')});
	$nb->start;
	ok(LibpqTest::poll($nb,
			qq{SELECT array_agg(peer_id ORDER BY peer_id) = ARRAY[$peer{ev}, $peer{val}]
			   AND bool_and(state = 'live') AND bool_and(transport = '$tn')
			   FROM scuttlebutt.peer_status WHERE direction = 'out'}),
		"$tn: restart: B redials its two remaining peers, same ids, live");
	StreamTest::check_restart_caught_up($na, $nb, 'dialed', \&LibpqTest::wait_converged, $tn);
	($ok, my $row) = LibpqTest::wait_peer($nb, "peer_id = $peer{ev}", sub { $_[0]{received} == 1 }, 10);
	is($row->{sent}, 0, "$tn: restart: B had nothing new to send for ev");
	is($row->{received}, 1, "$tn: restart: B received exactly the one event it lacked");
	ok(LibpqTest::poll($na, "SELECT state = 'live' FROM scuttlebutt.peer_status WHERE peer_id = $kv2_peer"),
		"$tn: restart: A's peer dialing B is live again");
	$qb->(q{SELECT scuttlebutt.emit('ev', 'after_restart', '"b"')});
	ok(LibpqTest::poll($na, q{SELECT count(*) = 1 FROM scuttlebutt.events('ev') WHERE event = 'after_restart'}),
		"$tn: restart: live again from B to A");
	$qa->(q{SELECT scuttlebutt.set_value('val', '"after restart"')});
	ok(LibpqTest::poll($nb, q{SELECT scuttlebutt.get_value('val') = '"after restart"'}),
		"$tn: restart: live again from A to B");

	# B's restart closes A's connections and refuses A's redials; nothing else
	my $reasons = join(', ', map { $lit->($_) } $t->close_reasons);
	for my $n ($na, $nb)
	{
		is(LibpqTest::q1($n, qq{SELECT string_agg(reason, ',') FROM scuttlebutt.connection_errors
				WHERE reason NOT IN ($reasons)}), '',
			"$tn: " . uc(substr($n->name, -1)) . ' closed no connection for a protocol or database fault');
	}

	# ---- send => false only pulls; receive => false only pushes ----
	$qa->(q{SELECT scuttlebutt.set('ro_pull', 'a1', '1'); SELECT scuttlebutt.set('ro_push', 'a1', '1')});
	$qb->(q{SELECT scuttlebutt.set('ro_pull', 'b1', '1'); SELECT scuttlebutt.set('ro_push', 'b1', '1')});
	my $pull_id = $t->add_peer($nb, 'ro_pull', $na, %o_a, send => 'false');
	my $push_id = $t->add_peer($nb, 'ro_push', $na, %o_a, receive => 'false');
	is($qb->(qq{SELECT string_agg(send || '/' || receive, ',' ORDER BY id) FROM scuttlebutt.peers WHERE id IN ($pull_id, $push_id)}),
		'false/true,true/false', "$tn: scuttlebutt.peers keeps send and receive");
	is($qb->(q{SELECT scuttlebutt.wait_for_sync('ro_pull', '60s') AND scuttlebutt.wait_for_sync('ro_push', '60s')}), 't',
		"$tn: read-only peers: wait_for_sync on B");
	ok(LibpqTest::poll($nb, q{SELECT scuttlebutt.get('ro_pull', 'a1') = '1'}), "$tn: send => false: B pulls A's key");
	ok(LibpqTest::poll($na, q{SELECT scuttlebutt.get('ro_push', 'b1') = '1'}), "$tn: receive => false: B pushes its key");
	# live: each write that must not cross is followed by one the same
	# peer does carry the other way, and that one's arrival is waited for
	$qb->(q{SELECT scuttlebutt.set('ro_pull', 'b2', '2')});
	$qa->(q{SELECT scuttlebutt.set('ro_push', 'a2', '2')});
	$qa->(q{SELECT scuttlebutt.set('ro_pull', 'a2', '2')});
	$qb->(q{SELECT scuttlebutt.set('ro_push', 'b2', '2')});
	ok(LibpqTest::poll($nb, q{SELECT scuttlebutt.get('ro_pull', 'a2') = '2'}), "$tn: send => false: live pull");
	ok(LibpqTest::poll($na, q{SELECT scuttlebutt.get('ro_push', 'b2') = '2'}), "$tn: receive => false: live push");
	# Barrier: wait_for_sync on B, called after B's writes, is true only
	# once B's worker has seen their commits and has no exchange with A in
	# flight on either peer (nothing half-sent), and its peer rows count
	# every update they carried: 2 pulled and 2 pushed.
	is($qb->(q{SELECT scuttlebutt.wait_for_sync('ro_pull', '60s') AND scuttlebutt.wait_for_sync('ro_push', '60s')}), 't',
		"$tn: read-only peers: wait_for_sync on B after the live writes");
	($ok, $row) = LibpqTest::wait_peer($nb, "peer_id = $pull_id", sub { $_[0]{received} == 2 }, 10);
	is_deeply([ @$row{qw(transport state sent received)} ], [ $tn, 'live', 0, 2 ],
		"$tn: send => false: live, sent 0, received 2");
	# a stream carries what A sends all the same: B ignores it, but counts it
	my $push_recv = $libpq ? 0 : 2;
	($ok, $row) = LibpqTest::wait_peer($nb, "peer_id = $push_id", sub { $_[0]{sent} == 2 }, 10);
	is_deeply([ @$row{qw(transport state sent received)} ], [ $tn, 'live', 2, $push_recv ],
		"$tn: receive => false: live, sent 2, received $push_recv");
	is($qa->(q{SELECT string_agg(k, ',' ORDER BY k) FROM scuttlebutt.keys('ro_pull') k}), 'a1,a2',
		"$tn: send => false: none of B's keys reached A");
	is($qb->(q{SELECT string_agg(k, ',' ORDER BY k) FROM scuttlebutt.keys('ro_push') k}), 'b1,b2',
		"$tn: receive => false: none of A's keys reached B");
	is($qa->(q{SELECT scuttlebutt.clock('ro_pull') ? } . $lit->($id_b)), 'f',
		"$tn: send => false: A's clock has no entry for B");
	is($qb->(q{SELECT scuttlebutt.clock('ro_push') ? } . $lit->($id_a)), 'f',
		"$tn: receive => false: B's clock has no entry for A");

	# ---- a value both sides wrote before the peer ----
	# The dialing side's later write supersedes the remote's.  Each side
	# sends the history over the other's clock as it was at the start, so
	# the remote's superseded update must still reach the dialing side's
	# clock, whatever reaches the other side first (over libpq: the first
	# pull or the first push): both must end with the same clock.  Sixteen
	# models, to give the ordering a chance to show.
	# (each statement its own transaction, a session per server and step)
	my @race = map { "race$_" } 1 .. 16;
	my $each = sub { my ($f) = @_; join('', map { $f->($_) . ";\n" } @race) };
	$qa->($each->(sub { "SELECT scuttlebutt.create_model('$_[0]', 'value'); SELECT scuttlebutt.set_value('$_[0]', '\"a\"')" }));
	$qb->($each->(sub { "SELECT scuttlebutt.create_model('$_[0]', 'value')" }));
	$qb->($each->(sub { "SELECT scuttlebutt.set_value('$_[0]', '\"b\"')" }));
	$qb->($each->(sub { 'SELECT ' . $t->add_peer_sql($_[0], $na, %o_a) }));
	is($qb->('SELECT ' . join(' AND ', map { "scuttlebutt.wait_for_sync('$_', '60s')" } @race)), 't',
		"$tn: values written on both sides: wait_for_sync");
	my $race_models = 'unnest(ARRAY[' . join(', ', map { $lit->($_) } @race) . ']) WITH ORDINALITY r(m, i)';
	is($qb->("SELECT string_agg(m, ',' ORDER BY i) FROM $race_models WHERE NOT coalesce(scuttlebutt.clock(m) ? "
			  . $lit->($id_a) . ', false)'),
		'', "$tn: values written on both sides: B's clock has A's superseded write, for every model");
	# B's wait_for_sync says B sent everything, not that A applied it yet
	my $not_b = "SELECT string_agg(m, ',' ORDER BY i) FROM $race_models"
	  . q{ WHERE scuttlebutt.get_value(m)::text IS DISTINCT FROM '"b"'};
	LibpqTest::poll($na, "SELECT ($not_b) IS NULL", 30);
	is($qa->($not_b), '', "$tn: values written on both sides: the later write (B's) wins on A");
	is(join(',', StreamTest::wait_all_converged(\@race, [ $na, $nb ], 30)), '',
		"$tn: values written on both sides: every model converged (history and clock)");

	# ---- the password shows nowhere ----
	if ($libpq)
	{
		unlike(LibpqTest::visible_text($nb), qr/\Q$secret\E/,
			"$tn: B: neither peer_status nor connection_errors shows the password");
		unlike(LibpqTest::visible_text($na), qr/\Q$secret\E/,
			"$tn: A: neither peer_status nor connection_errors shows the password");
		unlike(slurp_file($nb->logfile), qr/\Q$secret\E/, "$tn: B's log does not show the password");
		unlike(slurp_file($na->logfile), qr/\Q$secret\E/, "$tn: A's log does not show the password");
	}

	$nb->stop;
	$na->stop;
}
