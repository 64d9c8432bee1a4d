# Timestamps from the future: an update more than scuttlebutt.max_clock_skew
# ahead of this server's clock is not applied and moves no clock, on the
# stream listener and on the libpq pull path; it is counted in
# peer_status.rejected_skew with a rate-limited WARNING naming the peer, and
# comes again (and is applied) after a reconnect once within bounds.
#
# This node's own source: within the skew it is adopted (the restore case:
# a peer holds our updates that a restored backup lost, and later local
# writes go past them); beyond it, it is rejected like any other (forgery).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamTest;
use Test::More;
use Time::HiRes qw(time sleep);

my $na = StreamTest::new_node('a');
my $pa = StreamTest::port($na);
# (queries that fail return '': the assertions, not the script, fail)
sub qa { my (undef, $out) = $na->psql('postgres', $_[0]); return $out }

is(qa(q{SELECT current_setting('scuttlebutt.max_clock_skew', true)}), '1min', 'max_clock_skew defaults to one minute');
my $id_a = qa('SELECT scuttlebutt.node_id()');
qa(q{SELECT scuttlebutt.create_model('m')});
qa(q{SELECT scuttlebutt.set('m', 'k0', '0')});

sub now_ms { return int(time * 1000) }

sub restart_a
{
	my $o = -s $na->logfile;
	$na->restart;
	$na->wait_for_log(qr/listening for stream peers/, $o);
}

# local timestamps of A must stay near the wall clock
sub near_now
{
	my ($ts, $label) = @_;
	my $now = now_ms();
	ok($ts ne '' && $ts > $now - 60_000 && $ts < $now + 60_000, "$label: timestamp $ts is near the wall clock ($now)");
}

sub clock_of
{
	my ($model, $source) = @_;
	return qa("SELECT coalesce(scuttlebutt.clock('$model')->>'$source', 'none')");
}

my $own_clock = clock_of('m', $id_a);

# ---- the issue's cases, on one raw stream ----
my $g = StreamTest::Raw->new($pa);
my ($header) = $g->handshake('m', id => 'G');
like($header, qr/"id":"\Q$id_a\E"/, 'the listener names its node id in its header');
my $addr = $g->addr;
my $off = -s $na->logfile;

my $now = now_ms();
$g->send_line(qq([["forged",1],1.7976931348623157e308,"$id_a"]));
$g->send_line(qq([["far",1],1e15,"FAR"]));
$g->send_line(qq([["far2",1],$now,"FAR"]));    # later of the same source: deferred too
$g->send_line(qq([["k3000",1],32503680000000,"Y3K"]));
$g->send_line(qq([["ok1",1],$now,"G"]));
ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('m', 'ok1') IS NOT NULL}, 30),
	'the rest of the stream is applied');
is(qa(q{SELECT count(*) FROM scuttlebutt.updates WHERE key IN ('forged', 'far', 'far2', 'k3000')}), '0',
	'no update from the future is stored');
is(clock_of('m', 'FAR') . ',' . clock_of('m', 'Y3K'), 'none,none', 'their sources\' clocks did not move');
is(clock_of('m', $id_a), $own_clock, 'this node\'s own clock did not move');
my $row = StreamTest::peer($na, "remote_addr = '$addr'");
is($row->{state}, 'live', 'the connection stays up');
is(qa("SELECT rejected_skew FROM scuttlebutt.peer_status WHERE remote_addr = '$addr'"), '4',
	'peer_status.rejected_skew counts the four');
ok(StreamTest::find_log($na,
		qr/WARNING:\s+scuttlebutt: deferred \d+ update\(s\) from \Q$addr\E: source "[^"]+" sent one [-+.e\d]+ ms ahead/, $off, 20),
	'a WARNING names the peer and the skew');
my $warnings = () = StreamTest::log_since($na, $off) =~ /deferred \d+ update\(s\) from \Q$addr\E/g;
is($warnings, 1, 'one WARNING for the burst (rate-limited)');

