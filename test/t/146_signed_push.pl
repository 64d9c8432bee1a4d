# A libpq peer's pushes into a signed model: the remote verifies them.  B
# dials A over libpq (B pulls from A and pushes to A); A does not trust
# B's key at first, so A's _push() refuses B's write: nothing is stored on
# A and A's clock does not move for B, and B counts the refusal in its own
# peer_status.rejected with the reason in last_error.  Once A trusts B's
# key, B's next connection pushes the write again and it is taken.
#
# A clock a peer vouches for never raises a signed model's clock: only
# verified updates do.  Otherwise a peer could advance a source's clock
# past updates it never sent (here: A's unsigned model holds a forgery of
# X, superseded by a genuine update of Y, so A's clock says X at T while
# A sends nothing of X) and every genuine update of X up to T would then
# be dropped as old.
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
use Time::HiRes qw(time);

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

# ---- a vouched clock does not raise a signed model's clock ----
my ($kx, $ky) = map { SignedTest::make_key($dir, $_, 'rsa') } qw(x y);
q1($na, q{SELECT scuttlebutt.create_model('g', 'model')});		# unsigned on A
q1($nb, q{SELECT scuttlebutt.create_model('g', 'model', true)});
SignedTest::trust($nb, $_, 'B') for ($kx, $ky);
my $t0 = int(time() * 1000) - 10_000;
q1($na, 'SELECT scuttlebutt.apply_update(' . LibpqTest::lit('g') . ', '
	  . LibpqTest::lit(qq{[["k",666],$t0,"$kx->{id}","AAAA"]}) . ')');
q1($na, 'SELECT scuttlebutt.apply_update(' . LibpqTest::lit('g') . ', '
	  . LibpqTest::lit(SignedTest::signed_update($ky, '["k",2]', $t0 + 1)) . ')');
is(q1($na, qq{SELECT (scuttlebutt.clock('g')->>'$kx->{id}')::float8 = $t0}), 't',
	"A's clock holds X at T, and A holds no update of X");
my $gid = $t->add_peer($nb, 'g', $na, send => 'false');
ok(StreamTest::poll($nb, q{SELECT scuttlebutt.get('g', 'k') = '2'}), "B pulls Y's genuine update");
ok((LibpqTest::wait_peer($nb, "peer_id = $gid", sub { $_[0]->{state} eq 'live' }))[0],
	'the pull is live (A\'s clock has been read)');
is(q1($nb, qq{SELECT scuttlebutt.clock('g') ? '$kx->{id}'}), 'f',
	"B's signed model did not take A's word for X's clock");
my $genuine = SignedTest::signed_update($kx, '["j",1]', $t0 - 1);
is(q1($nb, 'SELECT scuttlebutt.apply_update(' . LibpqTest::lit('g') . ', ' . LibpqTest::lit($genuine) . ')'),
	't', 'a genuine update of X older than T is still taken');

done_testing();
