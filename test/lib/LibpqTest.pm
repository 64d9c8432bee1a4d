# Helpers for the libpq replication TAP tests (test/t/111-128): servers
# that dial each other with scuttlebutt.add_peer(model, conninfo).
#
#   my $node = LibpqTest::new_node('a', conf => "...", listen => 0,
#                                   extension => 1);
#       a started PostgreSQL::Test::Cluster (UTF8, no locale, the library
#       preloaded) that also accepts TCP connections on 127.0.0.1 at its
#       port (pg_hba: trust, as initdb -A trust writes it), with short
#       reconnect back-offs; the extension created unless extension => 0;
#       listen => 1 also opens the stream listener (LibpqTest::stream_port);
#       preload => 0 leaves the library out of shared_preload_libraries;
#       initdb => [...] replaces initdb's encoding and locale options
#
#   my $h = LibpqTest::hold($node, $sql, qr/done/);
#   my ($waited, $out, $err) = LibpqTest::run_behind($node, $h, $sql2, $like)
#       a session holding a transaction open ($sql run in it), and a
#       statement run while it holds: whether that came to wait on a
#       lock, then, the holder committed, its output (run_behind is
#       start_psql, waits_on_lock, release and finish_psql, for a test
#       that does more between them)
#
#   LibpqTest::conninfo($node, tcp => 1, extra => 'user=x password=y')
#       a libpq connection string of $node's "postgres" database: over
#       its unix socket, or over TCP with tcp => 1
#
#   my $id = LibpqTest::add_peer($node, $model, $conninfo, send => 'false')
#       scuttlebutt.add_peer() on $node; returns the peer id
#
#   LibpqTest::peer($node, $where)
#       the first peer_status row matching $where, as a hash of every
#       column of the view (undef if none)
#
#   LibpqTest::wait_peer($node, $where, sub { my $r = shift; ... }, $timeout)
#       polls until the row matching $where satisfies the condition;
#       returns (ok, last row seen)
#
#   LibpqTest::find_count($node, $re, $offset, $n, $timeout)
#       true once $re matches $n times in the log after $offset
#
#   LibpqTest::visible_text($node)
#       everything peer_status and connection_errors show, as text (for
#       checks that a password appears nowhere)
#
#   LibpqTest::run_js($node, $label, $js_source, @args)
#       runs a node.js script given as text (it can require the interop
#       harness through process.env.SB_INTEROP) like
#       ScuttlebuttTest::run_interop runs test/interop/*.js
#
#   my $dual = LibpqTest::dual_stack_localhost();
#       how "localhost" can be made to resolve to ::1 first, then
#       127.0.0.1, for a server started with the environment %{$dual->{env}}:
#       {how => 'system'} when the system resolver does so already,
#       {how => 'nss_wrapper'} with LD_PRELOAD of libnss_wrapper and a hosts
#       file of its own, or {how => undef, why => '...'} when neither works
#
#   LibpqTest::ipv6_loopback()
#       whether ::1 is configured here (a socket can be bound to it)
package LibpqTest;

use strict;
use warnings;

use Carp;
use File::Temp ();
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use StreamTest;
use Test::More;
use Time::HiRes qw(usleep time);

# a peer that closes its socket must not kill the test with SIGPIPE
$SIG{PIPE} = 'IGNORE';

my %stream_port_of;

