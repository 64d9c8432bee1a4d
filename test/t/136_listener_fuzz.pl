# Mutation fuzz of the stream listener: valid traffic (what a reference
# JavaScript client and the server exchange, and updates of each kind made
# from the protocol) is mutated at random and sent over a few hundred
# connections, some at once; then nothing a peer sent may have broken the
# server, the models or another peer:
#
#   - the replication worker never died (same pid; a guard client that
#     stays connected throughout never sees its stream end) and the server
#     never restarted;
#   - the models hold what they held before, plus only valid updates:
#     every stored update is one JSON line of the right shape, with
#     numbers a JavaScript double holds, a timestamp no further ahead of
#     wall clock than scuttlebutt.max_clock_skew (one minute by default),
#     keys and sources of bounded size; every clock entry likewise;
#   - a line longer than max_line_bytes closes its connection;
#   - local set(), emit() and set_value() still work and hand out
#     timestamps near wall clock, before and after a restart;
#   - a reference JavaScript client then syncs every model and holds
#     exactly what the database holds.
#
# The first cases are the weaknesses known when this was written (see
# @anchors); the rest come from a seeded generator that draws every choice
# before the bytes go out, so a seed always sends the same cases: the seed
# is printed, and SB_FUZZ_SEED (or SB_TEST_SEED) replays a run.
# SB_FUZZ_CONNECTIONS (default 300) and SB_FUZZ_SECONDS (default 45) bound
# it.  When the worker dies, the cases sent just before are replayed one at
# a time, and the one that kills it again is printed with the log's reason.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use B ();
use Encode ();
use Errno qw(EAGAIN EINTR EWOULDBLOCK);
use IO::Select;
use IO::Socket::INET;
use Math::BigFloat;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use Socket qw(SOL_SOCKET SO_LINGER SHUT_WR);
use StreamTest;
use Test::More;
use Time::HiRes qw(time usleep);

ok(ScuttlebuttTest::node_available(), 'node.js and the npm packages are installed (npm ci in test/)')
  or BAIL_OUT('node.js or test/node_modules missing: run "npm ci" in test/');
$ENV{PG_TEST_TIMEOUT_DEFAULT} = $PostgreSQL::Test::Utils::timeout_default;

my $seed = $ENV{SB_FUZZ_SEED} // $ENV{SB_TEST_SEED};
$seed = 20261206 unless defined $seed && $seed =~ /^\d+$/;
my $n_cases = $ENV{SB_FUZZ_CONNECTIONS} // 300;
my $budget = $ENV{SB_FUZZ_SECONDS} // 45;
note("fuzz seed $seed (replay with SB_FUZZ_SEED=$seed), at most $n_cases connections in $budget s");

my $started = time;
my $max_line = 256 * 1024;
# what the checks allow: the default max_clock_skew (one minute) plus a
# margin for the time between a check's clock reading and the apply
my $skew_ms = 60_000 + 5_000;
# longest key, event name or source a model may hold (a btree row holds
# about 2.7 kB; the limits the server sets are below this)
my $max_name_bytes = 2048;

my $node = StreamTest::new_node('fuzz',
	conf => "scuttlebutt.max_line_bytes = '256kB'\n" . "scuttlebutt.handshake_timeout = '2s'\n");
my $port = StreamTest::port($node);
sub q1 { StreamTest::q1($node, @_) }

my %kind_of = (kv => 'model', ev => 'events', val => 'value');
my @models = sort keys %kind_of;
my $now_sql = q{(extract(epoch from clock_timestamp()) * 1000)::float8};
my $other_ts = int(time * 1000) - 3_600_000;
q1(qq{
	SELECT scuttlebutt.create_model('kv', 'model');
	SELECT scuttlebutt.create_model('ev', 'events');
	SELECT scuttlebutt.create_model('val', 'value');
	SELECT scuttlebutt.set('kv', 'base' || i, jsonb_build_object('n', i, 's', repeat('é', i), 'a', '[1.5, null, true]'::jsonb))
	  FROM generate_series(1, 20) i;
	SELECT scuttlebutt.apply_update('kv', '[["base_other",{"from":"other"}],$other_ts,"OTHER-NODE"]');
	SELECT scuttlebutt.emit('ev', 'base-ev', jsonb_build_object('n', i)) FROM generate_series(1, 10) i;
	SELECT scuttlebutt.apply_update('ev', '[["base-other",1],$other_ts,"OTHER-NODE"]');
	SELECT scuttlebutt.set_value('val', '{"base": true}');
});
my $node_id = q1('SELECT scuttlebutt.node_id()');

