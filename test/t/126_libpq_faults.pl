# Faults of libpq peers.  D dials a healthy server H for model "h", and,
# one after another, peers that fail:
#
#  1. R is down when the peer is added: backoff, last_error says the
#     connection was refused; once R starts, the peer converges;
#  2. X lacks the extension: last_error says scuttlebutt does not exist
#     there; after CREATE EXTENSION it says the model does not exist; once
#     the model is created, the peer converges;
#  3. a network stall, through a TCP proxy that stops forwarding: with the
#     default scuttlebutt.peer_timeout (30s) a short stall just delays the
#     peer; with peer_timeout = 2s (set with a reload), a stall makes
#     last_error tell of a timeout and the peer leave 'live' (the push
#     stalls); an idle peer (its poll waiting for commits) is not taken
#     for a stalled one; a stall with nothing to push is noticed by the
#     pull; once the proxy forwards again, the peer converges;
#  4. a stalled peer is removed: it goes at once.
#
# All the while, the healthy peer replicates live both ways, within a few
# seconds (a worker blocked by a failing peer would not).  At the end every
# model holds exactly what was written, on both sides.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use FaultProxy;
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $nd = LibpqTest::new_node('d', conf => "scuttlebutt.handshake_timeout = 3s\n");
my $nh = LibpqTest::new_node('h');
my $nr = LibpqTest::new_node('r');
my $nx = LibpqTest::new_node('x', extension => 0);
sub qd { LibpqTest::q1($nd, @_) }
sub qh { LibpqTest::q1($nh, @_) }
sub qr1 { LibpqTest::q1($nr, @_) }
sub qxx { LibpqTest::q1($nx, @_) }

is(qd('SHOW scuttlebutt.peer_timeout'), '30s', 'scuttlebutt.peer_timeout defaults to 30s');

qd(q{SELECT scuttlebutt.create_model('h'); SELECT scuttlebutt.create_model('m'); SELECT scuttlebutt.create_model('x');
	 SELECT scuttlebutt.create_model('p')});
qh(q{SELECT scuttlebutt.create_model('h')});
qr1(q{SELECT scuttlebutt.create_model('m'); SELECT scuttlebutt.create_model('p')});

# ---- the healthy peer ----
qh(q{SELECT scuttlebutt.set('h', 'h0', '0')});
my $hp = LibpqTest::add_peer($nd, 'h', LibpqTest::conninfo($nh));
is(qd(q{SELECT scuttlebutt.wait_for_sync('h', '60s')}), 't', 'the healthy peer syncs');

# A write at each end of the healthy peer must reach the other within
# $within seconds
my $n_checks = 0;
sub healthy
{
	my ($label, $within) = @_;
	$within //= 10;
	$n_checks++;
	my $t = time;
	qh("SELECT scuttlebutt.set('h', 'from_h_$n_checks', " . LibpqTest::lit("\"$label\"") . ')');
	qd("SELECT scuttlebutt.set('h', 'from_d_$n_checks', " . LibpqTest::lit("\"$label\"") . ')');
	my $ok = LibpqTest::poll($nd, "SELECT scuttlebutt.get('h', 'from_h_$n_checks') IS NOT NULL", $within)
	  && LibpqTest::poll($nh, "SELECT scuttlebutt.get('h', 'from_d_$n_checks') IS NOT NULL", $within);
	ok($ok, "$label: the healthy peer replicates live both ways meanwhile");
	note(sprintf('%s: healthy round trip in %.2fs', $label, time - $t));
}

# ---- 1. the remote is down when the peer is added ----
qr1(q{SELECT scuttlebutt.set('m', 'r' || i, to_jsonb(i)) FROM generate_series(1, 50) i});
qd(q{SELECT scuttlebutt.set('m', 'd' || i, to_jsonb(i)) FROM generate_series(1, 20) i});
$nr->stop;
my $m_peer = LibpqTest::add_peer($nd, 'm', LibpqTest::conninfo($nr, tcp => 1));
my ($ok, $row) = LibpqTest::wait_peer($nd, "peer_id = $m_peer",
	sub { $_[0]{state} eq 'backoff' && defined $_[0]{last_error} }, 30);
