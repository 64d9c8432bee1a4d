# Bad input and faults on the stream listener, each its own case, by
# talking raw TCP to it.  A listens (max_line_bytes 4kB, handshake_timeout
# 500ms, max_connections 6); two good peers stay connected throughout:
# server B (dialing A) and a raw client G, both live on model "m".
#
# Connection faults (invalid JSON, an HTTP request, a line too long, a
# header without a clock, an unknown model, a silent peer, one connection
# too many, abrupt disconnects): the connection is closed, a WARNING names
# the peer's address and the reason, connection_errors counts it, and the
# good peers keep replicating both ways.
#
# Invalid updates that are valid JSON (wrong shape, "__proto__", a
# timestamp that is not a number or not a double, text the database cannot
# hold): dropped and counted in peer_status.rejected, with a WARNING
# (rate-limited), the connection stays up, nothing of them is stored.
#
# The worker never crashes (same pid at the end); and when it is
# terminated, the postmaster starts it again and replication resumes.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamTest;
use Test::More;
use Time::HiRes qw(time);

my $max_line = 4096;
my $na = StreamTest::new_node('a',
	conf => "scuttlebutt.max_line_bytes = '4kB'\n"
	  . "scuttlebutt.handshake_timeout = '500ms'\n"
	  . "scuttlebutt.max_connections = 6\n");
my $nb = StreamTest::new_node('b', listen => 0);
my $pa = StreamTest::port($na);
sub qa { StreamTest::q1($na, @_) }
sub qb { StreamTest::q1($nb, @_) }

is(qa('SHOW scuttlebutt.max_line_bytes'), '4kB', 'max_line_bytes is 4kB');
qa(q{SELECT scuttlebutt.create_model('m')});
qb(q{SELECT scuttlebutt.create_model('m')});
qa(q{SELECT scuttlebutt.set('m', 'a' || i, to_jsonb(i)) FROM generate_series(1, 5) i});
qb(q{SELECT scuttlebutt.set('m', 'b' || i, to_jsonb(i)) FROM generate_series(1, 5) i});

my $worker_pid = StreamTest::worker_pid($na);
like($worker_pid, qr/^\d+$/, 'A\'s replication worker runs');

# ---- the good peers ----
my $peer_b = qb("SELECT scuttlebutt.add_stream_peer('m', '127.0.0.1', $pa)");
is(qb(q{SELECT scuttlebutt.wait_for_sync('m', '60s')}), 't', 'B is synced with A');
my $synced_b = StreamTest::peer($nb, "peer_id = $peer_b")->{synced_at};
my $g = StreamTest::Raw->new($pa);
my ($g_header, @g_history) = $g->handshake('m', id => 'GOOD');
like($g_header, qr/^\{"id":"[^"]+","clock":\{/, 'G gets A\'s header');
ok(StreamTest::wait_converged('m', [ $na, $nb ]), 'A and B converged');
ok(StreamTest::poll($na, q{SELECT count(*) = 2 FROM scuttlebutt.peer_status WHERE state = 'live'}),
	'A holds two live connections (B and G)');

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
}

sub total_errors
{
	return qa(q{SELECT coalesce(sum(count), 0) FROM scuttlebutt.connection_errors});
}

# Waits until A no longer lists the connection from $addr
sub gone
{
	my ($addr) = @_;
	return StreamTest::poll($na,
		qq{SELECT NOT EXISTS (SELECT FROM scuttlebutt.peer_status WHERE remote_addr = '$addr')}, 30);
}

# When the last fault_case saw its connection closed
my $closed_at;

# A connection fault: $body opens a raw connection, misbehaves and returns
# it; the server must close it (unless $o{we_close}: we closed it), log a
# WARNING naming the address and $reason, and count it.
sub fault_case
{
	my ($name, $reason, $body, %o) = @_;
	my $off = -s $na->logfile;
	my $before = total_errors();
	my $raw = $body->();
	my $addr = $raw->addr;
	ok($raw->wait_closed(20), "$name: the server closes the connection") unless $o{we_close};
	$closed_at = time;
	ok(gone($addr), "$name: A no longer holds the connection");
	my $pos = StreamTest::find_log($na, qr/scuttlebutt: closing connection from \Q$addr\E/, $off, 20);
	like(StreamTest::log_since($na, $off),
		qr/WARNING:\s+scuttlebutt: closing connection from \Q$addr\E: $reason/,
		"$name: a WARNING names the peer address and the reason");
	my ($errors, $reasons) = split /\|/, qa(qq{SELECT (SELECT coalesce(sum(count), 0) FROM scuttlebutt.connection_errors),
		(SELECT string_agg(reason, E'\\n') FROM scuttlebutt.connection_errors WHERE last_peer = '$addr')}), 2;
	is($errors, $before + 1, "$name: connection_errors counts one more");
	like($reasons, qr/^$reason$/, "$name: connection_errors has the reason, with the address as last_peer");
	good_peers_replicate($name);
	return $raw;
}

