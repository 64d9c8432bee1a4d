# Hostile input from peers: nothing a peer sends can end the worker, store
# a number JavaScript cannot hold, or make the worker send a peer a line
# that is not one JSON text.
#
# A listens; two good peers stay connected throughout: server B (dialing
# A over the stream) and a raw client G, both live on model "m".
#
#  1. JSON nested too deeply (100,000 "[" as one line, before and after
#     the header; 100,000 "{"a":"; valid JSON 600 levels deep): the
#     connection is closed ("JSON nested too deeply", a WARNING naming the
#     peer, connection_errors), the worker lives on (same pid), the good
#     peers replicate; 500 levels are still accepted.
#  2. Numbers beyond a double (1e400, -1e400, [1e99999, ...], 10^400 written
#     out, 1.7976931348623159e308) are rejected and counted; the largest
#     and smallest doubles, -0, 1.7976931348623158e308 (which reads as the
#     largest double) and a long mantissa are stored byte for byte.
#  3. A libpq remote R whose poll() returns 100,000 "[": A closes that
#     session with the reason, again on every reconnect, and its worker
#     never restarts.
#  4. A row whose doc holds a line break: a role with INSERT on
#     scuttlebutt.updates cannot store it (the updates_doc_one_line
#     constraint); written by a superuser with the constraint dropped, it
#     is never sent (a WARNING says so) and a real JavaScript client
#     (npm scuttlebutt) syncs everything else.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use StreamTest;
use Test::More;

my $na = StreamTest::new_node('a');
my $nb = StreamTest::new_node('b', listen => 0);
my $nr = LibpqTest::new_node('r');
my $pa = StreamTest::port($na);
sub qa { StreamTest::q1($na, @_) }
sub qb { StreamTest::q1($nb, @_) }
sub qr1 { LibpqTest::q1($nr, @_) }

qa(q{SELECT scuttlebutt.create_model('m'); SELECT scuttlebutt.create_model('h')});
qb(q{SELECT scuttlebutt.create_model('m')});
qr1(q{SELECT scuttlebutt.create_model('h')});
qa(q{SELECT scuttlebutt.set('m', 'a' || i, to_jsonb(i)) FROM generate_series(1, 5) i});
qb(q{SELECT scuttlebutt.set('m', 'b' || i, to_jsonb(i)) FROM generate_series(1, 5) i});

my $worker_pid = StreamTest::worker_pid($na);
like($worker_pid, qr/^\d+$/, 'A\'s replication worker runs');

