# A revoke reaches the stream connections already open.
#
# One rule lets every client in as alice, who holds read and write on
# model m.  One client connects and writes (applied).  Then:
#   revoke write -> what the open connection sends is dropped and counted
#                   (peer_status.rejected), live updates still reach it
#   revoke read  -> holding neither, the connection is closed
#                   ("permission denied", counted in connection_errors)
# A dialed peer whose owner loses write stops storing what it receives,
# without waiting for its next connection.
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
qa(q{SELECT scuttlebutt.create_model('m'); SELECT scuttlebutt.set('m', 'old', '1')});
qa(q{SELECT scuttlebutt.grant('m', 'alice', 'read'); SELECT scuttlebutt.grant('m', 'alice', 'write')});
qa(q{INSERT INTO scuttlebutt.listen_rules VALUES (1, NULL, NULL, 'trust', 'alice')});

my $n = 0;
sub update_line
{
	my ($key, $source) = @_;
	my $ts = int(time * 1000) + $n++;
	return qq([["$key","from $source"],$ts,"$source"]);
}

# ---- incoming ----
my $c = StreamTest::Raw->new($port);
my ($header, @updates) = $c->handshake('m', id => 'CLIENT');
ok(defined $header, 'read and write: the handshake completes');
ok($c->send_line(update_line('before', 'CLIENT')), 'the client sends an update');
ok(StreamTest::poll($na, q{SELECT count(*) = 1 FROM scuttlebutt.keys('m') k WHERE k = 'before'}),
	'read and write: the update is applied');

qa(q{SELECT scuttlebutt.revoke('m', 'alice', 'write')});
ok($c->send_line(update_line('after_write_revoked', 'CLIENT')),
	'after the revoke of write, the open connection sends an update');
ok(StreamTest::poll($na, q{SELECT rejected >= 1 FROM scuttlebutt.peer_status WHERE remote_id = 'CLIENT'}),
	'write revoked: the update is dropped and counted as rejected');
is(qa(q{SELECT count(*) FROM scuttlebutt.keys('m') k WHERE k = 'after_write_revoked'}), '0',
	'write revoked: the update is not stored');
like(StreamTest::peer($na, q{remote_id = 'CLIENT'})->{last_error}, qr/no write privilege/,
	'write revoked: last_error says why');
qa(q{SELECT scuttlebutt.set('m', 'live', '2')});
ok(defined $c->read_until(qr/"live"/, 30), 'write revoked: live updates are still sent (read held)');

my $before = StreamTest::error_count($na, 'permission denied');
qa(q{SELECT scuttlebutt.revoke('m', 'alice', 'read')});
ok($c->wait_closed(30), 'read revoked too: the open connection is closed');
ok(StreamTest::poll($na, "SELECT count > $before FROM scuttlebutt.connection_errors WHERE reason = 'permission denied'"),
	'read revoked too: counted as permission denied');

# ---- outgoing: the peer row's owner loses write ----
qa(q{DELETE FROM scuttlebutt.listen_rules WHERE position = 1});
qa(q{SELECT scuttlebutt.create_model('pb')});
qb(q{CREATE ROLE carol});
qb(q{SELECT scuttlebutt.create_model('pb')});
qb(q{SELECT scuttlebutt.grant('pb', 'carol', 'read'); SELECT scuttlebutt.grant('pb', 'carol', 'write')});
my $peer = qb(qq{INSERT INTO scuttlebutt.peers (model, transport, host, port, owner)
	VALUES ('pb', 'stream', '127.0.0.1', $port, 'carol') RETURNING id});
qa(q{SELECT scuttlebutt.set('pb', 'first', '1')});
ok(StreamTest::poll($nb, q{SELECT count(*) = 1 FROM scuttlebutt.keys('pb') k WHERE k = 'first'}),
	'outgoing, owner with write: a live update is stored');
qb(q{SELECT scuttlebutt.revoke('pb', 'carol', 'write')});
qa(q{SELECT scuttlebutt.set('pb', 'second', '1')});
ok(StreamTest::poll($nb, qq{SELECT rejected >= 1 FROM scuttlebutt.peer_status WHERE peer_id = $peer}),
	'outgoing, write revoked: what it receives is dropped and counted');
is(qb(q{SELECT count(*) FROM scuttlebutt.keys('pb') k WHERE k = 'second'}), '0',
	'outgoing, write revoked: nothing received is stored');

$na->stop;
$nb->stop;
done_testing();
