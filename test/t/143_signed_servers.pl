# Signed models between two database servers, over both transports
# (PeerTransport: 'stream' and 'libpq') and with both key types: B dials
# A for the signed model "s".  A trusts B's and C's keys; B at first
# trusts no one:
#   - A accepts B's signed writes; B refuses A's own writes and the
#     update of a third source C that A holds (relayed by A with C's
#     signature): peer_status.rejected counts them, they are not stored
#     and B's clock does not move for them;
#   - once B trusts A's key (and redials), A's writes arrive, C's are
#     still refused; once B trusts C's key too, the model converges,
#     signatures byte for byte;
#   - live signed writes on each side then reach the other, and a signed
#     JavaScript peer on each server verifies the other's writes after
#     two hops (test/interop/signed_hops.js);
#   - forgeries held by an unsigned model on one server stay out of the
#     other's signed model of the same name, pulled or pushed, among
#     enough genuine updates that the batch is verified on helper threads.
# C's update is signed with the openssl command (SignedTest::signed_update),
# so the server's verification is checked against an implementation other
# than its own.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use LibpqTest;
use PeerTransport;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use SignedTest;
use StreamTest;
use Test::More;

sub q1 { return LibpqTest::q1(@_) }

my $js = ScuttlebuttTest::node_available();
$ENV{PG_TEST_TIMEOUT_DEFAULT} = $PostgreSQL::Test::Utils::timeout_default;

# sum of rejected over the node's rows for model s
sub rejected
{
	my ($node) = @_;
	return q1($node, "SELECT coalesce(sum(rejected), 0) FROM scuttlebutt.peer_status WHERE model = 's'");
}

