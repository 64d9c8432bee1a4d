# A TCP fault proxy (test/t/126, 160, 170): one child process per link
# between two ends (two servers, or a JavaScript peer and its server),
# forwarding any number of routes, each a listening port on 127.0.0.1
# that forwards to 127.0.0.1:<to>, dialed by one of the two ends.
#
#   my $p = FaultProxy->new('s0-s1', [ 's0', 's1' ],
#                           [ { to => $pg_port_of_s1, client => 's0' },
#                             { to => $stream_port_of_s0, client => 's1' } ]);
#   $p->port(0), $p->port(1)       where route 0 and route 1 listen
#   my $p = FaultProxy->forward($name, $to)
#                                  one route to 127.0.0.1:$to ($p->port)
#
# Faults, each in force when the call returns (the child acknowledges
# every command after applying it; each returns true, or dies):
#   $p->pause          no byte is read or written and no connection
#                      accepted; the connections stay open (a partition
#                      as a stalled network shows it)
#   $p->drop           every current connection closed with a reset (RST)
#                      at both ends; new ones are accepted (unless paused)
#   $p->delay($ms)     every chunk read is held $ms before it is written
#   $p->cut($from)     bytes sent by end $from are held (neither read nor
#                      written on); the other direction flows
#   $p->heal           no pause, no delay, no cut (held bytes then flow)
#   $p->connections    the number of connections being forwarded
#   $p->stop           ends the child
#
# The child never returns into the test (POSIX::_exit), so it runs none of
# the test's END blocks (PostgreSQL::Test::Cluster's would stop the nodes).
package FaultProxy;

use strict;
use warnings;

use Errno qw(EAGAIN EINTR EWOULDBLOCK EINPROGRESS);
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Socket qw(AF_UNIX SOCK_STREAM PF_UNSPEC SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time);

my @all;

# a socket closed under us must not kill the process with SIGPIPE
$SIG{PIPE} = 'IGNORE';

sub new
{
	my ($class, $name, $ends, $routes) = @_;
	my @lsn;
	for my $r (@$routes)
	{
		my $l = IO::Socket::INET->new(
			LocalAddr => '127.0.0.1',
			LocalPort => 0,
			Listen => 128,
			ReuseAddr => 1,
			Proto => 'tcp') or die "fault proxy $name: cannot listen: $!";
		push @lsn, $l;
	}
	socketpair(my $ours, my $theirs, AF_UNIX, SOCK_STREAM, PF_UNSPEC)
	  or die "socketpair: $!";
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		close $ours;
		my $rc = eval { _serve($ends, $routes, \@lsn, $theirs); 1 } ? 0 : 1;
		print STDERR "fault proxy $name: $@" if $rc;
		POSIX::_exit($rc);
	}
	close $theirs;
	my $self = bless {
		name => $name,
		pid => $pid,
		ends => $ends,
		ports => [ map { $_->sockport } @lsn ],
		ctl => $ours,
		buf => ''
	}, $class;
	close $_ for @lsn;
	push @all, $self;
	$self->_command('ping');
	return $self;
}

# A proxy of one route, from a client "client" to a server "server"
# listening on 127.0.0.1:$to
sub forward
{
	my ($class, $name, $to) = @_;
	return $class->new($name, [ 'client', 'server' ], [ { to => $to, client => 'client' } ]);
}