# ---- connection faults ----
fault_case('invalid JSON as the first line', 'invalid JSON', sub {
	my $r = StreamTest::Raw->new($pa);
	$r->send_line('this is not json');
	return $r;
});

fault_case('invalid JSON on a live stream', 'invalid JSON', sub {
	my $r = StreamTest::Raw->new($pa);
	$r->handshake('m', id => 'BADJSON');
	$r->send_line('[["k",1],1795477184259,"BADJSON"');
	return $r;
});

# a GET is taken for a WebSocket upgrade (test 180): one that is not is
# answered 426 and closed
fault_case('an HTTP request that is no WebSocket upgrade', 'websocket handshake failed', sub {
	my $r = StreamTest::Raw->new($pa);
	$r->write_raw("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n");
	return $r;
});

# a line longer than max_line_bytes, never finished: closed as soon as the
# limit is passed (by one byte), the sender never sends the rest
my $long = fault_case('a line past max_line_bytes without a newline', 'line too long', sub {
	my $r = StreamTest::Raw->new($pa);
	$r->handshake('m', id => 'LONG');
	# one byte past the limit, counting the line's start
	my $start = '[["long","';
	$r->write_raw($start . ('x' x ($max_line + 1 - length $start)));
	return $r;
});
ok(!$long->write_raw('x' x 200_000) || !$long->write_raw('x' x 200_000),
	'the rest of the long line cannot be sent any more');
is(qa(q{SELECT count(*) FROM scuttlebutt.keys('m') k WHERE k = 'long'}), 0, 'nothing of the long line is stored');

fault_case('a complete line longer than max_line_bytes', 'line too long', sub {
	my $r = StreamTest::Raw->new($pa);
	$r->handshake('m', id => 'LONG2');
	$r->send_line('[["long2","' . ('y' x ($max_line + 10)) . '"],1795477184259,"LONG2"]');
	return $r;
});
is(qa(q{SELECT count(*) FROM scuttlebutt.keys('m') k WHERE k = 'long2'}), 0, 'nothing of it is stored');

fault_case('a header without a clock', 'invalid header', sub {
	my $r = StreamTest::Raw->new($pa);
	$r->send_line('{"id":"NOCLOCK","meta":"m"}');
	return $r;
});

fault_case('a header naming a model that does not exist', 'unknown model', sub {
	my $r = StreamTest::Raw->new($pa);
	$r->send_line('{"id":"NOMODEL","clock":{},"meta":"no_such_model"}');
	return $r;
});

my $t0;
fault_case('a peer that never speaks', 'handshake timeout', sub {
	$t0 = time;
	return StreamTest::Raw->new($pa);
});
my $waited = $closed_at - $t0;
cmp_ok($waited, '>=', 0.4, 'the silent peer was given the handshake timeout (500ms)');
cmp_ok($waited, '<', 10, 'and was closed soon after it');

# max_connections 6: B and G, four more, then one too many
my @extra;
for my $i (1 .. 4)
{
	my $r = StreamTest::Raw->new($pa);
	my ($h) = $r->handshake('m', id => "EXTRA$i");
	push @extra, $r if defined $h;
}
is(scalar @extra, 4, 'four more connections are accepted (6 in all)');
ok(StreamTest::poll($na, q{SELECT count(*) = 6 FROM scuttlebutt.peer_status}), 'A holds 6 connections');
fault_case('one connection more than max_connections', 'too many connections', sub {
	return StreamTest::Raw->new($pa);
});
for my $r (@extra)
{
	$r->close_fin;
	gone($r->addr);
}
my $again = StreamTest::Raw->new($pa);
my ($again_h) = $again->handshake('m', id => 'AGAIN');
ok(defined $again_h, 'below max_connections again, a new connection is accepted');
$again->close_fin;
gone($again->addr);

