# Helpers for the stream-replication TAP tests (test/t/101-119).
#
#   my $node = StreamTest::new_node('a', conf => "...", listen => 1);
#       a ScuttlebuttTest node whose replication worker listens on
#       127.0.0.1 at a port from get_free_port() (StreamTest::port($node)),
#       started, with the extension created, and the listener open
#
#   StreamTest::two_server_fixture($na, $nb, @extra_models)
#   StreamTest::check_two_server_fixture($na, $nb, $label_prefix)
#       the models and writes of the two-server test (111, both transports), and
#       what both nodes hold once those are synced
#
#   StreamTest::wait_converged($model, [@nodes])
#       true once every node holds the same history (wire text) and clock
#       for $model
#
#   StreamTest::wait_all_converged([@models], [@nodes])
#       the same for several models, one query per node and round; returns
#       the models that did not converge
#
#   StreamTest::peer($node, $where)
#       the peer_status row matching $where, as a hash (undef if none)
#
#   StreamTest::wait_quiet($n1, $where1, $n2, $where2)
#       true once both ends of a connection have read all the other wrote
#
#   my $raw = StreamTest::Raw->new($port);
#       a raw TCP client of a listener: write_raw, send_line, read_line,
#       read_until, handshake, wait_closed, close_fin (FIN), close_rst (RST)
package StreamTest;

use strict;
use warnings;

use Carp;
use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use Test::More;
use Time::HiRes qw(usleep);

# a peer that closes its socket must not kill the test with SIGPIPE
$SIG{PIPE} = 'IGNORE';

my %port_of;

