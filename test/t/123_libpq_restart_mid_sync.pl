# The remote server restarts in the middle of an initial sync over libpq,
# and nothing is lost or stored twice.  R (the remote) holds a 60,000-key
# model "big"; D (the dialing server) holds 1,000 keys of its own.
#
#  1. pull: D dials R for "big"; while D is still pulling R's history
#     (part of it committed on D), R restarts.
#  2. push: D holds 40,000 keys of "big2" that R lacks; D dials R; while
#     D's import into R is under way, R restarts.
#  3. the dialing side restarts while it pulls R's 40,000 keys of "big3".
#
# To restart "mid-sync" without racing a sync that may take well under a
# second, the receiving side is held in the middle of it: it already holds
# an (older) update of the other's for the key in the middle of the
# other's history, and a session keeps that row locked.  The apply that
# carries the newer update of that key waits for the lock.
#
# Afterwards both hold the same keys: exact counts per source, a checksum
# of entries() and the clock equal.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

# Several pages of history on each side of the held row (below): a poll()
# page is at most 10,000 updates, an import batch 10,000, an apply batch
# 5,000
my $keys = 60_000;
my $keys2 = 40_000;

my $nr = LibpqTest::new_node('r');
my $nd = LibpqTest::new_node('d');
sub q1 { LibpqTest::q1(@_) }
my $id_r = q1($nr, 'SELECT scuttlebutt.node_id()');
my $id_d = q1($nd, 'SELECT scuttlebutt.node_id()');
my $ci_r = LibpqTest::conninfo($nr);

for my $n ($nr, $nd)
{
	q1($n, q{SELECT scuttlebutt.create_model('big', 'model'); SELECT scuttlebutt.create_model('big2', 'model')});
}

# set_many in chunks of 50,000 keys
sub fill
{
	my ($n, $model, $prefix, $count) = @_;
	my $made = 0;
	for (my $lo = 1; $lo <= $count; $lo += 50_000)
	{
		my $hi = $lo + 49_999;
		$hi = $count if $hi > $count;
		$made += q1($n, qq{SELECT scuttlebutt.set_many('$model',
			(SELECT jsonb_object_agg('$prefix' || lpad(i::text, 6, '0'), jsonb_build_object('i', i, 'pad', 'xxxxxxxxxxxxxxxx'))
			 FROM generate_series($lo, $hi) i))});
	}
	return $made;
}

my $t0 = time;
is(fill($nr, 'big', 'k', $keys), $keys, "R: $keys keys of big written with set_many");
is(fill($nd, 'big', 'd', 1000), 1000, 'D: 1000 keys of big of its own');
is(fill($nd, 'big2', 'e', $keys2), $keys2, "D: $keys2 keys of big2");
is(fill($nr, 'big2', 'r', 100), 100, 'R: 100 keys of big2 of its own');
note(sprintf('writing took %.2fs', time - $t0));

# A checksum of everything a node holds for a model
sub state_of
{
	my ($n, $model) = @_;
	return q1($n, qq{SELECT count(*) || ' ' || md5(string_agg(key || '=' || value::text || '\@' || ts || '/' || source,
		E'\\n' ORDER BY key)) || ' ' || md5(scuttlebutt.clock('$model')::text) FROM scuttlebutt.entries('$model')});
}

# On $n, an older update of $source's for $key, and a session that keeps
# its row locked
sub hold_row
{
	my ($n, $model, $key, $source) = @_;
	q1($n, qq{SELECT scuttlebutt.apply_update('$model', '[["$key","older"],1,"$source"]')});
	my $bg = $n->background_psql('postgres');
	$bg->query_safe(qq{BEGIN; SELECT 1 FROM scuttlebutt.updates WHERE key = '$key' AND source = '$source' FOR UPDATE;});
	return $bg;
}

# Polls until some session of $n waits for a lock
sub wait_lock_wait
{
	my ($n) = @_;
	return LibpqTest::poll($n, q{SELECT EXISTS (SELECT FROM pg_stat_activity WHERE wait_event_type = 'Lock')}, 120);
}