# the year-3000 key, written locally: its timestamp stays near now
near_now(qa(q{SELECT scuttlebutt.set('m', 'k3000', '"local"')}), 'set() of the key sent from the year 3000');
near_now(qa(q{SELECT scuttlebutt.set('m', 'other', '1')}), 'a later set()');
# the forged update did not raise what the session thinks G holds of our source
ok(defined $g->read_until(qr/"other"/, 20), 'G still gets this node\'s later updates');

# ---- restart: the model still works ----
restart_a();
near_now(qa(q{SELECT scuttlebutt.set('m', 'after_restart', '1')}), 'set() after a restart');
is(qa(q{SELECT scuttlebutt.set_many('m', '{"x1": 1, "x2": 2}')}), '2', 'set_many() after a restart');

# ---- a small skew: rejected, then accepted after a reconnect ----
qa(q{ALTER SYSTEM SET scuttlebutt.max_clock_skew = '2s'});
ok(ScuttlebuttTest::reload_worker($na), 'skew set to 2s (the worker took the reload)');
my $soon = now_ms() + 5000;
my $s1 = StreamTest::Raw->new($pa);
$s1->handshake('m', id => 'S');
$s1->send_line(qq([["soon",1],$soon,"SOON"]));
$s1->send_line(qq([["ok2",1],) . now_ms() . qq(,"S"]));
ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('m', 'ok2') IS NOT NULL}, 30), 'the good update is applied');
is(qa(q{SELECT scuttlebutt.get('m', 'soon') IS NULL}), 't', 'the update 5 s ahead is not');
is(clock_of('m', 'SOON'), 'none', 'and its source\'s clock did not move');
$s1->close_fin;
sleep(0.1) while now_ms() < $soon + 200;
my $s2 = StreamTest::Raw->new($pa);
$s2->handshake('m', id => 'S');
$s2->send_line(qq([["soon",1],$soon,"SOON"]));
ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('m', 'soon') IS NOT NULL}, 30),
	'offered again after a reconnect once within bounds, it is applied');
is(clock_of('m', 'SOON'), $soon, 'and its source\'s clock is its timestamp');
$s2->close_fin;
qa(q{ALTER SYSTEM RESET scuttlebutt.max_clock_skew});
ok(ScuttlebuttTest::reload_worker($na), 'skew back to its default (the worker took the reload)');

# ---- the restore case: our own updates come back from a peer ----
my $nb = StreamTest::new_node('b', listen => 0);
sub qb { my (undef, $out) = $nb->psql('postgres', $_[0]); return $out }
qa(q{SELECT scuttlebutt.create_model('r')});
qb(q{SELECT scuttlebutt.create_model('r')});
my $peer = qb("SELECT scuttlebutt.add_stream_peer('r', '127.0.0.1', $pa)");
qa(q{SELECT scuttlebutt.set('r', 'k', '"before"')});
my $lost_ts = qa(q{SELECT scuttlebutt.set('r', 'k', '"lost"')});
ok(StreamTest::poll($nb, q{SELECT scuttlebutt.get('r', 'k') = '"lost"'}), 'B holds A\'s latest write');
qb("SELECT scuttlebutt.remove_peer($peer)");
# A is "restored" to before that write: its rows of model r are gone
qa(q{DELETE FROM scuttlebutt.updates WHERE model_id = scuttlebutt._model_id('r')});
qa(q{DELETE FROM scuttlebutt.clocks WHERE model_id = scuttlebutt._model_id('r')});
restart_a();
$peer = qb("SELECT scuttlebutt.add_stream_peer('r', '127.0.0.1', $pa)");
ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('r', 'k') = '"lost"'}), 'restore: A takes its own update back');
cmp_ok(clock_of('r', $id_a), '==', $lost_ts, 'restore: A\'s own clock is that update\'s timestamp');
my $new_ts = qa(q{SELECT scuttlebutt.set('r', 'k', '"new"')});
ok($new_ts > $lost_ts, 'restore: a new local write takes a greater timestamp');
ok(StreamTest::poll($nb, q{SELECT scuttlebutt.get('r', 'k') = '"new"'}), 'restore: and wins on B too');
is(qa(q{SELECT scuttlebutt.get('r', 'k')}), '"new"', 'restore: and on A');
qb("SELECT scuttlebutt.remove_peer($peer)");

