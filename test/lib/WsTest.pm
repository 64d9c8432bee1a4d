# A raw WebSocket client of the stream listener, frame by frame, for the
# checks a real client library would never let us make (unmasked frames,
# reserved bits, lengths beyond any limit).
#
#   my $ws = WsTest->new($port);                  # TCP connected
#   my ($status, $headers, $body) = $ws->upgrade(%extra_headers);
#   $ws->send_frame($opcode, $payload, fin => 0, mask => 0, rsv => 0x40,
#                   length => $declared);
#   my ($fin, $opcode, $payload) = $ws->read_frame($timeout);
#   $ws->send_text_line($line);                   # one masked text frame
#   my $line = $ws->read_line($timeout);          # from data frames
#   my ($code, $reason) = $ws->read_close($timeout);  # skips data frames
#   $ws->wait_closed($timeout);
#
# The key of RFC 6455's example (section 1.3) is used, so its Accept is
# known: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=.
package WsTest;

use strict;
use warnings;

use StreamTest;
use Time::HiRes qw(time);

our $KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
our $ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';

sub new
{
	my ($class, $port) = @_;
	return bless { raw => StreamTest::Raw->new($port), lines => '' }, $class;
}

sub raw { return $_[0]->{raw} }

# Sends the upgrade request (the standard fields, overridden or removed
# (undef) by %h; target => '/path?query'); returns the answer's status
# code, its header fields (lower-case names) and body (what came after the
# head), or an empty list if none came
sub upgrade
{
	my ($self, %h) = @_;
	my $target = delete $h{target} // '/';
	my %f = (
		'Host' => '127.0.0.1',
		'Upgrade' => 'websocket',
		'Connection' => 'Upgrade',
		'Sec-WebSocket-Key' => $KEY,
		'Sec-WebSocket-Version' => '13',
		%h);
	my $req = "GET $target HTTP/1.1\r\n";
	for my $k (sort keys %f)
	{
		$req .= "$k: $f{$k}\r\n" if defined $f{$k};
	}
	$req .= "\r\n";
	$self->{raw}->write_raw($req) or return ();
	my $deadline = time + 30;
	my $r = $self->{raw};
	while (index($r->{buf}, "\r\n\r\n") < 0)
	{
		my $left = $deadline - time;
		return () if $left <= 0 || $r->{eof};
		$r->_fill($left);
	}
	my $end = index($r->{buf}, "\r\n\r\n");
	my $head = substr($r->{buf}, 0, $end);
	substr($r->{buf}, 0, $end + 4) = '';
	my ($status_line, @lines) = split /\r\n/, $head;
	my ($status) = $status_line =~ m{^HTTP/1\.1 (\d+)};
	my %headers;
	for (@lines)
	{
		my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
		$headers{ lc $k } = $v;
	}
	my $body = '';
	if ($status != 101)
	{
		my $deadline2 = time + 10;
		$r->_fill($deadline2 - time) while !$r->{eof} && time < $deadline2;
		$body = $r->{buf};
		$r->{buf} = '';
	}
	return ($status, \%headers, $body);
}

sub send_frame
{
	my ($self, $opcode, $payload, %o) = @_;
	my $fin = $o{fin} // 1;
	my $mask = $o{mask} // 1;
	my $rsv = $o{rsv} // 0;
	my $len = $o{length} // length $payload;
	my $frame = chr(($fin ? 0x80 : 0) | $rsv | $opcode);
	my $m = $mask ? 0x80 : 0;
	if ($len < 126)
	{
		$frame .= chr($m | $len);
	}
	elsif ($len <= 0xFFFF)
	{
		$frame .= chr($m | 126) . pack('n', $len);
	}
	else
	{
		$frame .= chr($m | 127) . pack('NN', int($len / 2**32), $len % 2**32);
	}
	if ($mask)
	{
		my $key = pack('C4', map { int(rand(256)) } 1 .. 4);
		$frame .= $key;
		my $masked = $payload ^ substr($key x (int(length($payload) / 4) + 1), 0, length $payload);
		$frame .= $masked;
	}
	else
	{
		$frame .= $payload;
	}
	return $self->{raw}->write_raw($frame);
}

sub send_text_line
{
	my ($self, $line) = @_;
	return $self->send_frame(1, "$line\n");
}

# The next frame from the server (which must not be masked), or an empty
# list at end of stream or timeout
sub read_frame
{
	my ($self, $timeout) = @_;
	my $r = $self->{raw};
	my $deadline = time + ($timeout // 30);
	while (1)
	{
		my $b = $r->{buf};
		if (length $b >= 2)
		{
			my ($b0, $b1) = unpack('CC', $b);
			my $len = $b1 & 0x7F;
			my $hl = 2;
			if ($len == 126)
			{
				$hl = 4;
				$len = length $b >= 4 ? unpack('n', substr($b, 2, 2)) : undef;
			}
			elsif ($len == 127)
			{
				$hl = 10;
				if (length $b >= 10)
				{
					my ($hi, $lo) = unpack('NN', substr($b, 2, 8));
					$len = $hi * 2**32 + $lo;
				}
				else
				{
					$len = undef;
				}
			}
			die "the server sent a masked frame" if $b1 & 0x80;
			if (defined $len && length $b >= $hl + $len)
			{
				my $payload = substr($b, $hl, $len);
				substr($r->{buf}, 0, $hl + $len) = '';
				return (($b0 & 0x80) ? 1 : 0, $b0 & 0x0F, $payload);
			}
		}
		my $left = $deadline - time;
		return () if $left <= 0 || $r->{eof};
		$r->_fill($left);
	}
}

# The next line carried by data frames (text or binary), or undef
sub read_line
{
	my ($self, $timeout) = @_;
	my $deadline = time + ($timeout // 30);
	while (1)
	{
		my $i = index($self->{lines}, "\n");
		if ($i >= 0)
		{
			my $line = substr($self->{lines}, 0, $i);
			substr($self->{lines}, 0, $i + 1) = '';
			return $line;
		}
		my ($fin, $op, $payload) = $self->read_frame($deadline - time);
		return undef unless defined $op;
		$self->{last_close} = [ $op, $payload ] if $op == 8;
		return undef if $op == 8;
		$self->{lines} .= $payload if $op <= 2;
		$self->{data_opcode} = $op if $op == 1 || $op == 2;
	}
}

# The opcode of the last data message read (1 text, 2 binary)
sub data_opcode { return $_[0]->{data_opcode} }

# The close frame's code and reason (data frames before it skipped), or
# an empty list if none came
sub read_close
{
	my ($self, $timeout) = @_;
	my $deadline = time + ($timeout // 30);
	if ($self->{last_close})
	{
		my $p = $self->{last_close}[1];
		delete $self->{last_close};
		return (length $p >= 2 ? unpack('n', $p) : undef, length $p > 2 ? substr($p, 2) : '');
	}
	while (1)
	{
		my ($fin, $op, $payload) = $self->read_frame($deadline - time);
		return () unless defined $op;
		if ($op == 8)
		{
			return (length $payload >= 2 ? unpack('n', $payload) : undef,
				length $payload > 2 ? substr($payload, 2) : '');
		}
		$self->{lines} .= $payload if $op <= 2;
	}
}

sub wait_closed
{
	my ($self, $timeout) = @_;
	return $self->{raw}->wait_closed($timeout);
}

1;
