# Many models over one connection: mux-demux on the stream port.
#
#  - the unmodified npm mux-demux and scuttlebutt packages, as
#    level-scuttlebutt's clients use them (test/interop/stream_mux.js),
#    over one TCP connection and over one WebSocket: two models sync both
#    ways and live, a third the role holds nothing on is refused on its own
#    sub-stream ("permission denied") while the others go on;
#  - hostile frames with a raw client: data for an unknown sub-stream gets
#    an "error" frame for that id alone; a sub-stream past
#    scuttlebutt.max_substreams is refused alone; data that is not a
#    string, or a header naming another model, ends that sub-stream alone;
#    "pause" holds a sub-stream's output until "resume";
#    a frame that is not JSON, not [id, event, ...], a second "new" for an
#    open id, or a frame past its limit closes that connection with a
#    logged reason; the worker stays up (same pid), and a plain stream
#    connection opened before goes on live throughout;
#  - rules per sub-stream: on one connection, a sub-stream whose meta
#    carries a token is let in by a token rule for its model (as the
#    token's role), one with a bad token or none is refused
#    ("authentication failed"), one for a model a rule rejects is refused
#    ("rejected by rule"), each told the reason and the model only, while
#    a sub-stream of a trusted model goes on as its own role;
#  - bounded buffers: sub-streams that never read, of a model of values
#    of 600 kB (multi-byte characters), grow the worker by less than 64 MB
#    in all, and a client that reads gets every value whole, each frame
#    valid UTF-8 (a long line is cut between characters).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use JSON::PP;
use JwtTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use StreamTest;
use Test::More;
use Time::HiRes qw(time usleep);

my $secret = 'a-secret-of-at-least-thirty-two-bytes';
my $node = StreamTest::new_node('mux',
	conf => "scuttlebutt.handshake_timeout = 5s\n"
	  . "scuttlebutt.max_substreams = 5\n"
	  . "scuttlebutt.max_line_bytes = 16kB\n"
	  . "scuttlebutt.max_header_bytes = 32kB\n"
	  . "scuttlebutt.jwt_secret = '$secret'\n");
my $port = StreamTest::port($node);
sub q1 { StreamTest::q1($node, @_) }
my $pid = StreamTest::worker_pid($node);
my $json = JSON::PP->new->canonical;

q1(q{CREATE ROLE alice});
for my $m (qw(mx1 mx2 wx1 wx2 mx_denied plain bk_users bk_feed))
{
	q1(qq{SELECT scuttlebutt.create_model('$m')});
	next if $m eq 'mx_denied';
	q1(qq{SELECT scuttlebutt.grant('$m', 'alice', '$_')}) for qw(read write);
}
q1(q{INSERT INTO scuttlebutt.listen_rules VALUES (1, NULL, NULL, 'trust', 'alice')});

# a plain stream connection, live throughout the hostile part
my $plain = StreamTest::Raw->new($port);
ok(defined(($plain->handshake('plain', id => 'PLAIN'))[0]), 'plain: a line-protocol client beside them syncs');

# ---- the npm packages, over TCP and over a WebSocket ----

ScuttlebuttTest::run_interop($node, 'stream_mux.js', "tcp://127.0.0.1:$port",
	$json->encode({ models => [qw(mx1 mx2)], denied => 'mx_denied', bucket => [qw(bk_users bk_feed)] }));
ScuttlebuttTest::run_interop($node, 'stream_mux.js', "ws://127.0.0.1:$port/",
	$json->encode({ models => [qw(wx1 wx2)], denied => 'mx_denied' }));
ok(StreamTest::poll($node,
		q{SELECT count > 0 FROM scuttlebutt.connection_errors WHERE reason = 'permission denied'}),
	'the refused sub-streams are counted in connection_errors');

# ---- hostile frames, raw ----

sub frame
{
	my ($id, $event, @arg) = @_;
	return $json->encode([ $id, $event, @arg ]);
}

