# One bad update must not wedge a peer, and the header must fit what a peer
# on the default settings accepts.
#
# A key too long for the table's index (3,000 bytes) or a source too long
# (2,500 bytes) sent to the listener is dropped and counted alone: the
# connection stays up and the rest of the batch, and the peer's later
# updates, are applied.
#
# A model with many sources (90,000 short ones and 450 of the longest
# allowed) syncs with a server on the default settings; a 90,000-source
# header is parsed in linear time (the time is reported).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamTest;
use Test::More;
use Time::HiRes qw(time);

# A's lines may be long enough for the 90,000-source header whatever the
# code (the timing below runs before and after the change alike)
my $na = StreamTest::new_node('a', conf => "scuttlebutt.max_line_bytes = '16MB'\n");
my $pa = StreamTest::port($na);
# (queries that fail return '': the assertions, not the script, fail)
sub qa { my (undef, $out) = $na->psql('postgres', $_[0]); return $out }
qa(q{SELECT scuttlebutt.create_model('m')});
qa(q{SELECT scuttlebutt.create_model('ev', 'events')});
my $worker_pid = StreamTest::worker_pid($na);

sub now_ms { return int(time * 1000) }

# ---- item: a 3,000-byte key, a 2,500-byte source ----
my $g = StreamTest::Raw->new($pa);
$g->handshake('m', id => 'G');
my $addr = $g->addr;
my $t = now_ms();
# random letters: a repeated one would compress to a short index row
srand(134);
sub random_text { return join('', map { ('a' .. 'z', 'A' .. 'Z', 0 .. 9)[ int(rand(62)) ] } 1 .. $_[0]) }
my $long_key = random_text(3000);
my $long_source = random_text(2500);
$g->send_line(qq([["before",1],$t,"G"]));
$g->send_line(qq([["$long_key",1],) . ($t + 1) . qq(,"G"]));
$g->send_line(qq([["long_source",1],$t,"$long_source"]));
$g->send_line(qq([["same_batch",1],) . ($t + 2) . qq(,"G"]));
ok(StreamTest::poll($na,
		q{SELECT scuttlebutt.get('m', 'before') IS NOT NULL AND scuttlebutt.get('m', 'same_batch') IS NOT NULL}, 30),
	'the rest of the batch is applied');
is(qa("SELECT state || ',' || rejected FROM scuttlebutt.peer_status WHERE remote_addr = '$addr'"), 'live,2',
	'the two over-limit updates are counted in peer_status.rejected, the connection stays live');
$g->send_line(qq([["later",1],) . ($t + 3) . qq(,"G"]));
ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('m', 'later') IS NOT NULL}, 30),
	'the peer\'s later updates arrive');
is(qa(q{SELECT count(*) FROM scuttlebutt.updates WHERE length(key) > 1024 OR length(source) > 256}), '0',
	'nothing over the limits is stored');
is(qa("SELECT count(*) FROM scuttlebutt.connection_errors WHERE last_peer = '$addr'"), '0',
	'the connection was never closed');
# an event name over the limit, on an events stream
my $e = StreamTest::Raw->new($pa);
$e->handshake('ev', id => 'E');
$e->send_line(qq([["$long_key",1],$t,"E"]));
$e->send_line(qq([["ok",1],) . ($t + 1) . qq(,"E"]));
ok(StreamTest::poll($na, q{SELECT count(*) = 1 FROM scuttlebutt.events('ev')}, 30),
	'events: the update after an over-long event name is applied');
$e->close_fin;
$g->close_fin;

# ---- item: a 90,000-source header, parsed in linear time ----
my $n = 90_000;
# in reverse order: the worst case for sorted insertion
my $clock = '{' . join(',', map { sprintf('"H%06d":%d', $_, $t) } reverse 1 .. $n) . '}';
# the worker's CPU time (user + system, in clock ticks of 10 ms)
sub worker_cpu
{
	my @f = split ' ', (slurp_file("/proc/$worker_pid/stat") =~ s/^.*\) //sr);
	return ($f[11] + $f[12]) / 100;
}
my $h = StreamTest::Raw->new($pa);
my $cpu = worker_cpu();
my $start = time;
$h->send_line(qq({"id":"H","clock":$clock,"meta":"m"}));
my $header = $h->read_line(60);
my $elapsed = time - $start;
$cpu = worker_cpu() - $cpu;
like($header // '', qr/^\{"id":/, sprintf('a header of %d sources (%.1f MB) is answered', $n, length($clock) / 1e6));
diag(sprintf('%d-source header: answered in %.3f s, %.2f s of the worker\'s CPU', $n, $elapsed, $cpu));
ok($elapsed < 10, 'within a few seconds');
$h->close_fin;

# ---- item: a model with many sources syncs with a server on the defaults ----
my $many = 'many';
qa(qq{SELECT scuttlebutt.create_model('$many')});
qa(qq{SELECT scuttlebutt.import('$many', string_agg(format('[["k%s",1],%s,"S%s"]', i, $t - 100000 + i, i), E'\\n'))
	  FROM generate_series(1, $n) i});
qa(qq{SELECT scuttlebutt.import('$many', string_agg(format('[["l%s",1],%s,"%s"]', i, $t - 1000 + i,
	  repeat('L', 250) || lpad(i::text, 6, '0')), E'\\n')) FROM generate_series(1, 450) i});
is(qa(qq{SELECT count(*) FROM jsonb_object_keys(scuttlebutt.clock('$many'))}), $n + 450,
	'A\'s model has 90,450 sources');
my $header_bytes = qa(qq{SELECT octet_length(scuttlebutt._export_header(scuttlebutt._model_id('$many')))});
diag("its full header: $header_bytes bytes");
my $nb = StreamTest::new_node('b', listen => 0);
sub qb { my (undef, $out) = $nb->psql('postgres', $_[0]); return $out }
qb(qq{SELECT scuttlebutt.create_model('$many')});
qb(qq{SELECT scuttlebutt.add_stream_peer('$many', '127.0.0.1', $pa)});
is(qb(qq{SELECT scuttlebutt.wait_for_sync('$many', '180s')}), 't', 'B, on the default settings, syncs');
is(qb(qq{SELECT count(*) FROM scuttlebutt.updates WHERE model_id = scuttlebutt._model_id('$many')}),
	$n + 450, 'B holds every update');
ok(StreamTest::wait_converged($many, [ $na, $nb ], 120), 'A and B converged');
is(qb(q{SELECT count(*) FROM scuttlebutt.connection_errors WHERE reason = 'line too long'}), '0',
	'no line was too long for B');

is(StreamTest::worker_pid($na), $worker_pid, 'A\'s worker never restarted');
$nb->stop;
$na->stop;
done_testing();