# ---- the good peers ----
my $peer_b = qb("SELECT scuttlebutt.add_stream_peer('m', '127.0.0.1', $pa)");
is(qb(q{SELECT scuttlebutt.wait_for_sync('m', '60s')}), 't', 'B is synced with A');
my $synced_b = StreamTest::peer($nb, "peer_id = $peer_b")->{synced_at};
my $g = StreamTest::Raw->new($pa);
my ($g_header) = $g->handshake('m', id => 'GOOD');
like($g_header // '', qr/^\{"id":"[^"]+","clock":\{/, 'G gets A\'s header');

my $round = 0;
sub good_peers_replicate
{
	my ($label) = @_;
	$round++;
	qa(qq{SELECT scuttlebutt.set('m', 'probe_a$round', '$round')});
	qb(qq{SELECT scuttlebutt.set('m', 'probe_b$round', '$round')});
	my $ok = StreamTest::poll($nb, qq{SELECT scuttlebutt.get('m', 'probe_a$round') IS NOT NULL}, 30)
	  && StreamTest::poll($na, qq{SELECT scuttlebutt.get('m', 'probe_b$round') IS NOT NULL}, 30);
	ok($ok, "$label: B and A still replicate both ways");
	ok(defined $g->read_until(qr/"probe_a$round"/, 30), "$label: G still gets A's updates");
	is(StreamTest::worker_pid($na), $worker_pid, "$label: A's worker is the same process");
}

sub gone
{
	my ($addr) = @_;
	return StreamTest::poll($na,
		qq{SELECT NOT EXISTS (SELECT FROM scuttlebutt.peer_status WHERE remote_addr = '$addr')}, 30);
}

my $ts = 1795477184259;
my $deep = '[' x 100_000;

# ---- 1. nesting too deep on the listener ----
my @deep_cases = (
	[ '100,000 "[" after the header', 1, $deep ],
	[ '100,000 "[" as the first line', 0, $deep ],
	[ '100,000 {"a": as the first line', 0, '{"a":' x 100_000 ],
	[ 'valid JSON 600 levels deep in an update', 1,
		'[["deep600",' . ('[' x 600) . (']' x 600) . qq{],$ts,"DEEP600"]} ],
);
for my $case (@deep_cases)
{
	my ($name, $after_header, $line) = @$case;
	my $off = -s $na->logfile;
	my $before = StreamTest::error_count($na, 'JSON nested too deeply');
	my $r = StreamTest::Raw->new($pa);
	my $addr = $r->addr;
	$r->handshake('m', id => 'DEEP') if $after_header;
	$r->send_line($line);
	ok($r->wait_closed(30), "$name: the server closes the connection");
	ok(gone($addr), "$name: A no longer holds the connection");
	ok(StreamTest::find_log($na,
			qr/WARNING:\s+scuttlebutt: closing connection from \Q$addr\E: JSON nested too deeply/, $off, 20),
		"$name: a WARNING names the peer and the reason");
	is(StreamTest::error_count($na, 'JSON nested too deeply'), $before + 1,
		"$name: connection_errors counts it");
	good_peers_replicate($name);
}
is(qa(q{SELECT count(*) FROM scuttlebutt.keys('m') k WHERE k = 'deep600'}), 0, 'nothing of the deep update is stored');
{
	my $r = StreamTest::Raw->new($pa);
	$r->handshake('m', id => 'DEEP500');
	$r->send_line('[["deep500",' . ('[' x 500) . '1' . (']' x 500) . qq{],$ts,"DEEP500"]});
	ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('m', 'deep500') IS NOT NULL}, 30),
		'a value 500 levels deep is still applied');
	$r->close_fin;
	gone($r->addr);
}

# ---- 2. numbers beyond a double ----
{
	my @refused = (
		[ 'n_inf', '1e400' ],
		[ 'n_neginf', '-1e400' ],
		[ 'n_arr', '[' . join(',', ('1e99999') x 1000) . ']' ],
		[ 'n_written_out', '1' . ('0' x 400) ],
		[ 'n_above_max', '1.7976931348623159e308' ],
		[ 'n_e309', '0.1e310' ],
	);
	my @kept = (
		[ 'n_max', '1.7976931348623157e308' ],
		[ 'n_max_rounded', '1.7976931348623158e308' ],
		[ 'n_negmax', '-1.7976931348623157e308' ],
		[ 'n_min', '5e-324' ],
		[ 'n_negzero', '-0' ],
		[ 'n_1e308', '1e308' ],
		[ 'n_long', '0.1000000000000000055511151231257827021181583404541015625' ],
		[ 'n_long_int', '179769313486231570000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000' ],
		[ 'n_under', '1e-400' ],
	);
	my $r = StreamTest::Raw->new($pa);
	$r->handshake('m', id => 'NUM');
	my $addr = $r->addr;
	my $t = $ts;
	my %line;
	for my $c (@refused, @kept)
	{
		$t++;
		$line{ $c->[0] } = qq{[["$c->[0]",$c->[1]],$t,"NUM"]};
		$r->send_line($line{ $c->[0] });
	}
	$r->send_line(qq{[["n_done",1],} . ($t + 1) . qq{,"NUM"]});
	ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('m', 'n_done') = '1'}, 30),
		'numbers: the stream goes on after the refused ones');
	is(StreamTest::peer($na, "remote_addr = '$addr'")->{rejected}, scalar(@refused),
		'numbers: every number beyond a double is rejected and counted');
	for my $c (@refused)
	{
		is(qa(qq{SELECT count(*) FROM scuttlebutt.keys('m') k WHERE k = '$c->[0]'}), 0,
			"numbers: $c->[0] is not stored");
	}
	for my $c (@kept)
	{
		is(qa(qq{SELECT h::text FROM scuttlebutt.history('m') h WHERE h::text LIKE '[["$c->[0]",%'}),
			$line{ $c->[0] }, "numbers: $c->[0] is stored byte for byte");
	}
	like(StreamTest::peer($na, "remote_addr = '$addr'")->{last_error} // '',
		qr/out of range for a JavaScript number/, 'numbers: last_error says why');
	$r->close_fin;
	gone($addr);
	good_peers_replicate('numbers');
}