for my $t (PeerTransport->all)
{
	for my $alg (qw(rsa ed25519))
	{
		my $p = $t->name . " $alg";
		my $tag = $t->name . "_$alg";
		my $na = $t->new_node("a_$tag", dialed => 1, js => 1);
		my $nb = $t->new_node("b_$tag", js => 1);
		my $dir = PostgreSQL::Test::Utils::tempdir();
		my ($ka, $kb, $kc) = map { SignedTest::make_key($dir, "$_", $alg) } qw(a b c);
		SignedTest::use_key($na, $ka);
		SignedTest::use_key($nb, $kb);
		my ($ida, $idb, $idc) = map { $_->{id} } ($ka, $kb, $kc);

		q1($_, q{SELECT scuttlebutt.create_model('s', 'model', true)}) for ($na, $nb);
		SignedTest::trust($na, $kb, "$p: A");
		SignedTest::trust($na, $kc, "$p: A");

		my $now = time() * 1000;
		my $c1 = SignedTest::signed_update($kc, '["c1",{"from":"c"}]', $now - 5000);
		is(q1($na, 'SELECT scuttlebutt.apply_update(' . LibpqTest::lit('s') . ', ' . LibpqTest::lit($c1) . ')'),
			't', "$p: A accepts C's update signed with the openssl command");
		q1($na, q{SELECT scuttlebutt.set('s', 'a1', '{"from": "a"}')});
		q1($nb, q{SELECT scuttlebutt.set('s', 'b1', '{"from": "b"}')});

		my $id = $t->add_peer($nb, 's', $na);
		ok(StreamTest::poll($na, q{SELECT scuttlebutt.get('s', 'b1') IS NOT NULL}),
			"$p: B's signed write reaches A, which trusts B");
		ok(StreamTest::poll($nb, q{SELECT coalesce(sum(rejected), 0) >= 2 FROM scuttlebutt.peer_status WHERE model = 's'}),
			"$p: B, trusting no one, rejects A's write and C's update (peer_status.rejected)")
		  or diag('rejected on B: ' . rejected($nb));
		is(q1($nb, q{SELECT count(*) FROM scuttlebutt.history('s')}), 1, "$p: B holds only its own update");
		is(q1($nb, q{SELECT scuttlebutt.get('s', 'a1') IS NULL AND scuttlebutt.get('s', 'c1') IS NULL}),
			't', "$p: get() on B returns neither");
		is(q1($nb, qq{SELECT scuttlebutt.clock('s') ?| ARRAY['$ida', '$idc']}), 'f',
			"$p: B's clock did not move for A or C");

		# trust A, and dial again: A's write arrives, C's update is still refused
		SignedTest::trust($nb, $ka, "$p: B");
		q1($nb, "SELECT scuttlebutt.remove_peer($id)");
		my $before = rejected($nb);
		$id = $t->add_peer($nb, 's', $na);
		ok(StreamTest::poll($nb, q{SELECT scuttlebutt.get('s', 'a1') IS NOT NULL}),
			"$p: once B trusts A's key, A's write reaches B");
		ok(StreamTest::poll($nb, "SELECT coalesce(sum(rejected), 0) >= 1 FROM scuttlebutt.peer_status WHERE peer_id = $id"),
			"$p: C's update, relayed by A, is still rejected by B (C's key not trusted)");
		is(q1($nb, q{SELECT scuttlebutt.get('s', 'c1') IS NULL}), 't', "$p: get() on B does not return C's update");

		# trust C too: the model converges, byte for byte
		SignedTest::trust($nb, $kc, "$p: B");
		q1($nb, "SELECT scuttlebutt.remove_peer($id)");
		$id = $t->add_peer($nb, 's', $na);
		ok(StreamTest::poll($nb, q{SELECT scuttlebutt.get('s', 'c1') IS NOT NULL}),
			"$p: once B trusts C's key, C's update reaches B through A");
		ok(LibpqTest::wait_converged('s', [ $na, $nb ]), "$p: A and B hold the same updates (signatures included) and clock");
		is(q1($nb, qq{SELECT h::text FROM scuttlebutt.history('s') h WHERE h->>2 = '$idc'}), $c1,
			"$p: C's update on B is the text signed by openssl, byte for byte");

		# live writes both ways
		q1($na, q{SELECT scuttlebutt.set('s', 'a2', '[2, "live from a"]')});
		q1($nb, q{SELECT scuttlebutt.set('s', 'b2', '[2, "live from b"]')});
		ok(StreamTest::poll($nb, q{SELECT scuttlebutt.get('s', 'a2') IS NOT NULL})
			  && StreamTest::poll($na, q{SELECT scuttlebutt.get('s', 'b2') IS NOT NULL}),
			"$p: live signed writes reach the other side");
		ok(LibpqTest::wait_converged('s', [ $na, $nb ]), "$p: converged after the live writes");
		is(q1($nb, q{SELECT count(*) FILTER (WHERE json_array_length(h) = 4 AND h->>3 <> '') || '/' || count(*)
					  FROM scuttlebutt.history('s') h}),
			'5/5', "$p: each of the 5 updates on B (c1, a1, b1, a2, b2) is signed");
		is(q1($nb, "SELECT rejected FROM scuttlebutt.peer_status WHERE peer_id = $id"), 0,
			"$p: the last connection rejected nothing");

		# two hops: a signed JavaScript peer on each server
		if ($js)
		{
			SignedTest::make_key($dir, $_, $alg) for qw(j1 j2);
			ScuttlebuttTest::run_interop($na, 'signed_hops.js', $t->stream_port($na), $nb->connstr('postgres'),
				$t->stream_port($nb), 's', $alg, $dir);
		}

		# forgeries held by an UNSIGNED model on one side (which stores
		# what it is given) do not get into the other side's signed model
		# of the same name, in either direction: "f" is unsigned on A and
		# signed on B (B pulls, or reads, A's updates); "g" is signed on A
		# and unsigned on B (B pushes, or sends, its updates to A).  Both
		# sides trust C by now, not D.
		q1($na, q{SELECT scuttlebutt.create_model('f', 'model', false); SELECT scuttlebutt.create_model('g', 'model', true)});
		q1($nb, q{SELECT scuttlebutt.create_model('f', 'model', true); SELECT scuttlebutt.create_model('g', 'model', false)});
		my $kd = SignedTest::make_key($dir, 'd', $alg);
		my $base = time() * 1000 - 30000;
		my @forged;
		{
			my $g = SignedTest::signed_update($kc, '["x_value","genuine"]', $base + 100);
			push @forged, $g =~ s/"genuine"/"forged"/r;
			push @forged, qq([["x_aaaa",1],@{[$base + 101]},"$idc","AAAA"]);
			push @forged, qq([["x_unsigned",1],@{[$base + 102]},"$idc"]);
			push @forged, SignedTest::signed_update($kd, '["x_unknown",1]', $base + 103);
		}
		my $genuine = SignedTest::signed_update($kc, '["x_genuine","from c"]', $base);
		# enough genuine updates beside them that the receiver verifies
		# the batch on its helper threads (scuttlebutt.verify_threads)
		my @bulk = map { SignedTest::signed_update($kc, qq(["x_bulk$_",$_]), $base + $_) } 1 .. 30;
		my $later = SignedTest::signed_update($kc, '["x_later","from c"]', $base + 50);
		for my $m ([ 'f', $na, $nb, 'A', 'B' ], [ 'g', $nb, $na, 'B', 'A' ])
		{
			my ($model, $holder, $signed, $hn, $sn) = @$m;
			my $q = "$p: $model ($hn unsigned, $sn signed)";
			# the genuine update first: an unsigned model drops a lower
			# timestamp after a higher one of the same source
			# (one statement, one transaction, per update, in one session)
			my $stored = grep { $_ eq 't' } split /\n/,
			  q1($holder, join('', map { "SELECT scuttlebutt.apply_update('$model', " . LibpqTest::lit($_) . ");\n" }
				  ($genuine, @bulk, @forged)));
			is($stored, 35, "$q: ${hn}'s unsigned model stores the 31 genuine updates and the 4 forgeries");
			my $pid = $t->add_peer($nb, $model, $na);
			ok(StreamTest::poll($signed, "SELECT scuttlebutt.get('$model', 'x_genuine') IS NOT NULL"),
				"$q: C's genuine update reaches $sn");
			ok((LibpqTest::wait_peer($nb, "peer_id = $pid", sub { $_[0]{state} eq 'live' && defined $_[0]{synced_at} }, 30))[0],
				"$q: the peer is live and synced");
			is(q1($signed, "SELECT count(*) FROM unnest(ARRAY['x_value', 'x_aaaa', 'x_unsigned', 'x_unknown']) k"
				  . " WHERE scuttlebutt.get('$model', k) IS NOT NULL"), 0,
				"$q: none of the forgeries is on $sn");
			is(q1($signed, "SELECT count(*) FROM scuttlebutt.history('$model')"), 31, "$q: $sn holds the 31 genuine updates");
			is(q1($signed, "SELECT scuttlebutt.clock('$model')::text"), qq({"$idc": @{[$base + 30]}}),
				"$q: ${sn}'s clock holds C at the last genuine update's timestamp, not a forgery's");
			is(q1($signed, "SELECT scuttlebutt.apply_update('$model', " . LibpqTest::lit($later) . ')'), 't',
				"$q: a later genuine update of C, older than the forgeries, is still applied on $sn");
			note("$q: rejected on B's row: " . q1($nb, "SELECT rejected FROM scuttlebutt.peer_status WHERE peer_id = $pid")
				  . ', on A: ' . q1($na, "SELECT coalesce(sum(rejected), 0) FROM scuttlebutt.peer_status WHERE model = '$model'"));
			# where the refusals are counted: on the signed side's rows,
			# except for a libpq push, where the dialed side has no row
			# and the pusher's row counts what the remote refused
			my ($cn, $cw, $where) =
			    $model eq 'f' ? ($nb, "peer_id = $pid", "B's peer row")
			  : $t->name eq 'stream' ? ($na, "model = '$model'", "A's row of B's connection")
			  : ($nb, "peer_id = $pid", "B's peer row (A refused them in B's push)");
			ok(StreamTest::poll($cn, "SELECT coalesce(sum(rejected), 0) >= 4 FROM scuttlebutt.peer_status WHERE $cw", 20),
				"$q: $where counts the 4 forgeries in peer_status.rejected");
			q1($nb, "SELECT scuttlebutt.remove_peer($pid)");
		}
		$na->stop;
		$nb->stop;
	}
}

done_testing();