ok($ok, 'remote down: the peer is in backoff');
like($row->{last_error} // '', qr/refused/i, 'remote down: last_error says the connection was refused');
is($row->{transport}, 'libpq', 'remote down: transport libpq');
healthy('remote down');
qd(q{SELECT scuttlebutt.set('m', 'd_while_down', 'true')});
$nr->start;
is(qd(q{SELECT scuttlebutt.wait_for_sync('m', '60s')}), 't', 'remote started: wait_for_sync on D');
ok(LibpqTest::wait_converged('m', [ $nd, $nr ]), 'remote started: converged');
is(qr1(q{SELECT count(*) FROM scuttlebutt.keys('m')}), 71, 'remote started: R holds the 71 keys');
is(LibpqTest::peer($nd, "peer_id = $m_peer")->{state}, 'live', 'remote started: the peer is live');

# ---- 2. the remote lacks the extension, then the model ----
my $x_peer = LibpqTest::add_peer($nd, 'x', LibpqTest::conninfo($nx));
($ok, $row) = LibpqTest::wait_peer($nd, "peer_id = $x_peer",
	sub { $_[0]{state} eq 'backoff' && defined $_[0]{last_error} }, 30);
ok($ok, 'no extension: the peer is in backoff');
my $no_ext = $row->{last_error} // '';
like($no_ext, qr/scuttlebutt/, 'no extension: last_error names scuttlebutt');
like($no_ext, qr/does not exist|not installed/, 'no extension: last_error says it does not exist');
healthy('no extension');
qxx(q{CREATE EXTENSION scuttlebutt});
($ok, $row) = LibpqTest::wait_peer($nd, "peer_id = $x_peer",
	sub { $_[0]{state} eq 'backoff' && ($_[0]{last_error} // '') =~ /model/ && $_[0]{last_error} !~ /extension|relation/ }, 30);
ok($ok, 'no model: the peer is in backoff, with another error');
like($row->{last_error} // '', qr/no such model on the remote|model "?x"? does not exist on the remote/,
	'no model: last_error says the model does not exist on the remote');
note('no extension: ' . $no_ext);
note('no model: ' . ($row->{last_error} // 'NULL'));
healthy('no model');
qd(q{SELECT scuttlebutt.set('x', 'd', '"d"')});
qxx(q{SELECT scuttlebutt.create_model('x'); SELECT scuttlebutt.set('x', 'x', '"x"')});
is(qd(q{SELECT scuttlebutt.wait_for_sync('x', '60s')}), 't', 'model created: wait_for_sync on D');
ok(LibpqTest::wait_converged('x', [ $nd, $nx ]), 'model created: converged');
is(qxx(q{SELECT scuttlebutt.to_json('x')}), '{"d": "d", "x": "x"}', 'model created: both keys on the remote');

# 2a. the model is dropped on the remote while the peer is live, then
# created again (empty): D pushes back all it holds
qxx(q{SELECT scuttlebutt.drop_model('x')});
($ok, $row) = LibpqTest::wait_peer($nd, "peer_id = $x_peer",
	sub { $_[0]{state} ne 'live' && ($_[0]{last_error} // '') =~ /model/ }, 30);
ok($ok, 'model dropped on the remote: the peer leaves live, last_error names the model');
note('model dropped: ' . ($row->{last_error} // 'NULL'));
healthy('model dropped on the remote');
qxx(q{SELECT scuttlebutt.create_model('x')});
is(qd(q{SELECT scuttlebutt.wait_for_sync('x', '60s')}), 't', 'model created again: wait_for_sync on D');
ok(LibpqTest::wait_converged('x', [ $nd, $nx ]), 'model created again: converged');
is(qxx(q{SELECT scuttlebutt.to_json('x')}), '{"d": "d", "x": "x"}', 'model created again: D pushed back both keys');

# 2b. the model is of another kind on the remote
qxx(q{SELECT scuttlebutt.create_model('k', 'events')});
qd(q{SELECT scuttlebutt.create_model('k', 'model')});
my $k_peer = LibpqTest::add_peer($nd, 'k', LibpqTest::conninfo($nx));
($ok, $row) = LibpqTest::wait_peer($nd, "peer_id = $k_peer",
	sub { $_[0]{state} eq 'backoff' && defined $_[0]{last_error} }, 30);
ok($ok, 'other kind: the peer is in backoff');
like($row->{last_error} // '', qr/kind/, 'other kind: last_error says the kinds differ');
note('other kind: ' . ($row->{last_error} // 'NULL'));
qd("SELECT scuttlebutt.remove_peer($k_peer)");
ok(LibpqTest::poll($nd, "SELECT NOT EXISTS (SELECT FROM scuttlebutt.peer_status WHERE peer_id = $k_peer)", 10),
	'other kind: remove_peer ends a peer in backoff');

# ---- 3. a network stall ----
my $proxy = FaultProxy->forward('d-r', $nr->port);
qr1(q{SELECT scuttlebutt.set('p', 'r' || i, to_jsonb(i)) FROM generate_series(1, 30) i});
qd(q{SELECT scuttlebutt.set('p', 'd' || i, to_jsonb(i)) FROM generate_series(1, 10) i});
# its sessions name themselves, for the checks of R's pg_stat_activity below
my $p_peer = LibpqTest::add_peer($nd, 'p',
	LibpqTest::conninfo($nr, tcp => 1, port => $proxy->port, extra => 'application_name=sb126_p'));
is(qd(q{SELECT scuttlebutt.wait_for_sync('p', '60s')}), 't', 'through the proxy: wait_for_sync on D');
ok(LibpqTest::wait_converged('p', [ $nd, $nr ]), 'through the proxy: converged');

# 3a. a short stall under the default peer_timeout
ok($proxy->pause, 'the proxy stops forwarding');
my $before = LibpqTest::peer($nd, "peer_id = $p_peer");
qd(q{SELECT scuttlebutt.set('p', 'd_stall1', '1')});
qr1(q{SELECT scuttlebutt.set('p', 'r_stall1', '1')});
healthy('short stall', 5);
# barrier: D has read its write for the peer and sent it (into the
# stalled proxy)
($ok, $row) = LibpqTest::wait_peer($nd, "peer_id = $p_peer",
	sub { $_[0]{sent} > $before->{sent} && $_[0]{bytes_out} > $before->{bytes_out} }, 30);
ok($ok, 'short stall: D sent its write towards R');
is(qr1(q{SELECT scuttlebutt.get('p', 'd_stall1')}), '', 'short stall: nothing passes the stalled proxy');
ok($proxy->heal, 'the proxy forwards again');
ok(LibpqTest::poll($nr, q{SELECT scuttlebutt.get('p', 'd_stall1') = '1'}, 30), 'short stall over: D\'s write reaches R');
ok(LibpqTest::poll($nd, q{SELECT scuttlebutt.get('p', 'r_stall1') = '1'}, 30), 'short stall over: R\'s write reaches D');

# 3b. peer_timeout = 2s, then a stall
qd(q{ALTER SYSTEM SET scuttlebutt.peer_timeout = '2s'});
ok(ScuttlebuttTest::reload_worker($nd, 10), 'peer_timeout = 2s after a reload (the worker took it)');
# a round trip on each peer, so that the worker has been through its loop
healthy('after the reload');
qr1(q{SELECT scuttlebutt.set('p', 'r_reload', '1')});
ok(LibpqTest::poll($nd, q{SELECT scuttlebutt.get('p', 'r_reload') = '1'}, 30), 'the proxied peer is live after the reload');
ok($proxy->pause, 'the proxy stops forwarding again');
my $t_stall = time;
qd(q{SELECT scuttlebutt.set('p', 'd_stall2', '2')});
qr1(q{SELECT scuttlebutt.set('p', 'r_stall2', '2')});
($ok, $row) = LibpqTest::wait_peer($nd, "peer_id = $p_peer",
	sub { $_[0]{state} ne 'live' && ($_[0]{last_error} // '') =~ /time/i }, 60);
ok($ok, 'stall: the peer leaves live, last_error tells of a timeout');
like($row->{last_error} // '', qr/time(d)?[ -]?out/i, 'stall: last_error mentions a timeout');
note(sprintf('stall: detected after %.1fs; state %s; last_error: %s', time - $t_stall, $row->{state},
	$row->{last_error} // 'NULL'));
healthy('long stall');
is(qd(q{SELECT scuttlebutt.wait_for_sync('p', '1s')}), 'f', 'stall: wait_for_sync is false');
ok($proxy->heal, 'the proxy forwards again');
is(qd(q{SELECT scuttlebutt.wait_for_sync('p', '60s')}), 't', 'stall over: wait_for_sync on D');
ok(LibpqTest::poll($nr, q{SELECT scuttlebutt.get('p', 'd_stall2') = '2'}, 30), 'stall over: D\'s write reaches R');
ok(LibpqTest::poll($nd, q{SELECT scuttlebutt.get('p', 'r_stall2') = '2'}, 30), 'stall over: R\'s write reaches D');
ok(LibpqTest::wait_converged('p', [ $nd, $nr ]), 'stall over: converged');
is(LibpqTest::peer($nd, "peer_id = $p_peer")->{state}, 'live', 'stall over: the peer is live');
qd(q{SELECT scuttlebutt.set('p', 'd_after', '3')});
ok(LibpqTest::poll($nr, q{SELECT scuttlebutt.get('p', 'd_after') = '3'}, 30), 'stall over: live again');

# 3c. an idle peer is no stall: wait_for_commit() waits (5 s) for R's
# commits, and peer_timeout counts only beyond that wait.  Barrier: the
# peer's pull session on R starts a poll or wait 7 s or more after the
# check began, so a whole wait plus peer_timeout has passed in that one
# session.
my $synced = LibpqTest::peer($nd, "peer_id = $p_peer")->{synced_at};
my $is_poll = q{application_name = 'sb126_p'}
  . q{ AND (query LIKE '%scuttlebutt.poll(%' OR query LIKE '%scuttlebutt.wait_for_commit(%')};
my $t0 = qr1('SELECT now()');
my $pull_pid = qr1("SELECT pid FROM pg_stat_activity WHERE $is_poll");
like($pull_pid, qr/^\d+$/, 'idle: R serves the peer\'s pull session');
ok(LibpqTest::poll($nr,
		"SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $pull_pid AND $is_poll"
		  . " AND query_start >= '$t0'::timestamptz + interval '7 s')", 30),
	'idle: the pull session polls on, 7 s later, in the same session');
my $idle_row = LibpqTest::peer($nd, "peer_id = $p_peer");
ok($idle_row->{state} eq 'live' && $idle_row->{synced_at} eq $synced,
	'idle for 7 s with peer_timeout = 2s: the peer stays live, same session (synced_at unchanged)')
  or diag(LibpqTest::show($idle_row));

# 3d. a stall with nothing to push: the pull notices it, after its wait
ok($proxy->pause, 'the proxy stops forwarding a third time');
$t_stall = time;
qr1(q{SELECT scuttlebutt.set('p', 'r_stall3', '3')});
($ok, $row) = LibpqTest::wait_peer($nd, "peer_id = $p_peer",
	sub { $_[0]{state} ne 'live' && ($_[0]{last_error} // '') =~ /time/i }, 60);
my $took = time - $t_stall;
ok($ok, 'pull stall: the peer leaves live, last_error tells of a timeout');
like($row->{last_error} // '', qr/pull/, 'pull stall: last_error names the pull connection');
cmp_ok($took, '<', 20, 'pull stall: noticed within the poll\'s wait plus peer_timeout (and some slack)');
note(sprintf('pull stall: detected after %.1fs; last_error: %s', $took, $row->{last_error} // 'NULL'));
healthy('pull stall');
ok($proxy->heal, 'the proxy forwards again');
ok(LibpqTest::poll($nd, q{SELECT scuttlebutt.get('p', 'r_stall3') = '3'}, 30), 'pull stall over: R\'s write reaches D');

# ---- nothing lost, nothing twice ----
healthy('at the end');
is(qd(q{SELECT scuttlebutt.wait_for_sync('h', '30s') AND scuttlebutt.wait_for_sync('m', '30s')
		AND scuttlebutt.wait_for_sync('x', '30s') AND scuttlebutt.wait_for_sync('p', '30s')}), 't',
	'wait_for_sync of every model on D');
ok(LibpqTest::wait_converged('h', [ $nd, $nh ]), 'h converged');
ok(LibpqTest::wait_converged('m', [ $nd, $nr ]), 'm converged');
ok(LibpqTest::wait_converged('x', [ $nd, $nx ]), 'x converged');
ok(LibpqTest::wait_converged('p', [ $nd, $nr ]), 'p converged');
my $hn = $n_checks;
is(LibpqTest::per_source($nh, 'h'), "$hn," . ($hn + 1), "h: $hn keys from D, " . ($hn + 1) . ' from H');
is(LibpqTest::per_source($nr, 'm'), '21,50', 'm: 21 keys from D, 50 from R');
is(LibpqTest::per_source($nr, 'p'), '13,34', 'p: 13 keys from D, 34 from R');
is(LibpqTest::per_source($nx, 'x'), '1,1', 'x: a key from each');
is(qd(q{SELECT count(*) FROM scuttlebutt.peer_status WHERE state = 'live'}), 4, 'D: all four peers live');

# ---- 4. a stalled peer is removed ----
ok($proxy->pause, 'the proxy stops forwarding a last time');
qd(q{SELECT scuttlebutt.set('p', 'd_removed', '4')});
qd("SELECT scuttlebutt.remove_peer($p_peer)");
ok(LibpqTest::poll($nd, "SELECT NOT EXISTS (SELECT FROM scuttlebutt.peer_status WHERE peer_id = $p_peer)", 5),
	'remove_peer ends a stalled peer within 5 s');
healthy('a stalled peer removed');
ok($proxy->heal, 'the proxy forwards again');
# (d_removed may still arrive: its import was on the wire before the
# removal; nothing written after it may)
qd(q{SELECT scuttlebutt.set('p', 'd_after_removal', '5')});
healthy('after the removal');
# barrier: the removed peer's sessions on R have ended, so R has run
# everything they ever carried
ok(LibpqTest::poll($nr, q{SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'sb126_p')}, 30),
	'the removed peer\'s sessions on R end once the proxy forwards again');
is(qr1(q{SELECT scuttlebutt.get('p', 'd_after_removal')}), '', 'the removed peer pushes nothing written after its removal');

$proxy->stop;
$_->stop for ($nd, $nh, $nr, $nx);
done_testing();