# abrupt disconnects in the middle of a line: an orderly close (FIN) and a
# reset (RST)
fault_case('a disconnect in the middle of a line (FIN)', '.+', sub {
	my $r = StreamTest::Raw->new($pa);
	$r->handshake('m', id => 'HALF');
	$r->write_raw('[["half",1],17954771');
	$r->close_fin;
	return $r;
}, we_close => 1);
fault_case('a reset in the middle of a line (RST)', '.+', sub {
	my $r = StreamTest::Raw->new($pa);
	$r->handshake('m', id => 'RESET');
	$r->write_raw('[["reset",1],17954771');
	$r->close_rst;
	return $r;
}, we_close => 1);
is(qa(q{SELECT count(*) FROM scuttlebutt.keys('m') k WHERE k IN ('half', 'reset')}), 0,
	'nothing of the half lines is stored');

# ---- invalid updates: dropped, counted, the stream goes on ----
my $ts = 1795477184259;
my @bad = (
	[ 'change not [key, value]', 'RAW_SHAPE1', qq{[["k_shape1"],$ts,"RAW_SHAPE1"]}, 'k_shape1' ],
	[ 'change not an array', 'RAW_SHAPE2', qq{["k_shape2",$ts,"RAW_SHAPE2"]}, 'k_shape2' ],
	[ 'two elements', 'RAW_SHAPE3', qq{[["k_shape3",1],$ts]}, 'k_shape3' ],
	[ 'five elements', 'RAW_SHAPE4', qq{[["k_shape4",1],$ts,"RAW_SHAPE4","sig","more"]}, 'k_shape4' ],
	[ 'source not a string', 'RAW_SHAPE5', qq{[["k_shape5",1],$ts,5]}, 'k_shape5' ],
	[ 'key not a string', 'RAW_SHAPE6', qq{[[6,1],$ts,"RAW_SHAPE6"]}, '6' ],
	[ '"__proto__" source', '__proto__', qq{[["k_proto_src",1],$ts,"__proto__"]}, 'k_proto_src' ],
	[ '"__proto__" key', 'RAW_PROTO_KEY', qq{[["__proto__",1],$ts,"RAW_PROTO_KEY"]}, '__proto__' ],
	[ 'timestamp a string', 'RAW_TS1', qq{[["k_ts1",1],"$ts","RAW_TS1"]}, 'k_ts1' ],
	[ 'timestamp null', 'RAW_TS2', qq{[["k_ts2",1],null,"RAW_TS2"]}, 'k_ts2' ],
	[ 'timestamp beyond a double', 'RAW_TS3', qq{[["k_ts3",1],1e400,"RAW_TS3"]}, 'k_ts3' ],
	[ '\u0000 in a value', 'RAW_NUL1', qq{[["k_nul1","a\\u0000b"],$ts,"RAW_NUL1"]}, 'k_nul1' ],
	[ '\u0000 in a key', 'RAW_NUL2', qq{[["k_nul2\\u0000",1],$ts,"RAW_NUL2"]}, "k_nul2" ],
	[ 'a lone surrogate', 'RAW_SUR', qq{[["k_sur","\\ud800"],$ts,"RAW_SUR"]}, 'k_sur' ],
);
my $n = 0;
for my $case (@bad)
{
	my ($name, $source, $line, $key) = @$case;
	$n++;
	my $off = -s $na->logfile;
	my $before = total_errors();
	my $r = StreamTest::Raw->new($pa);
	$r->handshake('m', id => "BAD$n");
	my $addr = $r->addr;
	$r->send_line($line);
	# a valid update after it: once stored, the bad one has been handled
	$r->send_line(qq{[["ok$n",$n],$ts,"OK$n"]});
	ok(StreamTest::poll($na, qq{SELECT scuttlebutt.get('m', 'ok$n') = '$n'}, 30),
		"invalid update ($name): the connection stays up, the next update is applied");
	my $row = StreamTest::peer($na, "remote_addr = '$addr'");
	is_deeply([ $row->{state}, $row->{rejected} ], [ 'live', 1 ],
		"invalid update ($name): counted in peer_status.rejected, still live");
	like($row->{last_error} // '', qr/rejected update/, "invalid update ($name): last_error says why");
	ok(StreamTest::find_log($na, qr/WARNING:\s+scuttlebutt: dropped 1 invalid update\(s\) from \Q$addr\E: \S/,
			$off, 20),
		"invalid update ($name): a WARNING names the peer and the reason");
	my ($stored, $errors) = split /\|/, qa(qq{SELECT
		(SELECT count(*) FROM scuttlebutt.keys('m') k WHERE k = '$key')
		  + (SELECT count(*) FROM scuttlebutt.entries('m') WHERE source = '$source')
		  + (SELECT count(*) FROM jsonb_object_keys(scuttlebutt.clock('m')) s WHERE s = '$source'),
		(SELECT coalesce(sum(count), 0) FROM scuttlebutt.connection_errors)});
	is($stored, 0, "invalid update ($name): nothing of it is stored");
	is($errors, $before, "invalid update ($name): no connection was closed");
	$r->close_fin;
	gone($addr);
	good_peers_replicate("invalid update ($name)");
}

# many invalid updates at once: each counted, one WARNING (rate-limited)
{
	my $off = -s $na->logfile;
	my $r = StreamTest::Raw->new($pa);
	$r->handshake('m', id => 'MANY');
	my $addr = $r->addr;
	$r->send_line(qq{[["many$_"],$ts,"MANY"]}) for 1 .. 50;
	$r->send_line(qq{[["many_ok",1],$ts,"MANY_OK"]});
	ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('m', 'many_ok') = '1'}, 30),
		'50 invalid updates: the stream goes on');
	is(StreamTest::peer($na, "remote_addr = '$addr'")->{rejected}, 50, '50 invalid updates: all counted');
	my @warnings = StreamTest::log_since($na, $off) =~ /WARNING:\s+scuttlebutt: dropped \d+ invalid update\(s\) from \Q$addr\E/g;
	is(scalar @warnings, 1, '50 invalid updates: one WARNING, not fifty');
	$r->close_fin;
	gone($addr);
}