sub new_node
{
	my ($name, %opts) = @_;
	my $listen = $opts{listen} // 1;
	my $port = $listen ? PostgreSQL::Test::Cluster::get_free_port() : 0;
	my $conf = "scuttlebutt.listen_addresses = '127.0.0.1'\n"
	  . "scuttlebutt.port = $port\n"
	  . "scuttlebutt.reconnect_min = 50ms\n"
	  . "scuttlebutt.reconnect_max = 500ms\n"
	  . ($opts{conf} // '');
	my $node = ScuttlebuttTest::new_node($name, conf => $conf);
	$port_of{ $node->name } = $port;
	$node->wait_for_log(qr/listening for stream peers on "127\.0\.0\.1" port $port/)
	  if $listen;
	return $node;
}

sub port
{
	my ($node) = @_;
	return $port_of{ $node->name };
}

sub q1
{
	my ($node, $sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

# The two-server fixture of 111 (each transport): models kv, ev (events), val
# (value) and kv2 on both nodes (and any EXTRA models); before any peer, A
# writes 3 keys, 2 events and a value, B 2 keys, 1 event, then a value
# (later, so B's value wins); each writes one key of kv2.
sub two_server_fixture
{
	my ($na, $nb, @extra) = @_;
	my $extra = join('', map { "SELECT scuttlebutt.create_model('$_', 'model');\n" } @extra);
	for my $n ($na, $nb)
	{
		q1($n, qq{
			SELECT scuttlebutt.create_model('kv', 'model');
			SELECT scuttlebutt.create_model('ev', 'events');
			SELECT scuttlebutt.create_model('val', 'value');
			SELECT scuttlebutt.create_model('kv2', 'model');
			$extra
		});
	}
	q1($na, q{
		SELECT scuttlebutt.set('kv', 'a' || i, jsonb_build_object('from', 'a', 'n', i))
		  FROM generate_series(1, 3) i;
		SELECT scuttlebutt.emit('ev', 'a-ev', jsonb_build_object('n', i)) FROM generate_series(1, 2) i;
		SELECT scuttlebutt.set_value('val', '"a0"');
		SELECT scuttlebutt.set('kv2', 'a', '1');
	});
	q1($nb, q{
		SELECT scuttlebutt.set('kv', 'b' || i, jsonb_build_object('from', 'b', 'n', i))
		  FROM generate_series(1, 2) i;
		SELECT scuttlebutt.emit('ev', 'b-ev', '{"n": 1}');
		SELECT scuttlebutt.set_value('val', '"b0"');
		SELECT scuttlebutt.set('kv2', 'b', '2');
	});
}

# What both nodes must hold once the fixture's models are synced.
sub check_two_server_fixture
{
	my ($na, $nb, $prefix) = @_;
	my $p = defined $prefix ? "$prefix: " : '';
	my $qa = sub { q1($na, @_) };
	my $qb = sub { q1($nb, @_) };
	my ($id_a, $id_b) = map { q1($_, 'SELECT scuttlebutt.node_id()') } ($na, $nb);
	my $log = q{SELECT string_agg(event || ':' || data::text || ':' || ts || ':' || source, ',' ORDER BY ts)
				FROM scuttlebutt.events('ev')};

	is($qb->(q{SELECT scuttlebutt.to_json('kv')}),
		'{"a1": {"n": 1, "from": "a"}, "a2": {"n": 2, "from": "a"}, "a3": {"n": 3, "from": "a"}, "b1": {"n": 1, "from": "b"}, "b2": {"n": 2, "from": "b"}}',
		$p . 'kv: B holds both sides\' keys');
	is($qa->(q{SELECT scuttlebutt.to_json('kv')}), $qb->(q{SELECT scuttlebutt.to_json('kv')}), $p . 'kv: same to_json');
	is($qa->(q{SELECT scuttlebutt.clock('kv')}), $qb->(q{SELECT scuttlebutt.clock('kv')}), $p . 'kv: same clock');
	is($qb->(q{SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(scuttlebutt.clock('kv')) k}),
		join(',', sort($id_a, $id_b)), $p . 'kv: the clock lists both nodes');
	is($qa->(q{SELECT string_agg(event || ':' || data::text, ',' ORDER BY ts) FROM scuttlebutt.events('ev')}),
		'a-ev:{"n": 1},a-ev:{"n": 2},b-ev:{"n": 1}', $p . 'ev: A holds the whole log, in timestamp order');
	is($qa->($log), $qb->($log), $p . 'ev: same log on both');
	is($qa->(q{SELECT scuttlebutt.get_value('val')}), '"b0"', $p . 'val: the later write (B\'s) wins on A');
	is($qb->(q{SELECT scuttlebutt.get_value('val')}), '"b0"', $p . 'val: and on B');
	is($qa->(q{SELECT scuttlebutt.clock('val')}), $qb->(q{SELECT scuttlebutt.clock('val')}), $p . 'val: same clock');
	is($qa->(q{SELECT scuttlebutt.to_json('kv2')}), '{"a": 1, "b": 2}', $p . 'kv2 (A dialing B): both keys on A');
	is($qb->(q{SELECT scuttlebutt.to_json('kv2')}), '{"a": 1, "b": 2}', $p . 'kv2 (A dialing B): both keys on B');
}

# After the fixture's dialer B restarted (its kv peer removed before, and
# while it was down A wrote an event, a value and a kv2 key): B's peers
# sync again, the models converge, and B caught up with those writes.
# $kv2_side names A's end of kv2 in the labels; $converged is the
# transport's wait_converged.
sub check_restart_caught_up
{
	my ($na, $nb, $kv2_side, $converged, $prefix) = @_;
	my $p = defined $prefix ? "$prefix: " : '';
	my $qa = sub { q1($na, @_) };
	my $qb = sub { q1($nb, @_) };

	is($qb->(q{SELECT scuttlebutt.wait_for_sync('ev', '60s') AND scuttlebutt.wait_for_sync('val', '60s')}), 't',
		$p . 'restart: wait_for_sync on B');
	is($qa->(q{SELECT scuttlebutt.wait_for_sync('kv2', '60s')}), 't', $p . 'restart: A redials B for kv2');
	for my $m (qw(ev val kv2))
	{
		ok($converged->($m, [ $na, $nb ]), "${p}restart: $m converged");
	}
	is($qb->(q{SELECT count(*) FROM scuttlebutt.events('ev') WHERE event = 'while_b_down'}), 1,
		$p . 'restart: B caught up with an event written while it was down');
	is($qb->(q{SELECT scuttlebutt.get_value('val')}), '"set while B was down"', $p . 'restart: and with the value');
	is($qb->(q{SELECT scuttlebutt.get('kv2', 'while_b_down')}), '1', "${p}restart: and with kv2 (the $kv2_side side)");
	ok(!defined peer($nb, "model = 'kv'"), $p . 'restart: the removed peer stays removed');
}

# What must be equal on two nodes that hold the same model: the updates
# held, byte for byte, and the clock.
sub digest
{
	my ($node, $model) = @_;
	return q1($node, 'SELECT ' . digest_sql($model));
}

sub digest_sql
{
	my ($model) = @_;
	return "md5(coalesce((SELECT string_agg(h::text, E'\\n' ORDER BY h::text)"
	  . " FROM scuttlebutt.history('$model') h), '')"
	  . " || '|' || scuttlebutt.clock('$model')::text)";
}

# digest() of each of @models on $node, in one query: a hash model => digest
sub digests
{
	my ($node, @models) = @_;
	my @d = split /\n/, q1($node, join('', map { 'SELECT ' . digest_sql($_) . ";\n" } @models)), -1;
	return map { ($models[$_] => $d[$_] // '') } 0 .. $#models;
}

# Polls until every node has the same digest of $model; false after
# $timeout seconds (default 60).
sub wait_converged
{
	my ($model, $nodes, $timeout) = @_;
	$timeout //= 60;
	my $deadline = time + $timeout;
	while (1)
	{
		my %seen = map { (digest($_, $model) => 1) } @$nodes;
		return 1 if keys %seen == 1;
		if (time > $deadline)
		{
			diag("model $model did not converge: "
				  . join(', ', map { $_->name . '=' . digest($_, $model) } @$nodes));
			return 0;
		}
		usleep(100_000);
	}
}

# wait_converged for several models at once (one query per node and
# round): returns the models that did not converge within $timeout
# seconds (default 60), with a diag
sub wait_all_converged
{
	my ($models, $nodes, $timeout) = @_;
	my $deadline = time + ($timeout // 60);
	my @left = @$models;
	while (1)
	{
		my @d = map { +{ digests($_, @left) } } @$nodes;
		@left = grep { my $m = $_; my %seen = map { ($_->{$m} => 1) } @d; keys %seen != 1 } @left;
		return () unless @left;
		if (time > $deadline)
		{
			for my $m (@left)
			{
				diag("model $m did not converge: "
					  . join(', ', map { $nodes->[$_]->name . '=' . $d[$_]{$m} } 0 .. $#d));
			}
			return @left;
		}
		usleep(100_000);
	}
}

# Polls until $sql returns 't' on $node; false after $timeout seconds.
sub poll
{
	my ($node, $sql, $timeout) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = $timeout // 60;
	return $node->poll_query_until('postgres', $sql);
}

my @peer_cols = qw(peer_id direction transport model remote_addr remote_id state
  synced_at sent received rejected bytes_in bytes_out last_error last_activity role method tls);

# A peer_status row (the first matching $where), as a hash; undef if none
sub peer
{
	my ($node, $where) = @_;
	my $cols = join(', ', map { "coalesce($_\::text, '<null>')" } @peer_cols);
	my $out = q1($node,
		"SELECT $cols FROM scuttlebutt.peer_status WHERE $where ORDER BY peer_id, remote_addr LIMIT 1");
	return undef if $out eq '';
	my @v = split /\|/, $out, -1;
	my %row;
	@row{@peer_cols} = map { $_ eq '<null>' ? undef : $_ } @v;
	return \%row;
}

# Polls until the two ends of one connection are at rest: the row $w1 on
# $n1 and the row $w2 on $n2 have each read every byte the other wrote.
# False (with a diag) after $timeout seconds (default 60).
sub wait_quiet
{
	my ($n1, $w1, $n2, $w2, $timeout) = @_;
	my $deadline = time + ($timeout // 60);
	my ($r1, $r2);
	while (time < $deadline)
	{
		($r1, $r2) = (peer($n1, $w1), peer($n2, $w2));
		return 1
		  if $r1 && $r2
		  && $r1->{bytes_in} == $r2->{bytes_out}
		  && $r1->{bytes_out} == $r2->{bytes_in}
		  && $r1->{bytes_in} > 0
		  && $r1->{bytes_out} > 0;
		usleep(100_000);
	}
	diag("connection ($w1 on " . $n1->name . ", $w2 on " . $n2->name . ') did not settle: '
		  . join(' / ', map { $_ ? "in $_->{bytes_in} out $_->{bytes_out}" : 'no row' } $r1, $r2));
	return 0;
}

# connection_errors count for a reason (0 when absent)
sub error_count
{
	my ($node, $reason) = @_;
	return q1($node,
		"SELECT coalesce(sum(count), 0) FROM scuttlebutt.connection_errors WHERE reason = '$reason'");
}

sub worker_pid
{
	my ($node) = @_;
	return q1($node,
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'scuttlebutt replication worker'");
}

# The private memory (RssAnon, kB) of process $pid; undef if it is gone
sub rss_anon_kb
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/status") or return undef;
	while (<$fh>)
	{
		return $1 if /^RssAnon:\s+(\d+)\s+kB/;
	}
	return undef;
}

# Waits for $re in $node's log after $offset, for at most $timeout
# seconds; returns the new offset, or undef (with a diag) on timeout.
sub find_log
{
	my ($node, $re, $offset, $timeout) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = $timeout // 30;
	my $pos = eval { $node->wait_for_log($re, $offset) };
	diag("not in the log of " . $node->name . ": $re") unless defined $pos;
	return $pos;
}

sub log_since
{
	my ($node, $offset) = @_;
	return slurp_file($node->logfile, $offset);
}


package StreamTest::Raw;

use strict;
use warnings;

use Errno qw(EAGAIN EINTR);
use IO::Select;
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time);

sub new
{
	my ($class, $port) = @_;
	my $sock = IO::Socket::INET->new(
		PeerAddr => '127.0.0.1',
		PeerPort => $port,
		Proto => 'tcp') or die "cannot connect to 127.0.0.1:$port: $!";
	binmode($sock);
	return bless {
		sock => $sock,
		addr => '127.0.0.1:' . $sock->sockport,
		buf => '',
		eof => 0,
		err => undef
	}, $class;
}

# "127.0.0.1:<our port>", as the server names us
sub addr
{
	my ($self) = @_;
	return $self->{addr};
}

# Writes all of $data; false if the socket was closed under us
sub write_raw
{
	my ($self, $data) = @_;
	my $off = 0;
	while ($off < length $data)
	{
		my $n = syswrite($self->{sock}, $data, length($data) - $off, $off);
		if (!defined $n)
		{
			next if $! == EINTR;
			$self->{err} = "$!";
			return 0;
		}
		$off += $n;
	}
	return 1;
}

sub send_line
{
	my ($self, $line) = @_;
	return $self->write_raw("$line\n");
}

# Reads more bytes into the buffer, waiting at most $wait seconds; false
# at end of stream (or error), or on timeout
sub _fill
{
	my ($self, $wait) = @_;
	return 0 if $self->{eof};
	my $sel = IO::Select->new($self->{sock});
	return 0 unless $sel->can_read($wait > 0 ? $wait : 0);
	my $n = sysread($self->{sock}, my $chunk, 65536);
	if (!defined $n)
	{
		return 1 if $! == EINTR || $! == EAGAIN;
		$self->{err} = "$!";
		$self->{eof} = 1;
		return 0;
	}
	if ($n == 0)
	{
		$self->{eof} = 1;
		return 0;
	}
	$self->{buf} .= $chunk;
	return 1;
}

# The next line (without "\n"), or undef at end of stream or timeout
sub read_line
{
	my ($self, $timeout) = @_;
	my $deadline = time + ($timeout // 30);
	while (1)
	{
		my $i = index($self->{buf}, "\n");
		if ($i >= 0)
		{
			my $line = substr($self->{buf}, 0, $i);
			substr($self->{buf}, 0, $i + 1) = '';
			return $line;
		}
		my $left = $deadline - time;
		return undef if $left <= 0 || $self->{eof};
		$self->_fill($left);
	}
}

# Reads lines until one matches $re; returns it, or undef
sub read_until
{
	my ($self, $re, $timeout) = @_;
	my $deadline = time + ($timeout // 30);
	while (1)
	{
		my $line = $self->read_line($deadline - time);
		return undef unless defined $line;
		return $line if $line =~ $re;
	}
}

# True once the server has closed the connection (end of stream or
# reset), discarding whatever it sent; false after $timeout seconds
sub wait_closed
{
	my ($self, $timeout) = @_;
	my $deadline = time + ($timeout // 30);
	while (!$self->{eof})
	{
		my $left = $deadline - time;
		return 0 if $left <= 0;
		$self->_fill($left);
		$self->{buf} = '';
	}
	return 1;
}

# Opens a stream for $model: sends our header, reads the server's header,
# sends "SYNC", reads the server's history and "SYNC".  Returns (header, updates)
# or an empty list on failure.
sub handshake
{
	my ($self, $model, %o) = @_;
	my $id = $o{id} // 'RAW';
	my $clock = $o{clock} // '{}';
	$self->send_line(qq({"id":"$id","clock":$clock,"meta":"$model"})) or return ();
	my $header = $self->read_line(30);
	return () unless defined $header && $header =~ /^\{/;
	# as the reference: on the peer's header, our history (none) and
	# "SYNC", without waiting for the peer's (which waits for ours: durable
	# sync)
	$self->send_line('"SYNC"') or return ();
	my @updates;
	while (1)
	{
		my $line = $self->read_line(30);
		return () unless defined $line;
		last if $line eq '"SYNC"';
		push @updates, $line;
	}
	return ($header, @updates);
}

# Closes with a reset (SO_LINGER 0) instead of an orderly FIN
sub close_rst
{
	my ($self) = @_;
	setsockopt($self->{sock}, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
	CORE::close($self->{sock});
}

# Closes with an orderly FIN
sub close_fin
{
	my ($self) = @_;
	CORE::close($self->{sock});
}

1;
