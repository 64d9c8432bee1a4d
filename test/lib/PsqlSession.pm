# One psql session kept open per node, database and connection
# environment, through which the tests' plain queries go:
# PostgreSQL::Test::Cluster's safe_psql($db, $sql) (without options) and
# poll_query_until($db, $sql[, $expected]).  Starting a psql and its
# server backend costs some 50 ms of CPU; a query through an open session
# costs a round trip.  The suite runs thousands of such queries and polls,
# on two cores, beside a second run.
#
# Each call behaves as a psql of its own would:
#   - the SQL runs as "psql -XAtq -v ON_ERROR_STOP=1 -f -" runs it: the
#     first error stops it (psql exits, the session with it), and
#     safe_psql dies with the message safe_psql gives;
#   - then the statistics it gathered are flushed (as a backend's are when
#     it ends: a test may read pg_stat_user_tables next), and DISCARD ALL
#     resets what the SQL set in the session (settings, role, temporary
#     tables, prepared statements, advisory locks, LISTEN);
#     SQL that leaves a transaction open ends the session instead, rolling
#     it back, as the end of its own psql would;
#   - a query that cannot reach the backend (the server restarted or the
#     session was terminated) before the call's SQL runs opens a new
#     session and runs the SQL there;
#   - SQL with a psql meta-command (a line starting with a backslash) or
#     COPY ... FROM STDIN goes to a psql of its own, as before.
# The node's stop, restart, kill9 and start close its sessions first, so
# that no session waits on a server that is going away.
#
# PsqlSession::install() replaces the two methods (ScuttlebuttTest does,
# for every test that uses it); PsqlSession::close_all($node) closes a
# node's sessions.
package PsqlSession;

use strict;
use warnings;

use Digest::MD5 qw(md5_hex);
use Errno qw(EAGAIN EINTR);
use Fcntl qw(F_GETFL F_SETFL O_NONBLOCK);
use IO::Select;
use IPC::Open3;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Symbol qw(gensym);
use Test::More;
use Time::HiRes qw(usleep);

my %sessions;    # key => { pid, in, out, err, node }
my $seq = 0;
my $owner = $$;    # a forked child does not touch its parent's sessions
my ($orig_safe_psql, $orig_poll);

# Replaces safe_psql and poll_query_until, and closes a node's sessions
# before it stops, restarts, is killed or starts again.  Once per process.
sub install
{
	return if $orig_safe_psql;
	no warnings 'redefine';
	$orig_safe_psql = \&PostgreSQL::Test::Cluster::safe_psql;
	$orig_poll = \&PostgreSQL::Test::Cluster::poll_query_until;
	*PostgreSQL::Test::Cluster::safe_psql = \&safe_psql;
	*PostgreSQL::Test::Cluster::poll_query_until = \&poll_query_until;
	for my $m (qw(stop restart kill9 start))
	{
		my $orig = PostgreSQL::Test::Cluster->can($m) or next;
		no strict 'refs';
		*{"PostgreSQL::Test::Cluster::$m"} = sub {
			close_all($_[0]);
			goto &$orig;
		};
	}
	return;
}

# Whether $sql can go through a session: no psql meta-command (it would
# change the session's psql), no COPY from psql's own input
sub _usable
{
	my ($sql) = @_;
	return defined $sql && $sql !~ /^\s*\\/m && $sql !~ /\bFROM\s+STDIN\b/i;
}

# The session key: the node, the connection string and the libpq
# environment the call sees (a test may set PGUSER or PGOPTIONS around a
# query)
sub _key
{
	my ($node, $connstr, $env) = @_;
	return join("\0", $node->name, $connstr,
		map { "$_=$env->{$_}" } sort grep { /^PG/ } keys %$env);
}

