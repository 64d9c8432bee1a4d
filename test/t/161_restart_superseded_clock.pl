# After a restart, this node's own source in a model whose latest own
# updates were all superseded by other nodes' writes (found by the mesh
# test, test/t/160_fault_mesh.pl, seed 20261206: a server killed with
# kill -9 and restarted):
#
#  - in "val" (a value) none of A's updates is held any more: clock(),
#    the stream header and the libpq poll() header must still give A's
#    source a number (it was -Infinity, which peers refuse: "header clock
#    entry ... is not a number", "timestamp of source ... in sources is
#    not a number", so the model stopped replicating until A wrote it
#    again);
#  - in "kv" A's latest update (key y) was superseded but an older one
#    (key x) is held: after the restart A shows x's timestamp, behind what
#    B holds for A; once B's poll() header vouches for more, A's clock
#    must take it (it stayed behind, so the clocks of A and B never agreed
#    again until A wrote kv).
#
# Both must hold with no further write on A.  (Over a stream, or in a
# signed model, no header raises a clock: there A's clock stays where the
# restart left it until A writes again.)
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamTest;
use Test::More;

sub q1 { return LibpqTest::q1(@_) }

my $na = LibpqTest::new_node('a', listen => 1);
my $nb = LibpqTest::new_node('b');
my $ida = q1($na, 'SELECT scuttlebutt.node_id()');
for my $n ($na, $nb)
{
	q1($n, q{SELECT scuttlebutt.create_model('kv'); SELECT scuttlebutt.create_model('val', 'value')});
}
# "solo": A's alone, its latest own update superseded by a source's
# update applied here, for the session that read the clock before a
# header vouched for more (below)
q1($na, q{SELECT scuttlebutt.create_model('solo');
		  SELECT scuttlebutt.set('solo', 'x', '"a"'); SELECT scuttlebutt.set('solo', 'y', '"a"')});
my $solo_y = q1($na, "SELECT scuttlebutt.clock('solo') ->> '$ida'");
q1($na, qq{SELECT scuttlebutt.apply_update('solo', ('[["y","s"],' || (${solo_y}::float8 + 1) || ',"S"]')::json)});
LibpqTest::add_peer($na, $_, LibpqTest::conninfo($nb, tcp => 1)) for qw(kv val);

q1($na, q{SELECT scuttlebutt.set('kv', 'x', '"a"'); SELECT scuttlebutt.set('kv', 'y', '"a"');
		  SELECT scuttlebutt.set_value('val', '"a"')});
ok(LibpqTest::wait_converged($_, [ $na, $nb ]), "$_: A's writes reach B") for qw(kv val);
# B supersedes A's latest kv update and its only val update
q1($nb, q{SELECT scuttlebutt.set('kv', 'y', '"b"'); SELECT scuttlebutt.set_value('val', '"b"')});
ok(LibpqTest::wait_converged($_, [ $na, $nb ]), "$_: B's writes reach A") for qw(kv val);
my %before = map { ($_ => q1($nb, "SELECT scuttlebutt.clock('$_') ->> '$ida'")) } qw(kv val);

$na->restart;
my $sport = LibpqTest::stream_port($na);
$na->wait_for_log(qr/listening for stream peers on "127\.0\.0\.1" port $sport/);

for my $m (qw(kv val))
{
	is(q1($na, "SELECT jsonb_typeof(scuttlebutt.clock('$m') -> '$ida')"), 'number',
		"$m: after the restart A's clock gives its own source a number");
}
cmp_ok(q1($na, "SELECT scuttlebutt.clock('val') ->> '$ida'"), '>=', $before{val},
	'val: none of A\'s updates held: its reservation, not less than what B held for it');
my $raw = StreamTest::Raw->new($sport);
my ($header) = $raw->handshake('val', id => 'RAW');
like($header // '', qr/"\Q$ida\E":\d/, 'val: the stream header gives A\'s source a number');
$raw->close_fin;

is(q1($na, q{SELECT scuttlebutt.wait_for_sync('val', '30s') AND scuttlebutt.wait_for_sync('kv', '30s')}), 't',
	'A syncs both models with B again, with no write on A');
ok(LibpqTest::wait_converged($_, [ $na, $nb ], 30), "$_: A's and B's clocks agree after the restart") for qw(kv val);
cmp_ok(q1($na, "SELECT scuttlebutt.clock('kv') ->> '$ida'"), '>=', $before{kv},
	'kv: A\'s clock for its own source is not behind what B held for it');
my $ok = StreamTest::poll($na,
	q{SELECT count(*) = 0 FROM scuttlebutt.peer_status WHERE last_error LIKE '%not a number%'}, 5);
ok($ok, 'no peer refuses A\'s clock');

# an idle pair polls only as often as wait_for_commit() times out (5 s):
# over two seconds it exchanges next to nothing
my $r1 = LibpqTest::peer($na, q{model = 'kv'});
sleep 2;
my $r2 = LibpqTest::peer($na, q{model = 'kv'});
cmp_ok($r2->{bytes_in} - $r1->{bytes_in}, '<', 20_000, 'kv: an idle peer does not poll in a loop')
  or diag("bytes in over 2 s: " . ($r2->{bytes_in} - $r1->{bytes_in}));

# A session that read A's clock before a header vouched for more (an
# idle server: no transaction id completes in between, so its next
# snapshot is the same as the one it read with) sees what was vouched for
my $bg = $na->background_psql('postgres');
my $solo_x = $bg->query_safe("SELECT scuttlebutt.clock('solo') ->> '$ida'");
cmp_ok($solo_x, '<', $solo_y, 'solo: after the restart A shows x, its latest update held');
q1($na, qq{SELECT scuttlebutt._push('solo', '{"id":"P","clock":{"$ida":$solo_y}}')});
is(q1($na, "SELECT scuttlebutt.clock('solo') ->> '$ida'"), $solo_y,
	'solo: a new session shows what the pushed header vouched for');
is($bg->query_safe("SELECT scuttlebutt.clock('solo') ->> '$ida'"), $solo_y,
	'solo: so does the session that read the clock before');
$bg->quit;

done_testing();