# ---- 2b. bytes that are not UTF-8 ----
{
	# in a key, a value, a source; overlong, surrogate and past-U+10FFFF forms
	my @bad = (
		[ "k_ff_\xff", '1', 'BAD8' ],
		[ 'k_val', qq{"\xc3("}, 'BAD8' ],
		[ 'k_src', '1', "BAD8\xfe\xff" ],
		[ "k_overlong_\xc0\xaf", '1', 'BAD8' ],
		[ "k_surrogate_\xed\xa0\x80", '1', 'BAD8' ],
		[ "k_beyond_\xf4\x90\x80\x80", '1', 'BAD8' ],
	);
	my $r = StreamTest::Raw->new($pa);
	$r->handshake('m', id => 'BAD8');
	my $addr = $r->addr;
	my $t = $ts + 1000;
	$r->send_line(qq{[["$_->[0]",$_->[1]],} . ++$t . qq{,"$_->[2]"]}) for @bad;
	$r->send_line(qq{[["u8_done","\xc3\xa9"],} . ++$t . qq{,"BAD8"]});
	ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('m', 'u8_done') = '"é"'}, 30),
		'UTF-8: the stream goes on after the invalid lines; valid UTF-8 is stored');
	is(StreamTest::peer($na, "remote_addr = '$addr'")->{rejected}, scalar(@bad),
		'UTF-8: every update that is not UTF-8 is rejected and counted');
	is(qa(q{SELECT count(*) FROM scuttlebutt.keys('m') k WHERE k LIKE 'k\_%'}), 0,
		'UTF-8: none of them is stored');
	is(qa(q{SELECT count(*) FROM scuttlebutt.history('m') h WHERE h->>2 LIKE 'BAD8_%'}), 0,
		'UTF-8: no source that is not UTF-8 is stored');
	like(StreamTest::peer($na, "remote_addr = '$addr'")->{last_error} // '',
		qr/invalid UTF-8/, 'UTF-8: last_error says why');
	$r->close_fin;
	gone($addr);
	good_peers_replicate('UTF-8');
}

# ---- 3. a libpq remote whose poll() returns 100,000 "[" ----
qr1(q{ALTER EXTENSION scuttlebutt DROP FUNCTION scuttlebutt.poll(text, jsonb, integer);
	DROP FUNCTION scuttlebutt.poll(text, jsonb, integer);
	CREATE FUNCTION scuttlebutt.poll(model text, sources jsonb, max_updates integer)
	RETURNS SETOF text LANGUAGE sql AS $$ SELECT repeat('[', 100000) $$});
{
	my $before = StreamTest::error_count($na, 'JSON nested too deeply');
	my $peer_r = LibpqTest::add_peer($na, 'h', LibpqTest::conninfo($nr));
	ok(StreamTest::poll($na,
			q{SELECT coalesce(sum(count), 0) >= } . ($before + 3)
			  . q{ FROM scuttlebutt.connection_errors WHERE reason = 'JSON nested too deeply'}, 60),
		'libpq: A closes the session on each poll() answer, and reconnects');
	like(LibpqTest::peer($na, "peer_id = $peer_r")->{last_error} // '', qr/^JSON nested too deeply/,
		'libpq: last_error gives the reason');
	good_peers_replicate('libpq remote sending deep JSON');
	qa("SELECT scuttlebutt.remove_peer($peer_r)");
}