# ---- the libpq pull path: a remote holding a row from the future ----
my $nc = LibpqTest::new_node('c');
sub qc { my (undef, $out) = $nc->psql('postgres', $_[0]); return $out }
qc(q{SELECT scuttlebutt.create_model('lp')});
qa(q{SELECT scuttlebutt.create_model('lp')});
qc(q{SELECT scuttlebutt.set('lp', 'c1', '1')});
# as superuser, straight into the tables: what a broken remote could hold
qc(q{INSERT INTO scuttlebutt.updates (model_id, source, ts, key, doc)
	 VALUES (scuttlebutt._model_id('lp'), 'EVIL', 1e15, 'evil', '[["evil",1],1e15,"EVIL"]')});
qc(q{INSERT INTO scuttlebutt.clocks (model_id, source, ts) VALUES (scuttlebutt._model_id('lp'), 'EVIL', 1e15)});
my $lp = LibpqTest::add_peer($na, 'lp', LibpqTest::conninfo($nc));
ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('lp', 'c1') IS NOT NULL}), 'libpq: the good row is pulled');
qc(q{SELECT scuttlebutt.set('lp', 'c2', '2')});
ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('lp', 'c2') IS NOT NULL}), 'libpq: later rows are pulled');
is(qa(q{SELECT scuttlebutt.get('lp', 'evil') IS NULL}), 't', 'libpq: the row from the future is not');
is(clock_of('lp', 'EVIL'), 'none', 'libpq: nor does the remote\'s header raise our clock for it');
ok(StreamTest::poll($na, "SELECT rejected_skew >= 1 FROM scuttlebutt.peer_status WHERE peer_id = $lp"),
	'libpq: counted in rejected_skew');
# the deferred rows do not make the dialer poll without pause: it waits for
# news as when caught up (each wait_for_commit() lasts seconds)
{
	my $xacts = sub { qc(q{SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()}) };
	my $before = $xacts->();
	sleep 4;
	my $polls = $xacts->() - $before;
	cmp_ok($polls, '<', 40, "libpq: while a source is deferred, the remote is not polled without pause ($polls transactions in 4 s)");
}
near_now(qa(q{SELECT scuttlebutt.set('lp', 'evil', '"mine"')}), 'libpq: a local write of that key');

# an update a little ahead: deferred, then pulled again when the dialer
# redials once it is within bounds
qa(q{ALTER SYSTEM SET scuttlebutt.max_clock_skew = '2s'});
ok(ScuttlebuttTest::reload_worker($na), 'libpq: skew set to 2s (the worker took the reload)');
my $off_lp = -s $na->logfile;
my $soon_lp = now_ms() + 8000;
qc(qq{INSERT INTO scuttlebutt.updates (model_id, source, ts, key, doc)
	 VALUES (scuttlebutt._model_id('lp'), 'SOONLP', $soon_lp, 'soon_lp', '[["soon_lp",1],$soon_lp,"SOONLP"]')});
qc(qq{INSERT INTO scuttlebutt.clocks (model_id, source, ts) VALUES (scuttlebutt._model_id('lp'), 'SOONLP', $soon_lp)});
qc(q{SELECT scuttlebutt.set('lp', 'c3', '3')});    # wakes the waiting poll
ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('lp', 'c3') IS NOT NULL}), 'libpq: the rows around it are pulled');
is(qa(q{SELECT scuttlebutt.get('lp', 'soon_lp') IS NULL}), 't', 'libpq: the row 8 s ahead is not, yet');
ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('lp', 'soon_lp') IS NOT NULL}, 60),
	'libpq: once within bounds it is pulled');
ok(now_ms() >= $soon_lp - 2000, 'libpq: not before');
like(StreamTest::log_since($na, $off_lp), qr/redial for deferred updates/, 'libpq: the dialer redialed for it');
qa(q{ALTER SYSTEM RESET scuttlebutt.max_clock_skew});
qa(q{SELECT pg_reload_conf()});

is(StreamTest::worker_pid($na) ne '', 1, 'the worker runs');
$nc->stop;
$nb->stop;
$na->stop;
done_testing();
