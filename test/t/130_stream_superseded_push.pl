# The scenario of t/129 over the stream transport: a local update
# superseded by one received from the peer before the pump read it.
#
# D dials R over a stream.  A transaction on D holds a timestamp t0 of the
# model, so D's pump stays below it; D writes one key, then a second at
# t1 > t0; R writes the second key at t2 > t1, and D receives and applies
# R's write before its pump could read its own.  Once the transaction
# ends (committed, or rolled back, which must wake the pump as a commit
# does), wait_for_sync() on D means R holds D's first key.
#
# R's clock for D's source stays behind D's (t1): the reference's protocol
# sends a clock only in a stream's first header, and the superseded update
# is no longer held to be sent.  Those checks are TODO: values agree, the
# clocks do not, until the protocol can carry a clock.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $nr = LibpqTest::new_node('r', listen => 1);
# A reservation far ahead: the writes below never move it, so the second
# local write does not wait for the first transaction's clock row.
my $nd = LibpqTest::new_node('d', conf => "scuttlebutt.timestamp_reserve = '10min'\n");
sub qr1 { LibpqTest::q1($nr, @_) }
sub qd { LibpqTest::q1($nd, @_) }
my $id_d = qd('SELECT scuttlebutt.node_id()');

qr1(q{SELECT scuttlebutt.create_model('kv')});
qd(q{SELECT scuttlebutt.create_model('kv')});
my $peer = qd(q{SELECT scuttlebutt.add_stream_peer('kv', '127.0.0.1', } . LibpqTest::stream_port($nr) . ')');
qr1(q{SELECT scuttlebutt.set('kv', 'warm_r', '1')});
qd(q{SELECT scuttlebutt.set('kv', 'warm_d', '1')});
is(qd(q{SELECT scuttlebutt.wait_for_sync('kv', '60s')}), 't', 'D syncs with R');
ok(LibpqTest::wait_converged('kv', [ $nr, $nd ], 30), 'R and D converge before the race');

# D's clock entry for its own source, as clock() shows it on $n
sub clock_of_d
{
	my ($n) = @_;
	return LibpqTest::q1($n, qq{SELECT scuttlebutt.clock('kv') ->> '$id_d'});
}

for my $end (qw(COMMIT ROLLBACK))
{
	my $key = 'contested_' . lc($end);

	# a transaction on D holds t0: readers of D's source stay below it
	my $bg = $nd->background_psql('postgres');
	$bg->query_safe(q{BEGIN});
	my $t0 = $bg->query_safe(qq{SELECT scuttlebutt.set('kv', 'held_' || lower('$end'), '"t0"')});
	my $solo = 'solo_' . lc($end);
	my $ts = qd(qq{SELECT scuttlebutt.set('kv', '$solo', '"d"')});
	my $t1 = qd(qq{SELECT scuttlebutt.set('kv', '$key', '"d"')});
	ok($t0 < $ts && $ts < $t1, "$end: D wrote $solo, then $key at t1, after t0");
	cmp_ok(clock_of_d($nd), '<', $t0, "$end: D's clock (what its pump reads) is held below t0");

	# R writes the key later (its wall clock past t1), and D receives it
	ok(LibpqTest::poll($nr, qq{SELECT extract(epoch FROM clock_timestamp()) * 1000 > $t1}, 10),
		"$end: R's wall clock is past t1");
	my $t2 = qr1(qq{SELECT scuttlebutt.set('kv', '$key', '"r"')});
	cmp_ok($t2, '>', $t1, "$end: R wrote $key at t2 > t1");
	ok(LibpqTest::poll($nd, qq{SELECT scuttlebutt.get('kv', '$key') = '"r"'}, 30),
		"$end: D received R's write, which superseded its own before its pump read it");
	cmp_ok(clock_of_d($nd), '<', $t0, "$end: D's own writes were still held back meanwhile");

	$bg->query_safe($end);
	$bg->quit;
	is(clock_of_d($nd), $t1, "$end: D's clock for its own source is now t1");

	# caught up: R holds what D holds, clock included
	is(qd(q{SELECT scuttlebutt.wait_for_sync('kv', '30s')}), 't', "$end: wait_for_sync on D");
	# (D in sync means D has sent it all; R applies what it reads soon after)
	ok(LibpqTest::poll($nr, qq{SELECT scuttlebutt.get('kv', '$solo') = '"d"'}, 30),
		"$end: once D says it is in sync, R holds $solo, written while t0 was held");
	ok(LibpqTest::poll($nr, q{SELECT (SELECT md5(string_agg(key || '=' || value::text, ',' ORDER BY key)) FROM scuttlebutt.entries('kv'))}
			. ' = ' . LibpqTest::lit(qd(q{SELECT md5(string_agg(key || '=' || value::text, ',' ORDER BY key)) FROM scuttlebutt.entries('kv')})), 30),
		"$end: R comes to hold D's values");
	is(qr1(q{SELECT md5(string_agg(key || '=' || value::text, ',' ORDER BY key)) FROM scuttlebutt.entries('kv')}),
		qd(q{SELECT md5(string_agg(key || '=' || value::text, ',' ORDER BY key)) FROM scuttlebutt.entries('kv')}),
		"$end: R and D hold the same values");
	TODO:
	{
		local $TODO = 'a stream carries a clock only in its first header';
		is(clock_of_d($nr), $t1, "$end: once D says it is in sync, R's clock for D's source is t1 too");
	}
	is(qr1(qq{SELECT scuttlebutt.get('kv', '$key')}), '"r"', "$end: R's write stands on R");
	is(qr1(qq{SELECT scuttlebutt.get('kv', 'held_' || lower('$end')) IS NOT NULL}),
		$end eq 'COMMIT' ? 't' : 'f', "$end: R holds the held transaction's write only if it committed");
}

my $r = LibpqTest::peer($nd, "peer_id = $peer");
is_deeply([ $r->{state}, $r->{rejected}, $r->{last_error} ], [ 'live', 0, undef ],
	"D's peer is live, nothing rejected, no error");

$_->stop for ($nr, $nd);
done_testing();