sub _open
{
	my ($node, $connstr, $key, $env) = @_;
	my @cmd = ($node->installed_command('psql'), '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $connstr, '-f', '-');
	my ($in, $out, $err) = (undef, undef, gensym);
	my $pid;
	{
		local %ENV = %$env;
		$pid = open3($in, $out, $err, @cmd);
	}
	for my $fh ($in, $out, $err)
	{
		binmode($fh);
		my $flags = fcntl($fh, F_GETFL, 0);
		fcntl($fh, F_SETFL, $flags | O_NONBLOCK);
	}
	return $sessions{$key} = { pid => $pid, in => $in, out => $out, err => $err, node => $node->name, cmd => "@cmd" };
}

sub _close
{
	my ($key) = @_;
	my $s = delete $sessions{$key} or return;
	# \q, not only the end of its input: a child forked by the test (a
	# proxy) holds a copy of the pipe
	{
		local $SIG{PIPE} = 'IGNORE';
		my $flags = fcntl($s->{in}, F_GETFL, 0);
		fcntl($s->{in}, F_SETFL, $flags & ~O_NONBLOCK);
		syswrite($s->{in}, "\\q\n");
	}
	close($s->{in});
	close($s->{out});
	close($s->{err});
	# psql ends at once; one that does not is ended
	for (1 .. 100)
	{
		return if waitpid($s->{pid}, POSIX::WNOHANG()) != 0;
		usleep(10_000);
	}
	kill 'KILL', $s->{pid};
	waitpid($s->{pid}, 0);
	return;
}

# Closes every session of $node (all sessions without a node)
sub close_all
{
	my ($node) = @_;
	return unless $$ == $owner;
	for my $key (keys %sessions)
	{
		_close($key) if !$node || $sessions{$key}{node} eq $node->name;
	}
	return;
}

END
{
	local $?;    # the test's exit status, not the last psql's
	close_all();
}

# Writes $input to the session and reads until stdout holds $out_mark
# and stderr $err_mark, or psql exits; returns (stdout, stderr, whether
# psql exited)
sub _exchange
{
	my ($s, $input, $out_mark, $err_mark) = @_;
	my ($out, $err) = ('', '');
	my $sel_r = IO::Select->new($s->{out}, $s->{err});
	my $sel_w = IO::Select->new($s->{in});
	my $pos = 0;
	my $eof = 0;
	local $SIG{PIPE} = 'IGNORE';
	while ($sel_r->count)
	{
		last if index($out, "$out_mark\n") >= 0 && index($err, "$err_mark\n") >= 0;
		my ($r, $w) = IO::Select->select($sel_r, $pos < length($input) ? $sel_w : undef, undef);
		for my $fh (@{ $w // [] })
		{
			my $n = syswrite($fh, $input, 65536, $pos);
			if (defined $n)
			{
				$pos += $n;
			}
			elsif ($! != EAGAIN && $! != EINTR)
			{
				$pos = length($input);    # psql is gone: read what it left
			}
		}
		for my $fh (@{ $r // [] })
		{
			my $n = sysread($fh, my $buf, 65536);
			next if !defined $n && ($! == EAGAIN || $! == EINTR);
			if (!$n)
			{
				# end of file: psql exited; write nothing more
				$sel_r->remove($fh);
				$eof = 1;
				$pos = length($input);
				next;
			}
			if ($fh == $s->{out}) { $out .= $buf }
			else { $err .= $buf }
		}
	}
	return ($out, $err, $eof);
}

# Runs $sql through the session; returns (status, stdout, stderr, psql
# command): status 'ok', 'error' (the SQL failed: psql stopped at it),
# or undef (no session could run it: the caller falls back to a psql of
# its own)
sub _run
{
	my ($node, $dbname, $sql) = @_;
	my %env = $node->_get_env();
	my $connstr = $node->connstr($dbname);
	my $key = _key($node, $connstr, \%env);
	for my $attempt (1, 2)
	{
		my $s = $sessions{$key} // _open($node, $connstr, $key, \%env);
		my $tag = sprintf('__sb_%d_%d_%s__', $$, ++$seq, substr(md5_hex(rand()), 0, 8));
		my ($m0, $m1, $m2) = map { "$tag$_" } 0 .. 2;
		# the ping reaches the backend: if it fails, the SQL never ran
		# the statistics the SQL gathered are flushed before it returns, as
		# at the end of a backend (pg_stat_force_next_flush: superusers)
		my $input = "SELECT 1 WHERE false;\n\\echo $m0\n$sql\n;\n\\echo $m1\n\\warn $m1\n"
		  . "SELECT pg_stat_force_next_flush();\nDISCARD ALL;\n\\echo $m2\n";
		my ($out, $err, $eof) = _exchange($s, $input, $m2, $m1);
		my $p0 = index($out, "$m0\n");
		if ($p0 < 0)
		{
			# the session was lost before the SQL ran: a new one
			_close($key);
			next;
		}
		$out = substr($out, $p0 + length("$m0\n"));
		my $p1 = index($out, "$m1\n");
		my $e1 = index($err, "$m1\n");
		my $cmd = $s->{cmd};
		if ($p1 < 0)
		{
			# the SQL failed: psql stopped there
			_close($key);
			chomp $out;
			chomp $err;
			return ('error', $out, $err, $cmd);
		}
		my $stdout = substr($out, 0, $p1);
		my $stderr = $e1 >= 0 ? substr($err, 0, $e1) : $err;
		# DISCARD ALL failed (a transaction left open) or psql ended: the
		# session ends, as a psql of its own would have
		_close($key) if $eof || index($out, "$m2\n", $p1) < 0;
		chomp $stdout;
		chomp $stderr;
		return ('ok', $stdout, $stderr, $cmd);
	}
	return (undef);
}

# safe_psql($dbname, $sql) through a session; with options, or for SQL a
# session cannot run, PostgreSQL::Test::Cluster's own
sub safe_psql
{
	my ($self, $dbname, $sql, @params) = @_;
	goto &$orig_safe_psql if @params || !_usable($sql) || $$ != $owner;
	my ($status, $stdout, $stderr, $cmd) = _run($self, $dbname, $sql);
	goto &$orig_safe_psql unless defined $status;
	die "error running SQL: '$stderr'\nwhile running '$cmd' with sql '$sql'"
	  if $status eq 'error';
	if ($stderr ne '')
	{
		print "#### Begin standard error\n";
		print $stderr;
		print "\n#### End standard error\n";
	}
	return $stdout;
}

# poll_query_until($dbname, $query[, $expected]) through a session: the
# same attempts, 100 ms apart, as PostgreSQL::Test::Cluster's own; an
# attempt whose query fails or writes to stderr does not count as done
sub poll_query_until
{
	my ($self, $dbname, $query, $expected) = @_;
	goto &$orig_poll if !_usable($query) || $$ != $owner;
	$expected = 't' unless defined $expected;
	my $max_attempts = 10 * $PostgreSQL::Test::Utils::timeout_default;
	my ($stdout, $stderr) = ('', '');
	for (1 .. $max_attempts)
	{
		my $status;
		($status, $stdout, $stderr) = _run($self, $dbname, $query);
		if (!defined $status)
		{
			($stdout, $stderr) = ('', 'no session could be opened');
		}
		elsif ($status eq 'ok' && $stdout eq $expected && $stderr eq '')
		{
			return 1;
		}
		usleep(100_000);
	}
	diag qq(poll_query_until timed out executing this query:
$query
expecting this output:
$expected
last actual query output:
$stdout
with stderr:
$stderr);
	return 0;
}

1;
