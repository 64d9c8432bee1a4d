# A server restored with pg_dump / pg_restore rejoins its mesh as a new node.
#
# O dials P1 over libpq, P2 dials O's stream listener, P1 dials P2 over
# libpq; models kv (model), ev (events), val (value) on all three.
#
#  1. All three write; converged.  pg_dump -Fc of O's database.
#  2. O goes on writing right after the dump, within the reservation its
#     clock row held when dumped (scuttlebutt.timestamp_reserve, 10 s
#     here: the dumped row is ahead of every update O had made), as do P1
#     and P2; converged: P1 and P2 hold all of O's writes.  Then O is lost
#     (killed, never started again).
#  3. N, a fresh cluster, gets the dump with pg_restore: the models, the
#     updates, the clocks and the peers (N dials P1 as O did); it is a new
#     node (node_id() differs from O's, since scuttlebutt.node is not
#     dumped), and O's source is now one source among others.  P2 dials N
#     instead of O.
#  4. N, P1 and P2 converge (every model's history and clock): N gets
#     back every update O made after the dump, those within O's
#     reservation included; N's clock of O's source equals its peers'.
#     N's own writes reach P1 and P2.  No PANIC, no worker crash.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $ROUNDS = 30;
my $lit = \&LibpqTest::lit;

# a reservation of 10 s: O's writes in the 10 s after the dump are below
# the reservation its clock row held when dumped
my $o = LibpqTest::new_node('o', listen => 1, conf => "scuttlebutt.timestamp_reserve = '10s'\n");
my $p1 = LibpqTest::new_node('p1');
my $p2 = LibpqTest::new_node('p2');
sub q1 { LibpqTest::q1(@_) }

for my $n ($o, $p1, $p2)
{
	q1($n, q{SELECT scuttlebutt.create_model('kv'), scuttlebutt.create_model('ev', 'events'),
		scuttlebutt.create_model('val', 'value')});
}
my $oid = q1($o, 'SELECT scuttlebutt.node_id()');

for my $m (qw(kv ev val))
{
	LibpqTest::add_peer($o, $m, LibpqTest::conninfo($p1, tcp => 1));
	q1($p2, "SELECT scuttlebutt.add_stream_peer('$m', '127.0.0.1', " . LibpqTest::stream_port($o) . ')');
	LibpqTest::add_peer($p1, $m, LibpqTest::conninfo($p2, tcp => 1));
}

sub write_round
{
	my ($n, $tag, $i) = @_;
	my $v = "{\"$tag\": $i}";
	q1($n,
		"SELECT scuttlebutt.set('kv', '$tag$i', '$v');"
		  . "SELECT scuttlebutt.emit('ev', '$tag', '$v');"
		  . "SELECT scuttlebutt.set_value('val', '$v');"
		  . "BEGIN; SELECT scuttlebutt.set('kv', '${tag}m$i', '$v');"
		  . " SELECT scuttlebutt.emit('ev', '${tag}m', '$v'); COMMIT;");
}

sub converged
{
	my ($what, $nodes) = @_;
	my $ok = 1;
	$ok &&= LibpqTest::wait_converged($_, $nodes, 60) for qw(kv ev val);
	ok($ok, "$what: kv, ev and val converged on " . join(', ', map { $_->name } @$nodes)
		  . ' (history and clock)');
}

# ---- 1. before the dump ----
write_round($_, $_->name . '_pre', 0) for ($o, $p1, $p2);
converged('before the dump', [ $o, $p1, $p2 ]);
write_round($o, 'o_last', 0);
my $dump = PostgreSQL::Test::Utils::tempdir() . '/o.dump';
$o->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $o->connstr('postgres') ], 'pg_dump -Fc of O');

# ---- 2. O writes on, then is lost ----
for my $i (1 .. $ROUNDS)
{
	write_round($o, 'o', $i);
	write_round($p1, 'p1_', $i) if $i % 3 == 0;
	write_round($p2, 'p2_', $i) if $i % 3 == 0;
}
converged('after the writes', [ $o, $p1, $p2 ]);
my $o_clock = q1($p1, "SELECT scuttlebutt.clock('kv') ->> " . $lit->($oid));
$o->stop('immediate');

# ---- 3. N from the dump ----
my $n = LibpqTest::new_node('n', listen => 1, extension => 0);
# in one transaction: N's worker must not see the peers before the updates
$n->command_ok([ 'pg_restore', '--single-transaction', '-d', $n->connstr('postgres'), $dump ], 'pg_restore into N');
my $nid = q1($n, 'SELECT scuttlebutt.node_id()');
isnt($nid, $oid, 'N is a new node');
is(q1($n, 'SELECT count(*) FROM scuttlebutt.peers'), '3', 'the peers came with the dump');
for my $m (qw(kv ev val))
{
	q1($p2, "SELECT scuttlebutt.remove_peer(id) FROM scuttlebutt.peers WHERE model = '$m' AND transport = 'stream'");
	q1($p2, "SELECT scuttlebutt.add_stream_peer('$m', '127.0.0.1', " . LibpqTest::stream_port($n) . ')');
}

# ---- 4. converged ----
converged('after the restore', [ $n, $p1, $p2 ]);
is(q1($n, q{SELECT count(*) FROM scuttlebutt.entries('kv') WHERE key ~ '^o(m)?[0-9]+$'}), 2 * $ROUNDS,
	'every key O wrote after the dump is on N');
is(q1($n, q{SELECT count(*) FROM scuttlebutt.events('ev') WHERE source = } . $lit->($oid)),
	q1($p1, q{SELECT count(*) FROM scuttlebutt.events('ev') WHERE source = } . $lit->($oid)),
	'N holds as many of O\'s events as P1');
is(q1($n, "SELECT scuttlebutt.clock('kv') ->> " . $lit->($oid)), $o_clock,
	'N\'s clock of O\'s source is its peers\'');

write_round($n, 'n', $_) for 1 .. 5;
converged('after N wrote', [ $n, $p1, $p2 ]);
for my $p ($p1, $p2)
{
	is(q1($p, q{SELECT count(*) FROM scuttlebutt.entries('kv') WHERE source = } . $lit->($nid)), '10',
		$p->name . ' holds N\'s 10 keys');
}

for my $node ($n, $p1, $p2)
{
	unlike(slurp_file($node->logfile), qr/PANIC|terminated by signal/, $node->name . ': no PANIC, no crashed process');
}
done_testing();