# ---- valid traffic of a reference client, recorded ----
my %traffic;    # model => dir => [lines]
{
	local $ScuttlebuttTest::on_message = sub {
		my ($m) = @_;
		push @{ $traffic{ $m->{model} }{ $m->{dir} } }, $m->{line} if $m->{kind} eq 'traffic';
	};
	ScuttlebuttTest::run_interop($node, 'stream_fuzz.js', $port, 'record', map { "$_:$kind_of{$_}" } @models);
}
my $json = ScuttlebuttTest::json_codec()->utf8;    # bytes in and out
for my $m (@models)
{
	ok(@{ $traffic{$m}{c2s} // [] } >= 4 && @{ $traffic{$m}{s2c} // [] } >= 3,
		"$m: a reference client's traffic was recorded");
}

# ---- what must survive ----
sub history_lines
{
	my ($model) = @_;
	# textsend(): the bytes as stored, even if they are not valid UTF-8
	my ($ret, $hex, $err) = $node->psql('postgres',
		qq{SELECT string_agg(encode(textsend(h::text), 'hex'), ',' ORDER BY h::text) FROM scuttlebutt.history('$model') h});
	return (undef, "history('$model') failed: $err") if $ret != 0;
	return ([ map { pack('H*', $_) } grep { $_ ne '' } split /,/, $hex ]);
}

my %before = map { ($_ => (history_lines($_))[0]) } @models;
my %base_kv = map { my $u = $json->decode($_); ($u->[0][0] => $_) } grep { /^\[\["base/ } @{ $before{kv} };
is(scalar(keys %base_kv), 21, 'kv holds the 21 base keys');
my $worker_pid = StreamTest::worker_pid($node);
like($worker_pid, qr/^\d+$/, 'the replication worker runs');
my $pm_start = q1('SELECT pg_postmaster_start_time()');
my $log_start = -s $node->logfile;

# A guard client stays connected to kv throughout: if its stream ends, the
# worker died.
my $guard;
sub connect_guard
{
	$guard = StreamTest::Raw->new($port);
	my ($h) = $guard->handshake('kv', id => 'GUARD');
	return defined $h;
}
ok(connect_guard(), 'the guard client is connected');

# Drops what the guard received; false once its stream has ended.
sub guard_alive
{
	1 while $guard->_fill(0);
	$guard->{buf} = '';
	return !$guard->{eof};
}

# ---- the seeded generator (mulberry32, as the interop scripts use) ----
my $state = $seed & 0xffffffff;
sub imul
{
	my ($a, $b) = @_;
	return (($a & 0xffff) * $b + (((($a >> 16) * $b) & 0xffff) << 16)) & 0xffffffff;
}
sub rnd
{
	$state = ($state + 0x6d2b79f5) & 0xffffffff;
	my $t = $state;
	$t = imul($t ^ ($t >> 15), $t | 1);
	$t = ($t ^ (($t + imul($t ^ ($t >> 7), $t | 61)) & 0xffffffff)) & 0xffffffff;
	return (($t ^ ($t >> 14)) & 0xffffffff) / 4294967296;
}
sub rint { my ($n) = @_; return int(rnd() * $n) }
sub pick { return $_[ rint(scalar @_) ] }
sub chance { my ($p) = @_; return rnd() < $p }

# a JSON string literal of a byte string (bytes >= 0x80 as they are)
sub jstr
{
	my ($s) = @_;
	$s =~ s/(["\\])/\\$1/g;
	$s =~ s/([\x00-\x1f])/sprintf('\\u%04x', ord $1)/ge;
	return qq("$s");
}

sub now_ms { return int(time * 1000) }

# values seen in the recorded traffic (JSON text), plus a few plain ones
my @value_pool = ('1', '"v"', 'null', 'true', '{"a":[1,2,{"b":"c"}]}', '-1.5e-300', '"é😀"');
for my $m (@models)
{
	for my $line (@{ $traffic{$m}{c2s} })
	{
		next unless $line =~ /^\[/;
		my $u = eval { $json->decode($line) } or next;
		my $v = $kind_of{$m} eq 'value' ? $u->[0] : $u->[0][1];
		push @value_pool, $json->canonical->encode([$v]) =~ s/^\[(.*)\]$/$1/sr;
	}
}

my @bad_numbers = (
	'1e400', '-1e400', '1.7976931348623157e308', '1.79e308', '1.8e308', '1e+308', '-1.7976931348623157e308',
	'1E999999999', '1e99999', '1' . ('0' x 400), '123456789' x 40, '-0', '5e-324', '1e-400', '0.' . ('0' x 400) . '1',
	'0', '-1', '1e15', '8.64e15', '9007199254740993', 'NaN', 'Infinity', '-Infinity', 'nan', '"NaN"', 'null',
	'true', '[]', '{}', '"1795477184259"', '1.0e', '--1', '01', '.5', '1.', '+1', '0x10', '1e', ' 1 ');
# timestamps ahead of wall clock by these many ms: all but the first beyond
# max_clock_skew
my @ahead_ms = (30_000, 120_000, 3_600_000, 86_400_000, 365.25 * 86_400_000, 1000 * 365.25 * 86_400_000);
my @bad_utf8 = ("\xff", "\xfe\xff", "\xc0\x80", "\xc3", "\xe2\x82", "\xed\xa0\x80", "\xf4\x90\x80\x80",
	"\xf8\x88\x80\x80\x80", "\x80", "\xc3\x28");
my @escapes = ('\\u0000', '\\ud800', '\\udfff', '\\ud800\\u0041', '\\udc00\\ud800', '\\ud83d\\ude00', '\\u2028',
	'\\u001f', '\\/', '\\x41', '\\u12', '\\');
my @structural = ('[', ']', '{', '}', '"', ',', ':', '\\', "\n", ' ', "\r", "\t", '0', '-', 'e');

# ---- a case: one connection's lines, mutated ----
#
# An update is kept as its parts (JSON texts) until the field mutations are
# done, then rendered; byte mutations work on the rendered lines.
sub render_update
{
	my ($u) = @_;
	my $change = $u->{kind} eq 'value' ? $u->{value} : "[$u->{key},$u->{value}]";
	return "[$change,$u->{ts},$u->{src}]";
}

sub render_header
{
	my ($h) = @_;
	return '{' . join(',', map { qq("$_":$h->{$_}) } grep { defined $h->{$_} } qw(id clock meta)) . '}';
}

sub nested
{
	my ($depth, $closed) = @_;
	my $how = rint(3);
	return ('[' x $depth) . ($closed ? (']' x $depth) : '') if $how == 0;
	return ('{"a":' x $depth) . ($closed ? ('1' . ('}' x $depth)) : '') if $how == 1;
	return ('[{"a":' x ($depth / 2)) . ($closed ? ('1' . ('}]' x ($depth / 2))) : '');
}

sub long_string
{
	my ($len) = @_;
	my $unit = pick('k', 'é', '😀', 'ab"c', '\\n', ' ');
	my $s = $unit x int($len / length($unit) + 1);
	return substr($s, 0, $len);
}

sub new_case
{
	my ($n) = @_;
	my $model = pick(@models);
	my $kind = $kind_of{$model};
	my $src = chance(0.7) ? "FZ$n" : pick($node_id, 'FZ' . rint($n + 1), "FZREC-$kind", 'OTHER-NODE');
	my $base = now_ms() - 2_000;
	my $case = {
		n => $n,
		model => $model,
		kind => $kind,
		ops => [],
		end => 'fin',
		header => { id => jstr("FZ$n"), clock => '{}', meta => jstr($model) },
		updates => [],
		tail => [],
	};
	# a clock naming what the model already holds, sometimes
	$case->{header}{clock} = qq({"$node_id":9e15,"FZREC-$kind":9e15}) if chance(0.2);
	my $count = chance(0.1) ? 50 + rint(250) : 1 + rint(6);
	for my $i (0 .. $count - 1)
	{
		push @{ $case->{updates} },
		  {
			kind => $kind,
			key => jstr(($kind eq 'events' ? 'f-ev' : 'f_') . "${n}_$i"),
			value => pick(@value_pool),
			ts => sprintf('%.3f', $base + $i + rint(1000) / 1000),
			src => jstr($src),
		  };
	}
	# the recorded client's own lines, as sent (old: dropped) or re-sourced
	for my $recorded (grep { /^\[/ } @{ $traffic{$model}{c2s} })
	{
		next unless chance(0.3);
		my $line = $recorded;
		$line =~ s/"FZREC-\Q$kind\E"\]$/"FZ$n"]/ if chance(0.5);
		push @{ $case->{tail} }, $line;
	}
	# the recorded client's header, sometimes
	($case->{raw_header}) = grep { /^\{/ } @{ $traffic{$model}{c2s} } if chance(0.15);
	return $case;
}

sub field_target
{
	my ($case) = @_;
	my $u = pick(@{ $case->{updates} });
	return ($u, pick($u->{kind} eq 'value' ? qw(value ts src) : qw(key value ts src)));
}

# Mutations of the parts, by name: each changes $case and says what it did.
my %field_ops = (
	bad_number => sub {
		my ($c) = @_;
		my $u = pick(@{ $c->{updates} });
		my $f = pick('ts', 'ts', 'value');
		$u->{$f} = pick(@bad_numbers);
		$u->{$f} = "[$u->{$f}]" if $f eq 'value' && chance(0.5);
		$u->{src} = jstr($node_id) if chance(0.3);
		return "$f=" . substr($u->{$f}, 0, 40) . ($u->{src} eq jstr($node_id) ? ' (own source)' : '');
	},
	future_ts => sub {
		my ($c) = @_;
		my $u = pick(@{ $c->{updates} });
		my $ahead = pick(@ahead_ms);
		$u->{ts} = sprintf('%.0f', now_ms() + $ahead);
		$u->{src} = jstr($node_id) if chance(0.5);
		return "ts=now+${ahead}ms" . ($u->{src} eq jstr($node_id) ? ' (own source)' : '');
	},
	huge_number_value => sub {
		my ($c) = @_;
		my $u = pick(@{ $c->{updates} });
		my $r = rint(3);
		$u->{value} =
			$r == 0 ? '[' . join(',', ('1e99999') x 20) . ']'
		  : $r == 1 ? '{"x":1e400,"y":[1.7976931348623157e309]}'
		  :           '[' . join(',', ('1.7976931348623157e308') x 50) . ',1e309]';
		return 'value=' . substr($u->{value}, 0, 40);
	},
	deep_nesting => sub {
		my ($c) = @_;
		my $depth = pick(64, 500, 1000, 3000, 10_000, 50_000, 100_000);
		my $closed = chance(0.6);
		my $where = pick('value', 'value', 'clock', 'meta', 'line');
		if ($where eq 'clock' || $where eq 'meta')
		{
			$c->{header}{$where} = nested($depth, $closed);
		}
		elsif ($where eq 'line')
		{
			push @{ $c->{tail} }, nested($depth, $closed);
		}
		else
		{
			pick(@{ $c->{updates} })->{value} = nested($depth, $closed);
		}
		return "depth $depth in $where" . ($closed ? '' : ' (never closed)');
	},
	long_string => sub {
		my ($c) = @_;
		my ($u, $f) = field_target($c);
		my $len = pick(1000, 2700, 3000, 10_000, 100_000, $max_line + 1000);
		$f = 'value' if $f eq 'ts';
		if (chance(0.2))
		{
			$f = pick('id', 'meta', 'clock');
			$c->{header}{$f} = $f eq 'clock' ? '{' . jstr(long_string($len)) . ':1}' : jstr(long_string($len));
		}
		else
		{
			$u->{$f} = jstr(long_string($len));
		}
		return "$f of $len bytes";
	},
	bad_utf8 => sub {
		my ($c) = @_;
		my ($u, $f) = field_target($c);
		$f = 'key' if $f eq 'ts';
		my $bad = pick(@bad_utf8);
		$u->{$f} = '"x' . $bad . 'y"';
		return sprintf('%s with bytes %s', $f, unpack('H*', $bad));
	},
	nul => sub {
		my ($c) = @_;
		my ($u, $f) = field_target($c);
		$f = 'value' if $f eq 'ts';
		if (chance(0.5))
		{
			$u->{$f} = qq("a\x00b");
			return "raw NUL byte in $f";
		}
		$u->{$f} = '"a\\u0000b"';
		return "\\u0000 in $f";
	},
	escapes => sub {
		my ($c) = @_;
		my ($u, $f) = field_target($c);
		$f = 'src' if $f eq 'ts';
		my $e = pick(@escapes);
		$u->{$f} = qq("a${e}b");
		return "$f=\"a${e}b\"";
	},
	# names of Object.prototype's members only in the header: the reference
	# client cannot hold an event named "toString", nor list an update of a
	# source named so in its history
	proto => sub {
		my ($c) = @_;
		my $f = pick('key', 'src', 'id', 'clock');
		my $name = $f =~ /^(key|src)$/ ? pick('__proto__', '') : pick('__proto__', 'constructor', 'toString', 'hasOwnProperty', '');
		if ($f eq 'id') { $c->{header}{id} = jstr($name) }
		elsif ($f eq 'clock') { $c->{header}{clock} = '{' . jstr($name) . ':1}' }
		else { pick(@{ $c->{updates} })->{$f} = jstr($name) }
		return "$f=\"$name\"";
	},
	bad_header => sub {
		my ($c) = @_;
		my $h = $c->{header};
		my $r = rint(14);
		my @what = (
			sub { delete $h->{clock}; 'no clock' },
			sub { $h->{clock} = pick('null', '[]', '"x"', '1', 'true'); "clock=$h->{clock}" },
			sub { $h->{clock} = '{"a":' . pick('1e400', 'NaN', '"b"', 'null', '[]', '-1e308', '1e15') . '}'; "clock=$h->{clock}" },
			sub { $h->{clock} = '{' . join(',', map { qq("S$_":$_) } 1 .. 5000) . '}'; 'clock of 5000 sources' },
			sub { $h->{meta} = jstr('no_such_model'); 'unknown model' },
			sub { $h->{meta} = jstr(pick(grep { $_ ne $c->{model} } @models)); 'another kind\'s model' },
			sub { $h->{meta} = pick('1', 'null', '["kv"]', '{"m":"kv"}'); "meta=$h->{meta}" },
			sub { delete $h->{meta}; 'no meta' },
			sub { $h->{id} = pick('1', 'null', '[]', '{}'); "id=$h->{id}" },
			sub { delete $h->{id}; 'no id' },
			sub { $c->{raw_header} = pick('"SYNC"', '[]', 'null', '{}', '1', '""', 'true'); "header line $c->{raw_header}" },
			sub { $c->{no_header} = 1; 'no header (updates first)' },
			sub { $c->{second_header} = 1; 'a second header' },
			sub {
				$c->{raw_header} = qq({"id":"a","id":"FZ$c->{n}","clock":{},"clock":{"x":1},"meta":"ev","meta":"$c->{model}"});
				'duplicate header keys';
			},
		);
		return $what[$r]->();
	},
	cross_kind => sub {
		my ($c) = @_;
		my $other = pick(grep { $_ ne $c->{model} } @models);
		$c->{header}{meta} = jstr($other);
		return "updates of a $c->{kind} sent to $other ($kind_of{$other})";
	},
	many_updates => sub {
		my ($c) = @_;
		my $last = $c->{updates}[-1];
		for my $i (1 .. 300)
		{
			push @{ $c->{updates} }, { %$last, key => jstr("f_$c->{n}_many$i"), ts => sprintf('%.3f', $last->{ts} + $i) };
		}
		return '300 more updates';
	},
	old_and_duplicate_ts => sub {
		my ($c) = @_;
		my $u = $c->{updates}[0];
		push @{ $c->{updates} }, { %$u }, { %$u, ts => $u->{ts} - 1 }, { %$u, value => '"other"' };
		return 'the same update again, an older one, the same timestamp with another value';
	},
);

# Byte mutations of the rendered lines.
my %line_ops = (
	flip => sub {
		my ($lines) = @_;
		my $i = rint(scalar @$lines);
		return 'none' unless length $lines->[$i];
		my $p = rint(length $lines->[$i]);
		my $bit = 1 << rint(8);
		substr($lines->[$i], $p, 1) = chr(ord(substr($lines->[$i], $p, 1)) ^ $bit);
		return "line $i byte $p ^ $bit";
	},
	insert => sub {
		my ($lines) = @_;
		my @did;
		for (1 .. 1 + rint(3))
		{
			my $i = rint(scalar @$lines);
			my $p = rint(length($lines->[$i]) + 1);
			my $ch = pick(@structural);
			substr($lines->[$i], $p, 0) = $ch;
			push @did, sprintf('%s at %d:%d', $ch =~ /[\r\n\t ]/ ? sprintf('\\x%02x', ord $ch) : $ch, $i, $p);
		}
		return join(' ', @did);
	},
	truncate_line => sub {
		my ($lines) = @_;
		my $i = rint(scalar @$lines);
		my $p = rint(length($lines->[$i]) + 1);
		substr($lines->[$i], $p) = '';
		return "line $i cut at $p";
	},
	duplicate => sub {
		my ($lines) = @_;
		my $i = rint(scalar @$lines);
		my $k = length($lines->[$i]) > 10_000 ? 2 : pick(2, 3, 10, 50);
		splice(@$lines, $i, 1, ($lines->[$i]) x $k);
		return "line $i x $k";
	},
	splice => sub {
		my ($lines) = @_;
		my ($i, $j) = (rint(scalar @$lines), rint(scalar @$lines));
		my ($p, $q) = (rint(length($lines->[$i]) + 1), rint(length($lines->[$j]) + 1));
		$lines->[$i] = substr($lines->[$i], 0, $p) . substr($lines->[$j], $q);
		return "line $i [0,$p) + line $j [$q,)";
	},
	delete_range => sub {
		my ($lines) = @_;
		my $i = rint(scalar @$lines);
		my $p = rint(length($lines->[$i]) + 1);
		substr($lines->[$i], $p, 1 + rint(8)) = '';
		return "bytes deleted in line $i at $p";
	},
	swap => sub {
		my ($lines) = @_;
		my ($i, $j) = (rint(scalar @$lines), rint(scalar @$lines));
		@$lines[ $i, $j ] = @$lines[ $j, $i ];
		return "lines $i and $j swapped";
	},
	raw_bytes => sub {
		my ($lines) = @_;
		my $i = rint(scalar @$lines);
		my $b = pick(@bad_utf8, "\x00", "\x00\x00\x00", "\x7f", "\xef\xbb\xbf");
		substr($lines->[$i], rint(length($lines->[$i]) + 1), 0) = $b;
		return sprintf('bytes %s in line %d', unpack('H*', $b), $i);
	},
	empty_lines => sub {
		my ($lines) = @_;
		splice(@$lines, rint(scalar @$lines + 1), 0, pick('', ' ', "\r", "\t", '   '));
		return 'an empty line';
	},
);

my @field_names = sort keys %field_ops;
my @line_names = sort keys %line_ops;
# framing and the end of the connection
my @framings = qw(lf lf lf crlf no_final_newline cut_mid_stream trickle bom mux);
my @ends = qw(fin fin fin rst half_close keep_open);

# The weaknesses known when this test was written, as the first cases
# (valid traffic with one known-bad part each): a model clock pushed to the
# largest double, to the year 33658 or to a year ahead under this node's
# own source; 100,000 "["; numbers beyond a double; a key the index
# cannot hold.
my @anchors = (
	[ kv => sub { $_[0]{updates}[0]{ts} = '1.7976931348623157e308'; $_[0]{updates}[0]{src} = jstr($node_id); 'ts 1.79e308, own source' } ],
	[ ev => sub { $_[0]{updates}[0]{ts} = '1e15'; $_[0]{updates}[0]{src} = jstr($node_id); 'ts 1e15, own source' } ],
	[ val => sub { $_[0]{updates}[-1]{ts} = sprintf('%.0f', now_ms() + 365.25 * 86_400_000); $_[0]{updates}[-1]{src} = jstr($node_id); 'ts a year ahead, own source' } ],
	[ kv => sub { push @{ $_[0]{tail} }, '[' x 100_000; '100,000 [' } ],
	[ ev => sub { $_[0]{updates}[0]{value} = '[1e400,-1e400,1e99999]'; 'numbers beyond a double' } ],
	[ kv => sub { $_[0]{updates}[0]{key} = jstr('k' x 3000); 'a key of 3,000 bytes' } ],
);

# Builds case $n: lines, mutations, framing and how it ends.  Every field
# and line mutation comes up in turn, so each is tried about equally often.
sub build_case
{
	my ($n) = @_;
	if ($n < @anchors)
	{
		my ($model, $how) = @{ $anchors[$n] };
		my $c;
		$c = new_case($n) until $c && $c->{model} eq $model;
		$c->{raw_header} = undef;
		my $did = $how->($c);
		$c->{data} = join('', map { "$_\n" } render_header($c->{header}), (map { render_update($_) } @{ $c->{updates} }),
			'"SYNC"', @{ $c->{tail} });
		$c->{framing} = 'lf';
		$c->{end} = 'fin';
		$c->{desc} = sprintf('#%d %s (%s), a known weakness: %s, %d bytes', $n, $model, $c->{kind}, $did, length $c->{data});
		return $c;
	}
	my $c = new_case($n);
	my @ops;
	my $field = $field_names[ $n % @field_names ];
	push @ops, "$field: " . $field_ops{$field}->($c);
	if (chance(0.3))
	{
		my $f = pick(@field_names);
		push @ops, "$f: " . $field_ops{$f}->($c);
	}
	my @updates = map { render_update($_) } @{ $c->{updates} };
	my $header = $c->{raw_header} // render_header($c->{header});
	my @lines;
	if ($c->{no_header}) { @lines = (@updates, '"SYNC"', $header) }
	else
	{
		my $cut = rint(scalar @updates + 1);
		@lines = ($header, @updates[ 0 .. $cut - 1 ], '"SYNC"', @updates[ $cut .. $#updates ]);
		push @lines, $header if $c->{second_header};
	}
	push @lines, @{ $c->{tail} };
	my $n_line_ops = chance(0.5) ? 0 : 1 + rint(2);
	for (1 .. $n_line_ops)
	{
		my $op = $line_names[ ($n + $_) % @line_names ];
		$op = pick(@line_names) if $_ > 1;
		push @ops, "$op: " . $line_ops{$op}->(\@lines);
	}
	my $framing = pick(@framings);
	my $data;
	if ($framing eq 'crlf') { $data = join('', map { "$_\r\n" } @lines) }
	else { $data = join('', map { "$_\n" } @lines) }
	$data = "\xef\xbb\xbf$data" if $framing eq 'bom';
	chop $data if $framing eq 'no_final_newline';
	substr($data, rint(length $data)) = '' if $framing eq 'cut_mid_stream';
	if ($framing eq 'mux')
	{
		# the same lines as the data of a mux-demux sub-stream, 1 to 4 a
		# frame, sometimes ended: a line over the limit ends the
		# sub-stream alone, so the connection is not waited on
		my $id = jstr("fz$n");
		$data = qq([$id,"new",{"meta":${\ jstr($c->{model}) },"opts":{}}]\n);
		my @rest = @lines;
		while (@rest)
		{
			my @chunk = splice(@rest, 0, 1 + rint(4));
			$data .= qq([$id,"data",${\ jstr(join('', map { "$_\n" } @chunk)) }]\n);
		}
		$data .= qq([$id,"end"]\n) if chance(0.5);
		$c->{framing} = $framing;
		$c->{end} = pick(@ends);
		$c->{trickle} = [];
		$c->{data} = $data;
		$c->{desc} = sprintf('#%d %s (%s) src-mix %s, %d lines, %d bytes, %s, end %s; %s',
			$n, $c->{model}, $c->{kind}, $c->{updates}[0]{src}, scalar(@lines), length($data), $framing,
			$c->{end}, join('; ', @ops));
		return $c;
	}
	# the first line may take max_header_bytes (8 MB), the others
	# max_line_bytes
	$c->{over_limit} = 1 if grep { length($_) > $max_line } @lines[ 1 .. $#lines ];
	# a line over the limit: the server must close; a fixed peer waits
	# for that
	my @sent_lines = split /\n/, $data;
	$c->{over_limit} = 0
	  if $framing eq 'cut_mid_stream' && !grep { length($_) > $max_line } @sent_lines[ 1 .. $#sent_lines ];
	$c->{end} = $c->{over_limit} ? 'wait_close' : pick(@ends);
	$c->{framing} = $framing;
	# the first bytes of a trickle case go in writes of 1 to 7 bytes (drawn
	# here: what the generator draws must not depend on timing)
	$c->{trickle} = $framing eq 'trickle' ? [ map { 1 + rint(7) } 1 .. 64 ] : [];
	$c->{data} = $data;
	$c->{desc} = sprintf('#%d %s (%s) src-mix %s, %d lines, %d bytes, %s, end %s; %s',
		$n, $c->{model}, $c->{kind}, $c->{updates}[0]{src}, scalar(@lines), length($data), $framing, $c->{end},
		join('; ', @ops));
	return $c;
}

# What a case sent, for a failure report: its description and the start
# of its bytes, escaped.
sub show_case
{
	my ($c) = @_;
	my $head = substr($c->{data}, 0, 600);
	$head =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge;
	return "$c->{desc}\n    sent: $head" . (length($c->{data}) > 600 ? '...' : '') . "\n    result: "
	  . ($c->{result} // 'none');
}

# ---- running a batch of cases, each on its own connection, at once ----
sub run_batch
{
	my @cases = @_;
	my (%by_fd, $rsel, $wsel);
	$rsel = IO::Select->new;
	$wsel = IO::Select->new;
	for my $c (@cases)
	{
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp');
		if (!$s)
		{
			$c->{result} = "connect failed: $!";
			next;
		}
		binmode($s);
		$s->blocking(0);
		$c->{sock} = $s;
		$c->{off} = 0;
		$c->{next_write} = 0;
		$by_fd{ fileno $s } = $c;
		$rsel->add($s);
		$wsel->add($s);
	}
	my $deadline = time + 5;
	while ($rsel->count && time < $deadline)
	{
		my ($r, $w) = IO::Select->select($rsel, $wsel->count ? $wsel : undef, undef, 0.02);
		for my $s (@{ $r // [] })
		{
			my $c = $by_fd{ fileno $s };
			my $got = sysread($s, my $buf, 65536);
			next if !defined $got && ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR);
			$c->{received} += $got // 0;
			if (!$got)
			{
				$c->{server_closed} = defined $got ? 'closed' : "read error: $!";
				$rsel->remove($s);
				$wsel->remove($s);
			}
		}
		my $now = time;
		for my $s (@{ $w // [] })
		{
			my $c = $by_fd{ fileno $s };
			next if $c->{off} >= length $c->{data} || $now < $c->{next_write};
			my $len = length($c->{data}) - $c->{off};
			if ($c->{framing} eq 'trickle' && @{ $c->{trickle} })
			{
				$len = shift @{ $c->{trickle} };
				$c->{next_write} = $now + 0.001;
			}
			my $wrote = syswrite($s, $c->{data}, $len, $c->{off});
			if (!defined $wrote)
			{
				next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
				$c->{write_error} = "$!";
				$c->{off} = length $c->{data};
			}
			else { $c->{off} += $wrote }
		}
		# ends of the cases that have sent everything
		for my $c (@cases)
		{
			my $s = $c->{sock} or next;
			next if $c->{ended} || $c->{off} < length $c->{data};
			$wsel->remove($s);
			$c->{ended} = 1;
			if ($c->{end} eq 'fin' || $c->{end} eq 'rst')
			{
				setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) if $c->{end} eq 'rst';
				$rsel->remove($s);
				close($s);
			}
			elsif ($c->{end} eq 'half_close')
			{
				shutdown($s, SHUT_WR);
			}
		}
		# the rest wait for the server to close (or the deadline); a
		# keep_open case needs no answer
		last unless grep { $_->{sock} && !$_->{server_closed} && $_->{end} ne 'keep_open' && $_->{sock}->opened } @cases;
	}
	for my $c (@cases)
	{
		my $s = $c->{sock} or next;
		$c->{result} //= join(', ',
			"sent $c->{off} of " . length($c->{data}),
			'received ' . ($c->{received} // 0),
			$c->{write_error} ? "write error: $c->{write_error}" : (),
			$c->{server_closed} ? "server: $c->{server_closed}" : ());
		close($s) if $s->opened;
		delete $c->{sock};
	}
}

# ---- the fuzz ----
my (@deaths, @window, $n, $over_limit_open, $over_limit_cases);
$n = 0;

# Waits for the postmaster to start a new worker and reconnects the guard.
sub worker_back
{
	my $back = StreamTest::poll($node,
		qq{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'scuttlebutt replication worker'}, 30);
	for (1 .. 50)
	{
		return 1 if $back && eval { connect_guard() };
		usleep(100_000);
	}
	return 0;
}

# The worker's last words in the log since $off
sub log_errors
{
	my ($off) = @_;
	my @why = grep { /FATAL|PANIC|ERROR|terminated|exited with|out of memory/ }
	  split /\n/, StreamTest::log_since($node, $off);
	return @why[ 0 .. ($#why < 5 ? $#why : 5) ];
}

# The worker died after the cases of @window were sent: replays each alone,
# in order, until one kills the worker again, and reports it (or all of
# them, when none does alone).
sub report_death
{
	my ($after, $off) = @_;
	my @first_words = log_errors($off);
	my @cases = map { @{ $_->{cases} } } @window;
	@window = ();
	return 0 unless worker_back();
	for my $c (@cases)
	{
		my $roff = -s $node->logfile;
		my %again = map { ($_ => $c->{$_}) } qw(n model kind data framing end over_limit desc);
		$again{trickle} = [ (3) x 64 ];
		run_batch(\%again);
		usleep(300_000);
		next if guard_alive();
		push @deaths, sprintf("the worker died (after case #%d); case #%d kills it alone:\n  %s\n  log:\n    %s",
			$after, $c->{n}, show_case(\%again), join("\n    ", log_errors($roff)));
		diag($deaths[-1]);
		return worker_back();
	}
	# what is stored may be what kills it: a new client of each model
	for my $m (@models)
	{
		my $roff = -s $node->logfile;
		my $raw = StreamTest::Raw->new($port);
		my ($h) = $raw->handshake($m, id => 'FRESH');
		usleep(300_000);
		$raw->close_fin;
		next if guard_alive();
		push @deaths, sprintf("the worker died (after case #%d); a new client of %s (empty clock) kills it again: "
			  . "what the model holds cannot be sent\n  log:\n    %s\n  cases sent just before the first death:\n  %s",
			$after, $m, join("\n    ", log_errors($roff)), join("\n  ", map { show_case($_) } @cases));
		diag($deaths[-1]);
		return worker_back();
	}
	push @deaths, sprintf("the worker died after case #%d; no case of the last batches kills it alone\n  log:\n    %s\n  cases:\n  %s",
		$after, join("\n    ", @first_words), join("\n  ", map { show_case($_) } @cases));
	diag($deaths[-1]);
	return 1;
}

my $fuzz_start = time;
my $stopped_early = 0;
while ($n < $n_cases)
{
	if (time - $fuzz_start > $budget)
	{
		$stopped_early = 1;
		last;
	}
	my $size = 1 + rint(4);
	$size = $n_cases - $n if $n + $size > $n_cases;
	my @cases = map { build_case($n + $_) } 0 .. $size - 1;
	note(substr($_->{desc}, 0, 300)) for @cases;
	$n += $size;
	push @window, { cases => \@cases, log_off => -s $node->logfile };
	shift @window while @window > 4;
	run_batch(@cases);
	for my $c (@cases)
	{
		$over_limit_cases++ if $c->{over_limit};
		$over_limit_open .= show_case($c) . "\n"
		  if $c->{over_limit} && !$c->{server_closed} && !$c->{write_error} && ($c->{result} // '') !~ /connect failed/;
	}
	# the worker handles input after we sent it: a death shows on the
	# guard's stream (or as a refused connection) a batch or two later
	next if guard_alive() && !grep { ($_->{result} // '') =~ /connect failed/ } @cases;
	usleep(200_000);
	last unless report_death($n - 1, $window[0]{log_off});
}
my $fuzz_seconds = time - $fuzz_start;
note(sprintf('fuzz: %d connections in %.1f s%s', $n, $fuzz_seconds,
	$stopped_early ? ' (stopped at the time budget)' : ''));
ok($n >= 50, "at least 50 connections were fuzzed ($n)");
# let the worker finish what it received
usleep(500_000);
report_death($n - 1, $window[0]{log_off}) unless guard_alive();
my $alive = guard_alive();

# ---- nothing broke the worker or the server ----
is(scalar(@deaths), 0, 'the worker never died during the fuzz')
  or diag("seed $seed: the worker died " . scalar(@deaths) . " time(s); see the diagnostics above");
is(StreamTest::worker_pid($node), $worker_pid, 'the worker\'s pid is unchanged');
is(q1('SELECT pg_postmaster_start_time()'), $pm_start, 'the server did not restart');
my $log = StreamTest::log_since($node, $log_start);
my @crashes = grep { /terminated by signal|PANIC|all server processes terminated|was terminated by/ } split /\n/, $log;
is(scalar(@crashes), 0, 'no crash or crash-restart in the log') or diag(join("\n", @crashes[ 0 .. ($#crashes < 9 ? $#crashes : 9) ]));
is($over_limit_open // '', '',
	'every connection that sent a line over max_line_bytes was closed by the server (' . ($over_limit_cases // 0) . ' connections)');

# the guard (a good peer) was not disturbed and still replicates
# (written as a remote update: local writes are checked on their own below)
q1(sprintf(q{SELECT scuttlebutt.apply_update('kv', '[["probe_after_fuzz",1],%d,"PROBE"]')}, now_ms()));
ok($alive && defined $guard->read_until(qr/"probe_after_fuzz"/, 20), 'the guard client still gets live updates');

# ---- the models: what was there is there, and only valid updates were added ----
# Stored updates are decoded with every number kept exact (Math::BigInt
# or Math::BigFloat), so that one beyond a double shows as such.
my $exact = ScuttlebuttTest::json_codec()->utf8->allow_bignum->max_depth(20_000);
my $max_double = Math::BigFloat->new('1.7976931348623157e308');
sub finite { my ($x) = @_; return $x == $x && abs($x) < 9**9**9 }

sub beyond_double
{
	my ($x) = @_;
	return ref($x) =~ /^Math::Big/ ? $x->copy->babs->bcmp($max_double) > 0 : !finite($x);
}

# The first number beyond a double in a decoded value (walked without
# recursion: values may be deep), or undef
sub number_beyond_double
{
	my @todo = @_;
	while (@todo)
	{
		my $v = pop @todo;
		if (ref $v eq 'ARRAY') { push @todo, @$v }
		elsif (ref $v eq 'HASH') { push @todo, values %$v }
		elsif (ref($v) =~ /^Math::Big/ && beyond_double($v)) { return $v }
	}
	return undef;
}

# Why an update (wire text) of a model of $kind is not a valid update, or
# undef when it is.
sub invalid_update
{
	my ($kind, $line, $limit_ms) = @_;
	return 'contains a newline' if $line =~ /\n/;
	my $chars = $line;
	return 'not valid UTF-8' unless eval { Encode::decode('UTF-8', $chars, Encode::FB_CROAK); 1 };
	my $u = eval { $exact->decode($line) };
	return "not JSON (or nested deeper than 20,000): $@" unless $u;
	return 'not an array of 3 or 4' unless ref $u eq 'ARRAY' && (@$u == 3 || @$u == 4);
	my ($change, $ts, $src) = @$u;
	return 'source not a string' if ref $src || !defined $src;
	return 'source "__proto__"' if $src eq '__proto__';
	return 'source of ' . length($src) . ' bytes' if length($src) > $max_name_bytes;
	return 'timestamp not a number'
	  unless ref($ts) =~ /^Math::Big/ || (!ref $ts && defined $ts && B::svref_2object(\$ts)->FLAGS & (B::SVf_IOK | B::SVf_NOK));
	return 'timestamp beyond a double' if beyond_double($ts);
	$ts = ref $ts ? $ts->numify : $ts;
	return sprintf('timestamp %.17g is %.3g s ahead of wall clock', $ts, ($ts - $limit_ms + $skew_ms) / 1000)
	  if $ts > $limit_ms;
	my $big = number_beyond_double($change);
	return 'a number beyond a double: ' . substr($big->bsstr, 0, 40) if defined $big;
	if ($kind ne 'value')
	{
		return 'change not [name, data]' unless ref $change eq 'ARRAY' && @$change == 2 && !ref $change->[0];
		return 'name "__proto__"' if $change->[0] eq '__proto__';
		return 'name of ' . length($change->[0]) . ' bytes' if length($change->[0]) > $max_name_bytes;
	}
	return undef;
}

my $limit_ms = now_ms() + $skew_ms;
my %after;
for my $m (@models)
{
	my ($lines, $err) = history_lines($m);
	ok(defined $lines, "$m: history() can be read") or diag($err);
	$after{$m} = $lines // [];
	my @bad = grep { defined $_->[1] } map { [ $_, invalid_update($kind_of{$m}, $_, $limit_ms) ] } @{ $after{$m} };
	is(scalar(@bad), 0, "$m: every stored update is valid (" . scalar(@{ $after{$m} }) . ' updates)')
	  or diag(join("\n", map { my $l = substr($_->[0], 0, 200); $l =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge; "$_->[1]: $l" }
		  @bad[ 0 .. ($#bad < 9 ? $#bad : 9) ]));
	# the entries as stored (keys as bytes, even if they are not UTF-8)
	my @entries = map { my ($k, $v) = split /\|/, $_, 2; [ pack('H*', $k), $v ] } split /\n/,
	  q1(qq{SELECT encode(textsend(key), 'hex'), value::text FROM jsonb_each(scuttlebutt.clock('$m'))});
	my @bad_clock = grep { !finite($_->[1]) || $_->[1] > $limit_ms } @entries;
	is(scalar(@bad_clock), 0, "$m: every clock entry is finite and at most max_clock_skew ahead")
	  or diag(join("\n", map { substr($_->[0], 0, 60) =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ger . ' => ' . (length($_->[1]) > 40 ? sprintf('%.17g', $_->[1]) : $_->[1]) } @bad_clock[ 0 .. ($#bad_clock < 9 ? $#bad_clock : 9) ]));
}
my %after_set = map { ($_ => 1) } @{ $after{ev} };
is(join("\n", grep { !$after_set{$_} } @{ $before{ev} }), '', 'ev: every event held before is still held, unchanged');
my %kv_now = map { my $u = eval { $json->decode($_) }; $u && ref $u->[0] eq 'ARRAY' ? ($u->[0][0] => $_) : () } @{ $after{kv} };
is(join("\n", grep { ($kv_now{$_} // '') ne $base_kv{$_} } sort keys %base_kv), '',
	'kv: every base key holds the same update as before');
my ($val_before) = @{ $before{val} };
my ($val_after) = @{ $after{val} };
my $ts_of = sub { my $u = eval { $exact->decode($_[0] // '') }; return ref $u eq 'ARRAY' ? $u->[1] : undef };
my ($ts_before, $ts_after) = map { $ts_of->($_) } $val_before, $val_after;
ok(defined $ts_after && $ts_after >= $ts_before, 'val: holds an update at least as new as before')
  or diag('before: ' . ($val_before // 'none') . "\nnow: " . substr($val_after // 'none', 0, 300));
note(sprintf('updates held: %s', join(', ', map { "$_ " . scalar(@{ $before{$_} }) . ' -> ' . scalar(@{ $after{$_} }) } @models)));

# ---- local writes: they work and get timestamps near wall clock ----
sub local_writes
{
	my ($label) = @_;
	my %sql = (
		kv => q{scuttlebutt.set('kv', 'local_write', '"x"')},
		ev => q{scuttlebutt.emit('ev', 'local_write', '"x"')},
		val => q{scuttlebutt.set_value('val', '"local_write"')},
	);
	for my $m (@models)
	{
		my ($ret, $out, $err) = (0, '', '');
		$ret = $node->psql('postgres', "SELECT round(($sql{$m} - $now_sql)::numeric, 0)", stdout => \$out, stderr => \$err);
		ok($ret == 0 && $out =~ /^-?\d+$/ && $out > -5_000 && $out < $skew_ms,
			"$label: a local write to $m works and its timestamp is near wall clock")
		  or diag("exit $ret, timestamp - wall clock (ms): '$out', error: $err");
	}
}
local_writes('after the fuzz');
my $restart_off = -s $node->logfile;
$node->restart;
$node->wait_for_log(qr/listening for stream peers on "127\.0\.0\.1" port $port/, $restart_off);
local_writes('after a restart');

# ---- a good JavaScript client syncs every model ----
my $pid_after_restart = StreamTest::worker_pid($node);
ScuttlebuttTest::run_interop($node, 'stream_fuzz.js', $port, 'sync', map { "$_:$kind_of{$_}" } @models);
is(StreamTest::worker_pid($node), $pid_after_restart, 'the worker survived the good client\'s sync (same pid)');

note(sprintf('seed %d: %d connections, fuzz %.1f s, whole test %.1f s', $seed, $n, $fuzz_seconds, time - $started));
$node->stop;
done_testing();
