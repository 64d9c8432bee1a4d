# Stream connections under per-model privileges (scuttlebutt.grant).
#
# Incoming: one rule lets every client in as alice; per model, alice holds
#   nothing   -> closed at the header, before any byte ("permission denied")
#   read      -> gets the history and live updates; what it sends is
#                dropped and counted (peer_status.rejected), and it stays up
#   write     -> gets the header and "SYNC" only, never an update; what it
#                sends is applied
# Outgoing: a dialed peer acts as its row's owner on the dialing server:
#   an owner with read only sends and drops what it receives (counted), an
#   owner with nothing is closed ("permission denied").
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamTest;
use Test::More;

my $na = StreamTest::new_node('a');
my $nb = StreamTest::new_node('b', listen => 0);
my $port = StreamTest::port($na);
sub qa { StreamTest::q1($na, @_) }
sub qb { StreamTest::q1($nb, @_) }

qa(q{CREATE ROLE alice});
for my $m (qw(p_none p_read p_write))
{
	qa(qq{SELECT scuttlebutt.create_model('$m'); SELECT scuttlebutt.set('$m', 'old', '1')});
}
qa(q{SELECT scuttlebutt.grant('p_read', 'alice', 'read')});
qa(q{SELECT scuttlebutt.grant('p_write', 'alice', 'write')});
qa(q{INSERT INTO scuttlebutt.listen_rules VALUES (1, NULL, NULL, 'trust', 'alice')});

my $n = 0;
sub update_line
{
	my ($key, $source) = @_;
	my $ts = int(time * 1000) + $n++;
	return qq([["$key","from $source"],$ts,"$source"]);
}

# ---- no privilege: refused at the header ----
{
	my $before = StreamTest::error_count($na, 'permission denied');
	my $offset = -s $na->logfile;
	my $raw = StreamTest::Raw->new($port);
	$raw->send_line(q({"id":"NONE","clock":{},"meta":"p_none"}));
	my $line = $raw->read_line(30);
	ok(!defined $line && $raw->wait_closed(30), 'no privilege: closed without a byte from the worker');
	ok(StreamTest::find_log($na,
			qr/closing connection from \Q${\ $raw->addr }\E: permission denied\n.*DETAIL:  Role "alice" holds neither read nor write on model "p_none"/,
			$offset),
		'no privilege: logged as permission denied, naming the role and model');
	ok(StreamTest::poll($na, "SELECT count > $before FROM scuttlebutt.connection_errors WHERE reason = 'permission denied'"),
		'no privilege: counted in connection_errors');
}

# ---- read only ----
my $reader = StreamTest::Raw->new($port);
my ($rheader, @rupdates) = $reader->handshake('p_read', id => 'READER');
ok(defined $rheader, 'read only: the handshake completes');
is(scalar(grep { /"old"/ } @rupdates), 1, 'read only: the history is sent');
ok($reader->send_line(update_line('pushed', 'READER')), 'read only: the client sends an update');
ok(StreamTest::poll($na, q{SELECT rejected >= 1 FROM scuttlebutt.peer_status WHERE remote_id = 'READER'}),
	'read only: the update is dropped and counted as rejected');
my $rrow = StreamTest::peer($na, q{remote_id = 'READER'});
like($rrow->{last_error}, qr/no write privilege on model "p_read"/, 'read only: last_error says why');
is($rrow->{role} . '/' . $rrow->{method}, 'alice/trust', 'read only: peer_status shows alice, by trust');
is(qa(q{SELECT count(*) FROM scuttlebutt.keys('p_read') k WHERE k = 'pushed'}), '0',
	'read only: the update is not stored');

# ---- write only ----
my $writer = StreamTest::Raw->new($port);
my ($wheader, @wupdates) = $writer->handshake('p_write', id => 'WRITER');
ok(defined $wheader && $wheader =~ /^\{"id":/, 'write only: the header is sent');
is(scalar(@wupdates), 0, 'write only: "SYNC" comes with no update, though the model has one');
ok($writer->send_line(update_line('pushed', 'WRITER')), 'write only: the client sends an update');
ok(StreamTest::poll($na, q{SELECT count(*) = 1 FROM scuttlebutt.keys('p_write') k WHERE k = 'pushed'}),
	'write only: the update is applied');

# live: one transaction writes both models, so the worker pumps both
# connections for the same commit; once the reader has its update, the
# writer would have had its own
qa(q{BEGIN; SELECT scuttlebutt.set('p_read', 'live', '2'); SELECT scuttlebutt.set('p_write', 'live', '2'); COMMIT});
ok(defined $reader->read_until(qr/"live"/, 30), 'read only: a live write is sent');
is($writer->read_line(2), undef, 'write only: a live write is not sent');
is(StreamTest::peer($na, q{remote_id = 'READER'})->{state}, 'live', 'read only: the connection stays up');
is(StreamTest::peer($na, q{remote_id = 'WRITER'})->{state}, 'live', 'write only: the connection stays up');
is(StreamTest::peer($na, q{remote_id = 'WRITER'})->{sent}, 0, 'write only: peer_status counts no update sent');
$reader->close_fin;
$writer->close_fin;

# ---- outgoing: the peer row's owner ----
qa(q{DELETE FROM scuttlebutt.listen_rules WHERE position = 1});
qa(q{SELECT scuttlebutt.create_model('pb'); SELECT scuttlebutt.set('pb', 'from_a', '1')});
qb(q{CREATE ROLE carol; CREATE ROLE dave});
qb(q{SELECT scuttlebutt.create_model('pb'); SELECT scuttlebutt.set('pb', 'from_b', '1')});
qb(q{SELECT scuttlebutt.grant('pb', 'carol', 'read')});
my $peer = qb(qq{INSERT INTO scuttlebutt.peers (model, transport, host, port, owner)
	VALUES ('pb', 'stream', '127.0.0.1', $port, 'carol') RETURNING id});
ok(StreamTest::poll($na, q{SELECT count(*) = 1 FROM scuttlebutt.keys('pb') k WHERE k = 'from_b'}),
	'outgoing, owner with read: the dialing server sends its history');
ok(StreamTest::poll($nb, qq{SELECT rejected >= 1 FROM scuttlebutt.peer_status WHERE peer_id = $peer}),
	'outgoing, owner with read: what it receives is dropped and counted');
is(qb(q{SELECT count(*) FROM scuttlebutt.keys('pb') k WHERE k = 'from_a'}), '0',
	'outgoing, owner with read: nothing received is stored');
my $brow = StreamTest::peer($nb, "peer_id = $peer");
is($brow->{role}, 'carol', 'outgoing: peer_status shows the owner as the role');
ok(!defined $brow->{method}, 'outgoing: no method');
qb(qq{UPDATE scuttlebutt.peers SET owner = 'dave' WHERE id = $peer});
ok(StreamTest::poll($nb,
		qq{SELECT last_error LIKE 'permission denied: Role "dave" holds neither read nor write on model "pb"%'
		   FROM scuttlebutt.peer_status WHERE peer_id = $peer}),
	'outgoing, owner with nothing: closed, permission denied');

$na->stop;
$nb->stop;
done_testing();