# the next frame for $id (others skipped), decoded; undef on timeout
sub next_frame
{
	my ($raw, $id, $timeout) = @_;
	while (defined(my $line = $raw->read_line($timeout // 30)))
	{
		my $f = eval { $json->decode($line) };
		return $f if ref $f eq 'ARRAY' && $f->[0] eq $id;
	}
	return undef;
}

# the next frame for $id that is not "data"
sub next_event
{
	my ($raw, $id) = @_;
	while (my $f = next_frame($raw, $id))
	{
		return $f if $f->[1] ne 'data';
	}
	return undef;
}

# opens sub-stream $id for $model (a name, or a meta object) and syncs
# it: our header and "SYNC" (no history, and the worker's "SYNC" waits
# for ours: durable sync), then its header, history and "SYNC"
sub open_sub
{
	my ($raw, $id, $model) = @_;
	my $meta = ref $model ? '' : qq(,"meta":"$model");
	$raw->send_line(frame($id, 'new', { meta => $model, opts => { writable => JSON::PP::true, readable => JSON::PP::true } }));
	$raw->send_line(frame($id, 'data', qq({"id":"RAW-$id","clock":{}$meta}\n)));
	$raw->send_line(frame($id, 'data', qq("SYNC"\n)));
	my $text = '';
	while ($text !~ /^"SYNC"$/m)
	{
		my $f = next_frame($raw, $id, 30) or return 0;
		return 0 unless $f->[1] eq 'data';
		$text .= $f->[2];
	}
	return $text =~ /^\{"id":"[^"]+","clock":/;
}

my $mux = StreamTest::Raw->new($port);
ok(open_sub($mux, 's1', 'mx1'), 'raw: a sub-stream opened with a "new" frame gets the header and "SYNC" as data');

# data for an id never opened: an "error" frame for it, the rest goes on
$mux->send_line(frame('nosuch', 'data', qq("SYNC"\n)));
my $f = next_frame($mux, 'nosuch');
is($f && $f->[1], 'error', 'unknown id: answered with an "error" frame for that id');
like($f && $f->[2], qr/no sub-stream "nosuch" is open/, 'unknown id: the error says so');

# past scuttlebutt.max_substreams (5): refused alone
ok(open_sub($mux, 's2', 'mx2'), 'a second sub-stream syncs');
ok(open_sub($mux, 's3', 'mx1'), 'a third sub-stream (the same model again) syncs');
ok(open_sub($mux, "s3$_", 'mx2'), "sub-stream " . (3 + $_) . " syncs") for 1 .. 2;
$mux->send_line(frame('s4', 'new', { meta => 'mx2' }));
$f = next_frame($mux, 's4');
is($f && $f->[1], 'error', 'a sixth sub-stream: "error"');
like($f && $f->[2], qr/too many sub-streams: .*5 sub-streams open already \(scuttlebutt\.max_substreams\)/,
	'a sixth sub-stream: the error names the limit');
is((next_frame($mux, 's4') // [])->[1], 'end', 'a sixth sub-stream: then "end"');

# the others go on: a live write reaches s1
is((next_event($mux, $_) // [])->[1], 'end', "sub-stream $_ ended by the client is ended back")
  for grep { $mux->send_line(frame($_, 'end')) } qw(s31 s32);
q1(q{SELECT scuttlebutt.set('mx1', 'after_refusal', '1')});
$f = next_frame($mux, 's1');
like($f && $f->[2], qr/"after_refusal"/, 'after the refusal, the first sub-stream gets a live write');
# "pause" holds what is sent on that sub-stream, "resume" lets it go
$mux->send_line(frame('s1', 'pause'));
$mux->send_line(frame('nosuch2', 'data', qq("SYNC"\n)));
next_event($mux, 'nosuch2');    # the pause was read before what follows
q1(q{SELECT scuttlebutt.set('mx1', 'while_paused', '1')});
is(next_frame($mux, 's1', 2), undef, 'a paused sub-stream is sent nothing');
$mux->send_line(frame('s1', 'resume'));
$f = next_frame($mux, 's1');
like($f && $f->[2], qr/"while_paused"/, 'once resumed, it gets what was held');
ok(StreamTest::poll($node, q{SELECT count(*) = 3 FROM scuttlebutt.peer_status WHERE remote_addr = '}
		  . $mux->addr . q{' AND state = 'live' AND model IS NOT NULL}),
	'peer_status: three live sub-streams on the raw connection');

# data that is not a string ends that sub-stream alone
$mux->send_line(frame('s3', 'data', { not => 'text' }));
$f = next_event($mux, 's3');
is($f && $f->[1], 'error', 'data not a string: "error" for that sub-stream');
like($f && $f->[2], qr/mux-demux protocol error: Sub-stream data must be a string/, 'data not a string: the error says why');

# a header naming another model than the sub-stream's meta
$mux->send_line(frame('s5', 'new', { meta => { model => 'mx2' } }));
$mux->send_line(frame('s5', 'data', qq({"id":"RAW-s5","clock":{},"meta":"mx1"}\n)));
$f = next_frame($mux, 's5');
is($f && $f->[1], 'error', 'a header naming another model: "error" for that sub-stream');
like($f && $f->[2], qr/invalid header: The header names model "mx1", but the sub-stream's meta named "mx2"/,
	'a header naming another model: the error says so');

# a sub-stream the client ends: "end" back, and its session is gone
$mux->send_line(frame('s2', 'end'));
is((next_event($mux, 's2') // [])->[1], 'end', 'a sub-stream the client ends is ended back');
ok(StreamTest::poll($node, q{SELECT count(*) = 1 FROM scuttlebutt.peer_status WHERE remote_addr = '}
		  . $mux->addr . q{' AND model IS NOT NULL}),
	'peer_status: one sub-stream left on the raw connection');
is(q1(q{SELECT state || '/' || coalesce(model, '(none)') FROM scuttlebutt.peer_status WHERE remote_addr = '}
		  . $mux->addr . q{' AND model IS NULL}),
	'live/(none)', 'peer_status: the connection itself is live, with no model');

# a second "new" for an open id: the connection is broken
{
	my $offset = -s $node->logfile;
	$mux->send_line(frame('s1', 'new', { meta => 'mx1' }));
	ok($mux->wait_closed(30), 'a second "new" for an open id closes the connection');
	ok(StreamTest::find_log($node,
			qr/closing connection from \Q${\ $mux->addr }\E: mux-demux protocol error\n.*DETAIL:  A sub-stream "s1" is open already/,
			$offset),
		'a second "new" for an open id: logged');
	ok(StreamTest::poll($node, q{SELECT count(*) = 0 FROM scuttlebutt.peer_status WHERE remote_addr = '}
			  . $mux->addr . q{'}),
		'its sub-streams end with the connection');
}

sub closes_connection
{
	my ($what, $bytes, $reason, $detail_re) = @_;
	my $offset = -s $node->logfile;
	my $raw = StreamTest::Raw->new($port);
	$raw->send_line(frame('a', 'new', { meta => 'mx1' }));
	$raw->write_raw($bytes);
	ok($raw->wait_closed(30), "$what: the connection is closed");
	ok(StreamTest::find_log($node,
			qr/closing connection from \Q${\ $raw->addr }\E: \Q$reason\E\n.*DETAIL:  $detail_re/, $offset),
		"$what: logged as \"$reason\"");
}

closes_connection('bad JSON', "[\"a\",\"data\",\"x\n", 'invalid JSON', qr/invalid JSON/);
closes_connection('a frame that is no array of strings', "[\"a\"]\n", 'mux-demux protocol error',
	qr/a frame must be a JSON array \[id, event, \.\.\.\] of two strings at least/);
closes_connection('a frame past its limit', '["a","data","' . ('x' x 100_000), 'line too long',
	qr/More than \d+ bytes without a newline/);

# ---- rules per sub-stream ----

{
	q1(q{CREATE ROLE bob});
	q1(qq{SELECT scuttlebutt.create_model('$_')}) for qw(mx_tok mx_rej);
	q1(qq{SELECT scuttlebutt.grant('mx_tok', 'bob', '$_')}) for qw(read write);
	q1(q{BEGIN; DELETE FROM scuttlebutt.listen_rules WHERE position = 1;
		INSERT INTO scuttlebutt.listen_rules VALUES (1, NULL, 'mx_rej', 'reject', NULL),
			(2, NULL, 'mx_tok', 'token', NULL), (3, NULL, NULL, 'trust', 'alice'); COMMIT});
	my %claims = (role => 'bob', exp => time + 600);
	my $good = JwtTest::token(alg => 'HS256', secret => $secret, claims => \%claims);
	my $forged = JwtTest::token(alg => 'HS256', secret => 'another-secret-of-thirty-two-bytes!!', claims => \%claims);
	my $r = StreamTest::Raw->new($port);
	ok(open_sub($r, 't1', { model => 'mx_tok', token => $good }),
		'rules: a sub-stream whose meta carries a token syncs under the token rule of its model');
	ok(open_sub($r, 't2', 'mx1'), 'rules: a sub-stream of a trusted model on the same connection syncs');
	my @refused = (
		[ 't3', { model => 'mx_tok', token => $forged }, 'authentication failed on model "mx_tok"', 'a forged token' ],
		[ 't4', 'mx_tok', 'authentication failed on model "mx_tok"', 'no token' ],
		[ 't5', 'mx_rej', 'rejected by rule on model "mx_rej"', 'a model a rule rejects' ]);
	for my $case (@refused)
	{
		my ($id, $meta, $text, $what) = @$case;
		$r->send_line(frame($id, 'new', { meta => $meta }));
		$r->send_line(frame($id, 'data', qq({"id":"RAW-$id","clock":{}}\n)));
		my $f = next_event($r, $id);
		is($f && "$f->[1]: $f->[2]", "error: $text", "rules: $what: refused, told the reason and the model only");
	}
	ok(StreamTest::poll($node, q{SELECT string_agg(model || ' ' || role || '/' || method, ', ' ORDER BY model)
		  = 'mx1 alice/trust, mx_tok bob/token' FROM scuttlebutt.peer_status WHERE remote_addr = '}
		  . $r->addr . q{' AND model IS NOT NULL}),
		'rules: peer_status shows each sub-stream with the role and method its model\'s rule gave');
	q1(q{SELECT scuttlebutt.set('mx_tok', 'for_bob', '1')});
	my $f = next_frame($r, 't1');
	like($f && $f->[2], qr/"for_bob"/, 'rules: the token\'s sub-stream gets live writes after the refusals');
	$r->close_fin;
}

# ---- bounded buffers ----

my $nbig = 12;
q1(q{SELECT scuttlebutt.create_model('big')});
q1(q{SELECT scuttlebutt.grant('big', 'alice', 'read')});
q1(join('', map { "SELECT scuttlebutt.set('big', 'k$_', to_jsonb(repeat('é', 300000)));\n" } 1 .. $nbig));

sub rss_anon_kb { return StreamTest::rss_anon_kb($pid) }

my $before = rss_anon_kb();
ok(defined $before, "the worker's memory can be read ($before kB)");
my @hogs;
for my $c (1 .. 2)
{
	my $hog = StreamTest::Raw->new($port);
	for my $i (1 .. 4)
	{
		$hog->send_line(frame("h$i", 'new', { meta => 'big' }));
		$hog->send_line(frame("h$i", 'data', qq({"id":"HOG$c-$i","clock":{}}\n)));
	}
	push @hogs, $hog;
}
ok(StreamTest::poll($node,
		q{SELECT count(*) = 8 FROM scuttlebutt.peer_status WHERE remote_id LIKE 'HOG%' AND sent > 0}),
	'8 sub-streams that never read were each sent something');
my $peak = 0;
for (1 .. 60)
{
	my $kb = rss_anon_kb() // 0;
	$peak = $kb if $kb > $peak;
	usleep(50_000);
}
note("the worker: $before kB before, $peak kB with 8 stalled sub-streams (+" . ($peak - $before) . " kB)");
cmp_ok($peak - $before, '<', 64 * 1024, '8 stalled sub-streams grow the worker by less than 64 MB');

{
	my $json8 = JSON::PP->new->utf8;
	my $good = StreamTest::Raw->new($port);
	$good->send_line(frame('g', 'new', { meta => 'big' }));
	$good->send_line(frame('g', 'data', qq({"id":"GOOD","clock":{}}\n"SYNC"\n)));
	my ($text, $frames, $bad) = ('', 0, '');
	my $deadline = time + 120;
	while ($text !~ /^"SYNC"$/m && time < $deadline)
	{
		my $line = $good->read_line(30) // last;
		my $f = eval { $json8->decode($line) };
		if (!$f)
		{
			$bad ||= $@;
			next;
		}
		next unless $f->[0] eq 'g' && $f->[1] eq 'data';
		$frames++;
		$text .= $f->[2];
	}
	is($bad, '', 'every frame is valid UTF-8 JSON');
	my @values = grep { /^\[\["k\d+"/ } split /\n/, $text;
	is(scalar(@values), $nbig, "a client that reads gets all $nbig values");
	my $whole = "\x{e9}" x 300000;
	is(scalar(grep { my $u = eval { JSON::PP->new->decode($_) }; $u && $u->[0][1] eq $whole } @values),
		$nbig, 'each of them whole');
	cmp_ok($frames, '>', 2 * $nbig, "in frames of at most 64 kB ($frames frames)");
	$good->close_fin;
}
$_->close_fin for @hogs;

is(StreamTest::worker_pid($node), $pid, 'the worker is the same process throughout');
q1(q{SELECT scuttlebutt.set('plain', 'still', '1')});
ok(defined $plain->read_until(qr/"still"/, 30), 'plain: the line-protocol client is still served live');

$plain->close_fin;
$node->stop;
done_testing();
