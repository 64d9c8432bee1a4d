# A libpq peer's pushes into a signed model: the remote verifies them.  B
# dials A over libpq (B pulls from A and pushes to A); A does not trust
# B's key at first, so A's _push() refuses B's write: nothing is stored on
# A and A's clock does not move for B, and B counts the refusal in its own
# peer_status.rejected with the reason in last_error.  Once A trusts B's
# key, B's next connection pushes the write again and it is taken.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PeerTransport;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SignedTest;
use StreamTest;
use Test::More;

my ($t) = grep { $_->name eq 'libpq' } PeerTransport->all;
my $na = $t->new_node('a', dialed => 1);
my $nb = $t->new_node('b');
my $dir = PostgreSQL::Test::Utils::tempdir();
my ($ka, $kb) = map { SignedTest::make_key($dir, $_, 'rsa') } qw(a b);
SignedTest::use_key($na, $ka);
SignedTest::use_key($nb, $kb);
sub q1 { return LibpqTest::q1(@_) }

q1($_, q{SELECT scuttlebutt.create_model('s', 'model', true)}) for ($na, $nb);
SignedTest::trust($nb, $ka, 'B');
q1($na, q{SELECT scuttlebutt.set('s', 'a1', '1')});
q1($nb, q{SELECT scuttlebutt.set('s', 'b1', '2')});

my $id = $t->add_peer($nb, 's', $na);
ok(StreamTest::poll($nb, q{SELECT scuttlebutt.get('s', 'a1') = '1'}), "B pulls A's write (B trusts A)");
ok(StreamTest::poll($nb, "SELECT rejected >= 1 FROM scuttlebutt.peer_status WHERE peer_id = $id"),
	"B counts the write A's _push() refused in its peer_status.rejected");
like(q1($nb, "SELECT last_error FROM scuttlebutt.peer_status WHERE peer_id = $id"),
	qr/the remote refused pushed updates: .*no trusted key for source "\Q$kb->{id}\E"/,
	'and last_error says why');
is(q1($na, q{SELECT scuttlebutt.get('s', 'b1') IS NULL}), 't', 'A does not hold the refused write');
is(q1($na, qq{SELECT scuttlebutt.clock('s') ? '$kb->{id}'}), 'f', "A's clock did not move for B");

# trusted: the next connection pushes it again
SignedTest::trust($na, $kb, 'A');
q1($nb, "SELECT scuttlebutt.remove_peer($id)");
$id = $t->add_peer($nb, 's', $na);
ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('s', 'b1') = '2'}), "once A trusts B's key, B's write arrives");
is(q1($na, q{SELECT doc FROM scuttlebutt.history('s') h(doc) WHERE doc->0->>0 = 'b1'}),
	q1($nb, q{SELECT doc FROM scuttlebutt.history('s') h(doc) WHERE doc->0->>0 = 'b1'}),
	'byte for byte, signature included');
is(q1($nb, "SELECT rejected FROM scuttlebutt.peer_status WHERE peer_id = $id"), '0',
	'the new connection was refused nothing');

done_testing();