sub wait_keys
{
	my ($model, $want, @nodes) = @_;
	my $all = 1;
	for my $n (@nodes)
	{
		LibpqTest::poll($n, "SELECT count(*) = $want FROM scuttlebutt.keys('$model')", 120)
		  or ($all = 0, diag($n->name . " has " . q1($n, "SELECT count(*) FROM scuttlebutt.keys('$model')")
			  . " keys of $model, not $want"));
	}
	return $all;
}

# ---- 1. the remote restarts while the dialing side pulls ----
$t0 = time;
my $middle = sprintf('k%06d', $keys / 2);
my $bg = hold_row($nd, 'big', $middle, $id_r);
my $peer1 = LibpqTest::add_peer($nd, 'big', $ci_r);
ok(wait_lock_wait($nd), 'pull: D\'s apply of R\'s history waits for the held row');
my $committed = q1($nd, qq{SELECT count(*) FROM scuttlebutt.entries('big') WHERE source = '$id_r' AND ts > 1});
cmp_ok($committed, '>', 0, "pull: D had committed part of R's history ($committed updates) before the held row");
cmp_ok($committed, '<', $keys / 2, 'pull: and not the part after it');
my $r = LibpqTest::peer($nd, "peer_id = $peer1");
is($r->{state}, 'syncing', 'pull: D\'s peer_status shows the peer syncing');
cmp_ok($r->{received} // 0, '>=', $committed, 'pull: D\'s peer_status counts at least the updates committed as received');
$nr->restart;    # (fast shutdown: ends D's sessions on R)
$bg->quit;
is(q1($nd, q{SELECT scuttlebutt.wait_for_sync('big', '120s')}), 't', 'pull: wait_for_sync on D after R\'s restart');
ok(wait_keys('big', $keys + 1000, $nr, $nd), 'pull: R and D hold all ' . ($keys + 1000) . ' keys');
is(state_of($nd, 'big'), state_of($nr, 'big'), 'pull: after R\'s restart, D and R hold the same entries and clock');
ok(LibpqTest::wait_converged('big', [ $nr, $nd ], 60), 'pull: same history and clock, byte for byte');
for my $n ($nr, $nd)
{
	is(LibpqTest::per_source($n, 'big'), "1000,$keys", $n->name . ": big holds $keys + 1000 entries per source");
}
is(q1($nd, "SELECT scuttlebutt.get('big', '$middle')->>'i'"), $keys / 2, 'pull: the held key has R\'s newer value on D');
$r = LibpqTest::peer($nd, "peer_id = $peer1");
is($r->{state}, 'live', 'pull: D\'s peer is live again');
note('pull: last_error after recovery: ' . ($r->{last_error} // 'NULL'));
note(sprintf('scenario 1 took %.2fs', time - $t0));

# ---- 2. the remote restarts while the dialing side pushes ----
$t0 = time;
my $middle2 = sprintf('e%06d', $keys2 / 2);
$bg = hold_row($nr, 'big2', $middle2, $id_d);
my $peer2 = LibpqTest::add_peer($nd, 'big2', $ci_r);
ok(wait_lock_wait($nr), 'push: D\'s import into R waits for the held row');
$r = LibpqTest::peer($nd, "peer_id = $peer2");
is($r->{state}, 'syncing', 'push: D\'s peer_status shows the peer syncing');
my $pushed = q1($nr, qq{SELECT count(*) FROM scuttlebutt.entries('big2') WHERE source = '$id_d' AND ts > 1});
cmp_ok($pushed, '>', 0, "push: R had committed part of D's history ($pushed updates) before the held row");
cmp_ok($pushed, '<', $keys2 / 2, 'push: and not the part after it');
$nr->restart;
$bg->quit;
is(q1($nd, q{SELECT scuttlebutt.wait_for_sync('big2', '120s')}), 't', 'push: wait_for_sync on D after R\'s restart');
ok(wait_keys('big2', $keys2 + 100, $nr, $nd), 'push: R and D hold all ' . ($keys2 + 100) . ' keys');
is(state_of($nr, 'big2'), state_of($nd, 'big2'), 'push: after R\'s restart, R and D hold the same entries and clock');
ok(LibpqTest::wait_converged('big2', [ $nr, $nd ], 60), 'push: same history and clock, byte for byte');
for my $n ($nr, $nd)
{
	is(LibpqTest::per_source($n, 'big2'), "100,$keys2", $n->name . ": big2 holds $keys2 + 100 entries per source");
}
is(q1($nr, "SELECT scuttlebutt.get('big2', '$middle2')->>'i'"), $keys2 / 2, 'push: the held key has D\'s newer value on R');
$r = LibpqTest::peer($nd, "peer_id = $peer2");
is($r->{state}, 'live', 'push: D\'s peer is live again');
note(sprintf('scenario 2 took %.2fs', time - $t0));

# ---- 3. the dialing side restarts while it pulls ----
$t0 = time;
my $keys3 = 40_000;
q1($_, q{SELECT scuttlebutt.create_model('big3', 'model')}) for ($nr, $nd);
is(fill($nr, 'big3', 'm', $keys3), $keys3, "R: $keys3 keys of big3");
my $middle3 = sprintf('m%06d', $keys3 / 2);
$bg = hold_row($nd, 'big3', $middle3, $id_r);
my $peer3 = LibpqTest::add_peer($nd, 'big3', $ci_r);
ok(wait_lock_wait($nd), 'dialer restart: D\'s apply of R\'s history waits for the held row');
$committed = q1($nd, qq{SELECT count(*) FROM scuttlebutt.entries('big3') WHERE source = '$id_r' AND ts > 1});
cmp_ok($committed, '>', 0, "dialer restart: D had committed part of R's history ($committed updates)");
is(LibpqTest::peer($nd, "peer_id = $peer3")->{state}, 'syncing', 'dialer restart: D\'s peer_status shows the peer syncing');
$nd->restart;    # (fast shutdown: ends the session holding the lock and the worker's transaction)
$bg->quit;
is(q1($nd, q{SELECT scuttlebutt.wait_for_sync('big3', '120s')}), 't', 'dialer restart: wait_for_sync on D after its restart');
ok(wait_keys('big3', $keys3, $nr, $nd), "dialer restart: D holds all $keys3 keys");
is(state_of($nd, 'big3'), state_of($nr, 'big3'), 'dialer restart: D and R hold the same entries and clock');
is(LibpqTest::per_source($nd, 'big3'), $keys3, "dialer restart: D holds $keys3 entries of R's");
is(LibpqTest::peer($nd, "peer_id = $peer3")->{state}, 'live', 'dialer restart: the peer is live again, same id');
for my $m (qw(big big2))
{
	is(q1($nd, "SELECT scuttlebutt.wait_for_sync('$m', '60s')"), 't', "dialer restart: the $m peer is back too");
}
note(sprintf('scenario 3 took %.2fs', time - $t0));

# both peers still replicate live after all this
q1($nr, q{SELECT scuttlebutt.set('big', 'after', '"r"'); SELECT scuttlebutt.set('big2', 'after', '"r"')});
q1($nd, q{SELECT scuttlebutt.set('big', 'after_d', '"d"'); SELECT scuttlebutt.set('big2', 'after_d', '"d"')});
ok(LibpqTest::poll($nd, q{SELECT scuttlebutt.get('big', 'after') = '"r"' AND scuttlebutt.get('big2', 'after') = '"r"'}, 30),
	'live afterwards: R\'s writes reach D');
ok(LibpqTest::poll($nr, q{SELECT scuttlebutt.get('big', 'after_d') = '"d"' AND scuttlebutt.get('big2', 'after_d') = '"d"'}, 30),
	'live afterwards: D\'s writes reach R');

$_->stop for ($nr, $nd);
done_testing();