# ---- the good peers were never disturbed ----
my $row_b = StreamTest::peer($nb, "peer_id = $peer_b");
is_deeply([ $row_b->{state}, $row_b->{synced_at} ], [ 'live', $synced_b ],
	'B\'s connection stayed up the whole time (same synced_at)');
is(qb(q{SELECT string_agg(reason, ',') FROM scuttlebutt.connection_errors}), '', 'B closed no connection');
is(StreamTest::peer($na, "remote_id = 'GOOD'")->{state}, 'live', 'G\'s connection is live');
ok(!$g->{eof}, 'G was never disconnected');
ok(StreamTest::wait_converged('m', [ $na, $nb ]), 'A and B hold the same model');
is(StreamTest::worker_pid($na), $worker_pid, 'A\'s worker never crashed (same pid)');
unlike(slurp_file($na->logfile), qr/PANIC|TRAP|server process .* terminated by signal|terminated by signal/,
	'no crash in A\'s log');

# ---- the worker is terminated: the postmaster starts it again ----
my $off = -s $na->logfile;
is(qa("SELECT pg_terminate_backend($worker_pid)"), 't', 'pg_terminate_backend() of the worker');
ok($g->wait_closed(20), 'G\'s connection ends with the worker');
ok(StreamTest::poll($na, qq{SELECT EXISTS (SELECT FROM pg_stat_activity
		WHERE backend_type = 'scuttlebutt replication worker' AND pid <> $worker_pid)}, 30),
	'the postmaster starts a new worker');
ok(StreamTest::find_log($na, qr/listening for stream peers on "127\.0\.0\.1" port $pa/, $off, 20),
	'the new worker listens again');
ok(StreamTest::poll($nb, qq{SELECT state = 'live' FROM scuttlebutt.peer_status WHERE peer_id = $peer_b}, 30),
	'B reconnects');
qa(q{SELECT scuttlebutt.set('m', 'after_restart_a', '1')});
qb(q{SELECT scuttlebutt.set('m', 'after_restart_b', '1')});
ok(StreamTest::poll($nb, q{SELECT scuttlebutt.get('m', 'after_restart_a') = '1'}, 30),
	'after the worker restart, A\'s writes reach B');
ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('m', 'after_restart_b') = '1'}, 30),
	'after the worker restart, B\'s writes reach A');
ok(StreamTest::wait_converged('m', [ $na, $nb ]), 'A and B converge again');
my $g2 = StreamTest::Raw->new($pa);
my ($g2_h, @g2_hist) = $g2->handshake('m', id => 'GOOD2');
ok(defined $g2_h, 'a raw client can stream from the new worker');
is(scalar(@g2_hist), qa(q{SELECT count(*) FROM scuttlebutt.history('m')}), 'and gets the whole history');
$g2->close_fin;

$nb->stop;
$na->stop;
done_testing();