# ---- 4. a stored doc that is not one line ----
my $mid = qa(q{SELECT id FROM scuttlebutt.registry WHERE name = 'm'});
# (a role given INSERT on the table by hand, past row-level security too)
qa(q{CREATE ROLE writer LOGIN BYPASSRLS; GRANT USAGE ON SCHEMA scuttlebutt TO writer;
	GRANT INSERT ON scuttlebutt.updates TO writer});
my $evil = qq{E'[["evil",\\n1],$ts,"EVIL"]'};
my ($rc, $out, $err) = $na->psql('postgres',
	"INSERT INTO scuttlebutt.updates VALUES ($mid, 'EVIL', $ts, 'evil', $evil)",
	extra_params => [ '-U', 'writer' ]);
isnt($rc, 0, 'a role with INSERT cannot store a doc with a line break');
like($err, qr/updates_doc_one_line/, 'the updates_doc_one_line constraint refuses it');
($rc, $out, $err) = $na->psql('postgres',
	"INSERT INTO scuttlebutt.updates VALUES ($mid, 'EVIL', $ts, 'evil', E'[[\"evil\",\\r1],$ts,\"EVIL\"]')");
like($err, qr/updates_doc_one_line/, 'nor one with a carriage return');

# a superuser goes around it
qa(qq{ALTER TABLE scuttlebutt.updates DROP CONSTRAINT IF EXISTS updates_doc_one_line;
	INSERT INTO scuttlebutt.updates VALUES ($mid, 'EVIL', $ts, 'evil', $evil) ON CONFLICT DO NOTHING;
	INSERT INTO scuttlebutt.clocks VALUES ($mid, 'EVIL', $ts) ON CONFLICT DO NOTHING});
my $off = -s $na->logfile;
qa(q{SELECT scuttlebutt.set('m', 'after_evil', '"ok"')});
LibpqTest::run_js($na, 'js_client_after_broken_row', <<'EOJS', $pa);
'use strict';
const h = require(process.env.SB_INTEROP + '/lib/harness');
const st = require(process.env.SB_INTEROP + '/lib/stream');

const port = Number(process.argv[3]);

h.main(async () => {
	const sb = new h.Model('JS-after-broken-row');
	const peer = await st.connectClient(port, sb, { meta: 'm' }, 'JS client');
	h.ok(await st.until(() => peer.synced), 'the JS client syncs with A');
	h.same(sb.get('a1'), 1, 'it holds a key written at A');
	h.same(sb.get('b5'), 5, 'and one written at B');
	h.same(sb.get('after_evil'), 'ok', 'and the write after the broken row');
	h.same(sb.get('n_max'), 1.7976931348623157e308, 'and the largest double');
	h.is(sb.get('evil'), undefined, 'not the row that is not one line');
	const bad = peer.lines().filter((l) => { try { JSON.parse(l); return false; } catch (e) { return true; } });
	h.is(bad.join('\n'), '', 'every line A sent is one JSON text');
	h.is(peer.errors.join('; '), '', 'no stream error on the JS side');
	h.ok(await peer.finish(), 'A closes its side when the JS client ends');
});
EOJS
ok(StreamTest::find_log($na, qr/WARNING:\s+scuttlebutt: not sending the update of model "m" from source "EVIL"/, $off, 20),
	'a WARNING says the broken row is not sent');
good_peers_replicate('after the broken row');
is(qb(q{SELECT count(*) FROM scuttlebutt.keys('m') k WHERE k = 'evil'}), 0, 'B never got the broken row');

# ---- the good peers were never disturbed ----
my $row_b = StreamTest::peer($nb, "peer_id = $peer_b");
is_deeply([ $row_b->{state}, $row_b->{synced_at} ], [ 'live', $synced_b ],
	'B\'s connection stayed up the whole time (same synced_at)');
ok(!$g->{eof}, 'G was never disconnected');
is(StreamTest::worker_pid($na), $worker_pid, 'A\'s worker never restarted (same pid)');
unlike(slurp_file($na->logfile), qr/PANIC|TRAP|terminated by signal|exited with exit code/,
	'no crash or worker exit in A\'s log');

$g->close_fin;
$nr->stop;
$nb->stop;
$na->stop;
done_testing();
