# The two ways one server dials another, for the TAP scenarios written
# once and run over both (test/t/111_two_servers.pl, 112_chain.pl):
#
#   for my $t (PeerTransport->all) { ... }
#       $t->name                    'stream' or 'libpq'
#       $t->new_node($name, dialed => 1, js => 1)
#           a started node with the extension; dialed => 1: other nodes
#           can dial it over $t; js => 1: a JavaScript client can too
#           (its stream listener, LibpqTest::stream_port)
#       $t->add_peer($from, $model, $to, send => 'false', tcp => 1, extra => '...')
#           $from dials $to for $model; returns the peer id (libpq only:
#           tcp => 1 dials 127.0.0.1, not the unix socket; extra: further
#           conninfo keywords)
#       $t->add_peer_sql($model, $to, ...)
#           the SQL call that add_peer runs
#       $t->remote_addr($to)        remote_addr of a stream peer dialing $to
#       $t->stream_port($node)      the port of $node's stream listener
#       $t->check_out_row($phase, $from, $to, $id, $model, [sent, received])
#           the dialing side's peer_status row of a live peer, exactly
#           (and, over a stream, the dialed side's row mirroring it)
#       $t->check_dialed_row(...)   the same for a peer dialing a server
#           that dials nothing back (the chain's ends)
#       $t->rows_at_dialed          whether the dialed side shows its
#           incoming connections in peer_status (stream: yes)
#       $t->close_reasons           the connection_errors reasons a
#           restart of the other side may leave (no protocol or database
#           fault)
package PeerTransport;

use strict;
use warnings;

use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StreamTest;
use Test::More;

sub all
{
	return (PeerTransport::Stream->new, PeerTransport::Libpq->new);
}

sub new
{
	my ($class) = @_;
	return bless {}, $class;
}

sub add_peer
{
	my ($self, $from, $model, $to, %o) = @_;
	return LibpqTest::q1($from, 'SELECT ' . $self->add_peer_sql($model, $to, %o));
}

# send => / receive => arguments of add_peer and add_stream_peer
sub _flags
{
	my (%o) = @_;
	my $s = '';
	$s .= ", send => $o{send}" if defined $o{send};
	$s .= ", receive => $o{receive}" if defined $o{receive};
	return $s;
}


package PeerTransport::Stream;

use strict;
use warnings;

use parent -norequire, 'PeerTransport';
use LibpqTest;
use StreamTest;
use Test::More;

sub name { return 'stream' }

sub new_node
{
	my ($self, $name, %o) = @_;
	return StreamTest::new_node($name, listen => ($o{dialed} || $o{js}) ? 1 : 0);
}

sub add_peer_sql
{
	my ($self, $model, $to, %o) = @_;
	return "scuttlebutt.add_stream_peer('$model', '127.0.0.1', " . StreamTest::port($to)
	  . PeerTransport::_flags(%o) . ')';
}

sub remote_addr
{
	my ($self, $to) = @_;
	return '127.0.0.1:' . StreamTest::port($to);
}

sub stream_port
{
	my ($self, $node) = @_;
	return StreamTest::port($node);
}

sub rows_at_dialed { return 1 }

sub close_reasons { return ('closed by peer', 'could not connect') }

# B's row of a live stream peer to A, and A's row of the connection:
# both at rest, the counts exact and mirrored, every byte read
sub check_out_row
{
	my ($self, $phase, $from, $to, $id, $m, $counts) = @_;
	my ($sent, $recv) = @$counts;
	my $id_to = LibpqTest::q1($to, 'SELECT scuttlebutt.node_id()');
	my $id_from = LibpqTest::q1($from, 'SELECT scuttlebutt.node_id()');
	ok(StreamTest::wait_quiet($from, "peer_id = $id", $to, "direction = 'in' AND model = '$m'"),
		"$phase: the $m connection is at rest");
	my $out = StreamTest::peer($from, "model = '$m'");
	ok($out, "$phase: B has a peer_status row for $m") or return;
	is_deeply(
		[ @$out{qw(peer_id direction transport model remote_addr remote_id state rejected last_error)} ],
		[ $id, 'out', 'stream', $m, $self->remote_addr($to), $id_to, 'live', 0, undef ],
		"$phase: B's row for $m: peer id, out, stream, address, A's id, live");
	ok(defined $out->{synced_at}, "$phase: B's row for $m has synced_at");
	ok(defined $out->{last_activity}, "$phase: B's row for $m has last_activity");
	is($out->{sent}, $sent, "$phase: B sent $sent updates of $m");
	is($out->{received}, $recv, "$phase: B received $recv updates of $m (no echo)");
	ok($out->{bytes_in} > 0 && $out->{bytes_out} > 0, "$phase: B's row for $m counts bytes");

	my $in = StreamTest::peer($to, "model = '$m'");
	ok($in, "$phase: A has a peer_status row for $m") or return;
	is_deeply(
		[ @$in{qw(peer_id direction transport model remote_id state rejected)} ],
		[ undef, 'in', 'stream', $m, $id_from, 'live', 0 ],
		"$phase: A's row for $m: no peer id, in, stream, B's id, live");
	like($in->{remote_addr}, qr/^127\.0\.0\.1:\d+$/, "$phase: A's row for $m names B's address");
	ok(defined $in->{synced_at}, "$phase: A's row for $m has synced_at");
	is($in->{sent}, $recv, "$phase: A sent what B received ($m)");
	is($in->{received}, $sent, "$phase: A received what B sent ($m)");
	is($in->{bytes_in}, $out->{bytes_out}, "$phase: A read every byte B wrote ($m)");
	is($in->{bytes_out}, $out->{bytes_in}, "$phase: B read every byte A wrote ($m)");
}