sub new_node
{
	my ($name, %o) = @_;
	my $listen = $o{listen} // 0;
	my $sport = $listen ? PostgreSQL::Test::Cluster::get_free_port() : 0;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(extra => $o{initdb} // [ '--encoding=UTF8', '--no-locale' ]);
	$node->append_conf('postgresql.conf',
		$ScuttlebuttTest::common_conf
		  . "listen_addresses = '127.0.0.1'\n"
		  . "scuttlebutt.reconnect_min = 50ms\n"
		  . "scuttlebutt.reconnect_max = 500ms\n"
		  . ($listen
			? "scuttlebutt.listen_addresses = '127.0.0.1'\nscuttlebutt.port = $sport\n"
			: '')
		  . (($o{preload} // 1) ? '' : "shared_preload_libraries = ''\n")
		  . ($o{conf} // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION scuttlebutt')
	  if $o{extension} // 1;
	$stream_port_of{ $node->name } = $sport;
	$node->wait_for_log(qr/listening for stream peers on "127\.0\.0\.1" port $sport/)
	  if $listen;
	return $node;
}

sub stream_port
{
	my ($node) = @_;
	return $stream_port_of{ $node->name };
}

sub q1
{
	my ($node, $sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

# A SQL string literal
sub lit
{
	my ($s) = @_;
	return 'NULL' unless defined $s;
	$s =~ s/'/''/g;
	return "'$s'";
}

# A session of its own holding an open transaction: BEGIN, then $sql,
# until its output matches $done; for run_behind
sub hold
{
	my ($node, $sql, $done) = @_;
	my $limit = $PostgreSQL::Test::Utils::timeout_default;
	my %h = (in => "BEGIN;\n$sql\n", out => '', err => '');
	$h{h} = IPC::Run::start([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
		'<', \$h{in}, '>', \$h{out}, '2>', \$h{err}, IPC::Run::timeout($limit));
	$h{held} = PostgreSQL::Test::Utils::pump_until($h{h}, IPC::Run::timeout($limit), \$h{out}, $done);
	diag("hold: $h{err}") unless $h{held};
	return \%h;
}

# psql -c $sql started in the background: a handle for finish_psql()
sub start_psql
{
	my ($node, $sql) = @_;
	my %r = (out => '', err => '');
	$r{h} = IPC::Run::start([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', $sql ],
		'>', \$r{out}, '2>', \$r{err}, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return \%r;
}

# Waits for a start_psql()ed psql: its stdout (trailing space trimmed), stderr
sub finish_psql
{
	my ($r) = @_;
	$r->{h}->finish;
	return ($r->{out} =~ s/\s+$//r, $r->{err});
}

# Whether a session whose query contains $like comes to wait on a lock
sub waits_on_lock
{
	my ($node, $like) = @_;
	return poll($node, q{SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE }
		  . lit("%$like%"), $PostgreSQL::Test::Utils::timeout_default);
}

# Commits what hold() holds, and ends its session
sub release
{
	my ($holder) = @_;
	$holder->{in} .= "COMMIT;\n\\q\n";
	$holder->{h}->finish or diag("the holder ended with $?: $holder->{err}");
}

# Runs $sql in a session of its own while $holder (hold()) holds its
# transaction open: whether it came to wait on a lock (its query text
# containing $waiting_like), then, the holder committed, its stdout
# (trailing space trimmed) and stderr
sub run_behind
{
	my ($node, $holder, $sql, $waiting_like) = @_;
	my $r = start_psql($node, $sql);
	my $waited = waits_on_lock($node, $waiting_like);

	release($holder);
	return ($waited, finish_psql($r));
}

sub conninfo
{
	my ($node, %o) = @_;
	my $host = $o{tcp} ? '127.0.0.1' : $node->host;
	my $port = $o{port} // $node->port;
	my $s = "host=$host port=$port dbname=postgres";
	$s .= " $o{extra}" if defined $o{extra} && $o{extra} ne '';
	return $s;
}

sub add_peer
{
	my ($node, $model, $conninfo, %o) = @_;
	my $args = lit($model) . ', ' . lit($conninfo);
	$args .= ", send => $o{send}" if defined $o{send};
	$args .= ", receive => $o{receive}" if defined $o{receive};
	return q1($node, "SELECT scuttlebutt.add_peer($args)");
}

my $json = ScuttlebuttTest::json_codec()->utf8;

sub peer
{
	my ($node, $where) = @_;
	my $out = q1($node,
		"SELECT row_to_json(s)::text FROM scuttlebutt.peer_status s WHERE $where"
		  . ' ORDER BY peer_id, remote_addr LIMIT 1');
	return undef if $out eq '';
	return $json->decode($out);
}

# Every peer_status row matching $where, as hashes
sub peers
{
	my ($node, $where) = @_;
	my $out = q1($node,
		"SELECT row_to_json(s)::text FROM scuttlebutt.peer_status s WHERE $where ORDER BY peer_id");
	return [ map { $json->decode($_) } grep { $_ ne '' } split /\n/, $out ];
}

# A row as one line, for diagnostics
sub show
{
	my ($r) = @_;
	return 'no row' unless $r;
	return join(', ', map { "$_=" . ($r->{$_} // 'NULL') } sort keys %$r);
}

sub wait_peer
{
	my ($node, $where, $cond, $timeout) = @_;
	my $deadline = time + ($timeout // 60);
	my $r;
	while (1)
	{
		$r = peer($node, $where);
		my $ok = $r && eval { $cond->($r) };
		return (1, $r) if $ok;
		last if time > $deadline;
		usleep(100_000);
	}
	diag('peer_status row (' . $where . ') on ' . $node->name . ' never matched; last: ' . show($r));
	return (0, $r);
}

sub visible_text
{
	my ($node) = @_;
	return q1($node,
		q{SELECT coalesce((SELECT string_agg(row_to_json(s)::text, E'\n') FROM scuttlebutt.peer_status s), '')
		  || E'\n' || coalesce((SELECT string_agg(row_to_json(e)::text, E'\n') FROM scuttlebutt.connection_errors e), '')});
}

# Per source, the number of entries of a key/value model ("n,n,n" sorted)
sub per_source
{
	my ($node, $model) = @_;
	return q1($node,
		"SELECT string_agg(n::text, ',' ORDER BY n) FROM"
		  . " (SELECT count(*) n FROM scuttlebutt.entries(" . lit($model) . ") GROUP BY source) s");
}

# Polls until $re matches at least $n times in $node's log after
# $offset; false after $timeout seconds
sub find_count
{
	my ($node, $re, $offset, $n, $timeout) = @_;
	my $deadline = time + ($timeout // 30);
	while (1)
	{
		my $c = () = slurp_file($node->logfile, $offset) =~ /$re/g;
		return 1 if $c >= $n;
		if (time > $deadline)
		{
			diag("found $c of $n matches of $re in the log of " . $node->name);
			return 0;
		}
		usleep(200_000);
	}
}

# StreamTest::wait_converged, with the clocks and history sizes in the
# diagnostics when it fails
sub wait_converged
{
	my ($model, $nodes, $timeout) = @_;
	return 1 if StreamTest::wait_converged($model, $nodes, $timeout);
	for my $n (@$nodes)
	{
		my $m = lit($model);
		diag($n->name . " $model: clock " . substr(q1($n, "SELECT scuttlebutt.clock($m)"), 0, 600)
			  . '; ' . q1($n, "SELECT count(*) FROM scuttlebutt.history($m)") . ' updates held');
	}
	return 0;
}
sub poll { return StreamTest::poll(@_) }
sub digest { return StreamTest::digest(@_) }

# Runs a node.js script given as text; every check it reports (through
# test/interop/lib/harness.js) becomes a TAP assertion.  Returns the
# number of checks.
sub run_js
{
	my ($node, $label, $source, @args) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $file = "$dir/$label.js";
	open my $fh, '>', $file or die "cannot write $file: $!";
	print $fh $source;
	close $fh;
	local $ENV{SB_INTEROP} = $ScuttlebuttTest::interop_dir;
	local $ENV{PG_TEST_TIMEOUT_DEFAULT} = $PostgreSQL::Test::Utils::timeout_default;
	my ($out, $err) = ('', '');
	my @cmd = ('node', $file, $node->connstr('postgres'), @args);
	my $ran = IPC::Run::run(\@cmd, '<', \'', '>', \$out, '2>', \$err);
	my $dec = ScuttlebuttTest::json_codec();
	my ($done, $checks) = (0, 0);
	for my $line (split /\n/, $out)
	{
		my $msg = eval { $dec->decode($line) };
		if (!$msg)
		{
			note("$label: $line");
			next;
		}
		my $k = $msg->{kind};
		if ($k eq 'is')
		{
			is($msg->{got}, $msg->{expected}, "$label: $msg->{name}");
			$checks++;
		}
		elsif ($k eq 'ok')
		{
			ok($msg->{pass}, "$label: $msg->{name}") or diag($msg->{diag});
			$checks++;
		}
		elsif ($k eq 'note')
		{
			note("$label: $msg->{text}");
		}
		elsif ($k eq 'done')
		{
			$done = 1;
			is($msg->{checks}, $checks, "$label: every check was reported");
		}
	}
	ok($ran && $done, "$label ran to completion") or diag("exit status $?; stderr:\n$err");
	diag("$label stderr:\n$err") if $err ne '' && $ran;
	return $checks;
}

# The address families (6, 4) that "localhost" resolves to, in order, in
# a process run with the environment %$env
sub _localhost_families
{
	my ($env) = @_;
	local @ENV{ keys %$env } = values %$env;
	my ($out, $err) = ('', '');
	my $script = 'use Socket qw(:addrinfo SOCK_STREAM AF_INET AF_INET6);'
	  . 'my ($e, @r) = getaddrinfo("localhost", "1", {socktype => SOCK_STREAM});'
	  . 'print join(",", map { $_->{family} == AF_INET6 ? 6 : $_->{family} == AF_INET ? 4 : "?" } @r);';
	IPC::Run::run([ $^X, '-e', $script ], '<', \'', '>', \$out, '2>', \$err);
	return $out;
}

# Whether a socket can be bound to ::1 (IPv6 loopback configured)
sub ipv6_loopback
{
	require IO::Socket::IP;
	my $s = IO::Socket::IP->new(LocalHost => '::1', LocalPort => 0, Listen => 1, Proto => 'tcp');
	return 0 unless $s;
	close $s;
	return 1;
}

sub dual_stack_localhost
{
	my $sys = _localhost_families({});
	return { how => 'system', env => {}, families => $sys } if $sys =~ /^6(,6)*,4/;
	my $why = "localhost resolves to [$sys] here";
	return { how => undef, why => "$why and ::1 is not configured" } unless ipv6_loopback();
	my ($lib) = grep { -f $_ } map { "$_/libnss_wrapper.so" }
	  qw(/usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib /usr/local/lib);
	return { how => undef, why => "$why and libnss_wrapper.so (Debian: libnss-wrapper) is not installed" }
	  unless $lib;
	my $hosts = PostgreSQL::Test::Utils::tempdir() . '/hosts';
	open my $fh, '>', $hosts or die "cannot write $hosts: $!";
	print $fh "::1 localhost\n127.0.0.1 localhost\n";
	close $fh;
	my $env = { LD_PRELOAD => $lib, NSS_WRAPPER_HOSTS => $hosts };
	my $wrapped = _localhost_families($env);
	return { how => undef, why => "$why, and [$wrapped] through $lib" } unless $wrapped =~ /^6(,6)*,4/;
	return { how => 'nss_wrapper', env => $env, families => $wrapped };
}

1;