sub name { return $_[0]->{name} }
sub ends { return @{ $_[0]->{ends} } }
sub port { return $_[0]->{ports}[ $_[1] // 0 ] }

# Sends one command and waits (10 s at most) for the child's answer
sub _command
{
	my ($self, @words) = @_;
	die "fault proxy $self->{name} is stopped" unless $self->{pid};
	my $line = join(' ', @words) . "\n";
	syswrite($self->{ctl}, $line) == length($line)
	  or die "fault proxy $self->{name}: cannot send \"@words\": $!";
	my $sel = IO::Select->new($self->{ctl});
	my $deadline = time + 10;
	while (1)
	{
		my $i = index($self->{buf}, "\n");
		if ($i >= 0)
		{
			my $ans = substr($self->{buf}, 0, $i);
			substr($self->{buf}, 0, $i + 1) = '';
			die "fault proxy $self->{name}: \"@words\" answered \"$ans\"" unless $ans =~ s/^ok ?//;
			return $ans;
		}
		my $left = $deadline - time;
		die "fault proxy $self->{name}: no answer to \"@words\"" if $left <= 0;
		next unless $sel->can_read($left);
		my $n = sysread($self->{ctl}, my $chunk, 4096);
		die "fault proxy $self->{name} ended" unless $n;
		$self->{buf} .= $chunk;
	}
}

sub pause { $_[0]->_command('pause'); return 1 }
sub drop { $_[0]->_command('drop'); return 1 }
sub heal { $_[0]->_command('heal'); return 1 }
sub delay { my ($self, $ms) = @_; $self->_command('delay', int($ms)); return 1 }
sub connections { return $_[0]->_command('count') }

sub cut
{
	my ($self, $from) = @_;
	die "fault proxy $self->{name}: no end $from" unless grep { $_ eq $from } @{ $self->{ends} };
	$self->_command('cut', $from);
	return 1;
}

sub stop
{
	my ($self) = @_;
	return unless $self->{pid};
	kill 'TERM', $self->{pid};
	waitpid($self->{pid}, 0);
	$self->{pid} = 0;
	close $self->{ctl};
	@all = grep { $_ != $self } @all;
}

END
{
	my $rc = $?;
	$_->stop for my @copy = @all;
	$? = $rc;
}

# Closes a socket with a reset rather than an orderly FIN
sub _close_rst
{
	my ($sock) = @_;
	setsockopt($sock, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
	close $sock;
}

# The child's loop.  Each forwarded connection is two sockets; what is
# read on one is queued, with the time it may be written, for the other.
# A socket's entry: sock, other (fileno), from (the end that sends on
# it), q (chunks [time, bytes] to write on it), qbytes, closing (write
# the queue, then close).
sub _serve
{
	my ($ends, $routes, $lsn, $ctl) = @_;
	my ($paused, $delay, $cut, $stop) = (0, 0, '', 0);
	$SIG{TERM} = sub { $stop = 1 };
	$SIG{PIPE} = 'IGNORE';
	$_->blocking(0) for @$lsn;
	my %c;
	my $cbuf = '';
	my %route_of = map { (fileno($lsn->[$_]) => $_) } 0 .. $#$lsn;

	my $other_end = sub { return $_[0] eq $ends->[0] ? $ends->[1] : $ends->[0] };
	my $close_pair = sub {
		my ($fd) = @_;
		my $e = delete $c{$fd} or return;
		close $e->{sock};
		my $o = $c{ $e->{other} } or return;
		if (!$o->{qbytes})
		{
			delete $c{ $e->{other} };
			close $o->{sock};
		}
		else
		{
			$o->{closing} = 1;    # write what it was sent, then close
		}
	};
	my $apply = sub {
		my ($cmd, $arg) = @_;
		if ($cmd eq 'pause') { $paused = 1 }
		elsif ($cmd eq 'heal') { ($paused, $delay, $cut) = (0, 0, '') }
		elsif ($cmd eq 'delay') { $delay = ($arg // 0) / 1000 }
		elsif ($cmd eq 'cut') { $cut = $arg // '' }
		elsif ($cmd eq 'drop')
		{
			_close_rst($_->{sock}) for values %c;
			%c = ();
		}
		elsif ($cmd eq 'count') { return 'ok ' . int(keys(%c) / 2) }
		elsif ($cmd ne 'ping') { return "unknown command $cmd" }
		return 'ok';
	};

	while (!$stop)
	{
		my $now = time;
		my $rsel = IO::Select->new($ctl);
		my $wsel = IO::Select->new;
		my $timeout = 0.5;
		if (!$paused)
		{
			$rsel->add($_) for @$lsn;
			for my $fd (keys %c)
			{
				my $e = $c{$fd};
				my $o = $c{ $e->{other} };
				$rsel->add($e->{sock})
				  if !$e->{closing} && $o && !$o->{closing} && $o->{qbytes} < (1 << 20) && $cut ne $e->{from};
				next unless $e->{qbytes} && $cut ne $other_end->($e->{from});
				my $at = $e->{q}[0][0] - $now;
				if ($at <= 0) { $wsel->add($e->{sock}) }
				elsif ($at < $timeout) { $timeout = $at }
			}
		}
		my ($r, $w) = IO::Select->select($rsel, $wsel, undef, $timeout);
		$r //= [];
		$w //= [];
		for my $s (@$r)
		{
			if ($s == $ctl)
			{
				my $n = sysread($ctl, my $chunk, 4096);
				return unless $n;    # the test went away
				$cbuf .= $chunk;
				while ((my $i = index($cbuf, "\n")) >= 0)
				{
					my ($cmd, $arg) = split ' ', substr($cbuf, 0, $i);
					substr($cbuf, 0, $i + 1) = '';
					syswrite($ctl, $apply->($cmd // '', $arg) . "\n");
				}
				next;
			}
		}
		next if $paused;
		$now = time;
		for my $s (@$r)
		{
			next if $s == $ctl;
			my $route = $route_of{ fileno($s) // -1 };
			if (defined $route && $s == $lsn->[$route])
			{
				my $cli = $s->accept or next;
				my $up = IO::Socket::INET->new(
					PeerAddr => '127.0.0.1',
					PeerPort => $routes->[$route]{to},
					Proto => 'tcp');
				if (!$up)
				{
					_close_rst($cli);    # as a refused connection looks
					next;
				}
				$_->blocking(0) for $cli, $up;
				binmode($_) for $cli, $up;
				my $client = $routes->[$route]{client};
				$c{ fileno($cli) } =
				  { sock => $cli, other => fileno($up), from => $client, q => [], qbytes => 0 };
				$c{ fileno($up) } =
				  { sock => $up, other => fileno($cli), from => $other_end->($client), q => [], qbytes => 0 };
				next;
			}
			my $fd = fileno($s);
			next unless defined $fd;
			my $e = $c{$fd} or next;
			next if $e->{sock} != $s;
			my $n = sysread($s, my $buf, 65536);
			if (!defined $n)
			{
				next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
				# a reset: pass it on as one
				my $o = delete $c{ $e->{other} };
				delete $c{$fd};
				close $s;
				_close_rst($o->{sock}) if $o;
			}
			elsif ($n == 0)
			{
				$close_pair->($fd);
			}
			elsif (my $o = $c{ $e->{other} })
			{
				push @{ $o->{q} }, [ $now + $delay, $buf ];
				$o->{qbytes} += $n;
			}
		}
		for my $s (@$w)
		{
			my $fd = fileno($s);
			next unless defined $fd;
			my $e = $c{$fd} or next;
			next if $e->{sock} != $s;
			while (@{ $e->{q} } && $e->{q}[0][0] <= $now)
			{
				my $chunk = $e->{q}[0][1];
				my $n = syswrite($s, $chunk);
				if (!defined $n)
				{
					last if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
					my $o = delete $c{ $e->{other} };
					delete $c{$fd};
					close $s;
					_close_rst($o->{sock}) if $o;
					last;
				}
				$e->{qbytes} -= $n;
				if ($n < length $chunk)
				{
					substr($e->{q}[0][1], 0, $n) = '';
					last;
				}
				shift @{ $e->{q} };
			}
			if ($c{$fd} && !$e->{qbytes} && $e->{closing})
			{
				delete $c{$fd};
				close $s;
			}
		}
	}
	close $_->{sock} for values %c;
	return;
}

1;