# A chain end's live stream peer to the middle B: at rest, the counts
# exact, and B's incoming row mirroring them; $end names the end
sub check_dialed_row
{
	my ($self, $phase, $end, $from, $to, $id, $m, $counts) = @_;
	my $id_to = LibpqTest::q1($to, 'SELECT scuttlebutt.node_id()');
	my $id_from = LibpqTest::q1($from, 'SELECT scuttlebutt.node_id()');
	my $in_where = "direction = 'in' AND model = '$m' AND remote_id = '$id_from'";
	ok(StreamTest::wait_quiet($from, "peer_id = $id", $to, $in_where), "$phase: $end\'s $m connection is at rest");
	my $r = StreamTest::peer($from, "peer_id = $id");
	is_deeply([ @$r{qw(transport state remote_id sent received)} ], [ 'stream', 'live', $id_to, @$counts ],
		"$phase: $end\'s $m peer is live, B's id, sent/received @$counts");
	my $in = StreamTest::peer($to, $in_where);
	is_deeply([ @$in{qw(state sent received)} ], [ 'live', reverse @$counts ],
		"$phase: B's side of $end\'s $m connection mirrors it");
}


package PeerTransport::Libpq;

use strict;
use warnings;

use parent -norequire, 'PeerTransport';
use LibpqTest;
use Test::More;

sub name { return 'libpq' }

sub new_node
{
	my ($self, $name, %o) = @_;
	return LibpqTest::new_node($name, listen => $o{js} ? 1 : 0);
}

# Over $to's unix socket, or over TCP with tcp => 1
sub add_peer_sql
{
	my ($self, $model, $to, %o) = @_;
	return 'scuttlebutt.add_peer(' . LibpqTest::lit($model) . ', '
	  . LibpqTest::lit(LibpqTest::conninfo($to, tcp => $o{tcp}, extra => $o{extra}))
	  . PeerTransport::_flags(%o) . ')';
}

sub stream_port
{
	my ($self, $node) = @_;
	return LibpqTest::stream_port($node);
}

sub rows_at_dialed { return 0 }

# a restart of the dialed server ends the sessions (the server's
# "terminating connection" is a remote error) and refuses the redials
sub close_reasons { return ('closed by peer', 'could not connect', 'connection lost', 'remote error') }

# B's row of a live libpq peer to A (the dialed side shows none): the
# counts exact once the sessions are at rest, the conninfo shown without
# the password ($secret)
sub check_out_row
{
	my ($self, $phase, $from, $to, $id, $m, $counts, $secret) = @_;
	my ($sent, $recv) = @$counts;
	my $id_to = LibpqTest::q1($to, 'SELECT scuttlebutt.node_id()');
	my ($ok, $r) = LibpqTest::wait_peer($from, "peer_id = $id",
		sub { $_[0]{state} eq 'live' && $_[0]{sent} == $sent && $_[0]{received} == $recv }, 10);
	ok($r, "$phase: B has a peer_status row for $m") or return;
	is_deeply(
		[ @$r{qw(peer_id direction transport model remote_id state rejected last_error)} ],
		[ $id, 'out', 'libpq', $m, $id_to, 'live', 0, undef ],
		"$phase: B's row for $m: peer id, out, libpq, A's node id, live, no error");
	is($r->{sent}, $sent, "$phase: B sent $sent updates of $m");
	is($r->{received}, $recv, "$phase: B received $recv updates of $m (none of its own echoed)");
	ok(defined $r->{synced_at}, "$phase: B's row for $m has synced_at");
	ok(defined $r->{last_activity}, "$phase: B's row for $m has last_activity");
	ok(($r->{bytes_in} // 0) > 0 && ($r->{bytes_out} // 0) > 0, "$phase: B's row for $m counts bytes");
	my $port = $to->port;
	ok(defined $r->{conninfo} && $r->{conninfo} =~ /\b$port\b/ && $r->{conninfo} =~ /postgres/,
		"$phase: B's row for $m shows the conninfo (port, dbname)")
	  or diag('conninfo: ' . ($r->{conninfo} // 'NULL'));
	unlike($r->{conninfo} // '', qr/\Q$secret\E/, "$phase: the conninfo shown lacks the password")
	  if defined $secret;
}

sub check_dialed_row
{
	my ($self, $phase, $end, $from, $to, $id, $m, $counts) = @_;
	my ($s, $r) = @$counts;
	my $id_to = LibpqTest::q1($to, 'SELECT scuttlebutt.node_id()');
	my ($ok, $row) = LibpqTest::wait_peer($from, "peer_id = $id",
		sub { $_[0]{state} eq 'live' && $_[0]{sent} == $s && $_[0]{received} == $r }, 15);
	is_deeply([ @{ $row // {} }{qw(transport state remote_id sent received)} ],
		[ 'libpq', 'live', $id_to, $s, $r ],
		"$phase: $end\'s $m peer is live, B's id, sent $s, received $r");
}

1;
