# Faults at scale: five servers in a ring plus two chords, every link
# carrying a libpq peer one way and a stream peer the other way for each
# model, all through fault proxies (test/lib/FaultProxy.pm); three
# unmodified JavaScript peers (test/interop/mesh_peers.js) on three
# servers, each through its own proxy.  Models: kv ('model'), ev
# ('events'), val ('value'), and skv, a signed 'model' (every server signs
# with its own Ed25519 key and trusts the others'; the JavaScript peers,
# which do not sign, join the three unsigned models only).
#
# While writers write at every server (set, set_many, emit, set_value, the
# signed model, multi-statement and rolled-back transactions), a skew
# writer (source "SKEW", through apply_update() on one server) writes with
# its own clock, and the JavaScript peers write, a nemesis plays a schedule
# drawn from a seed: partitions (a random split, a majority/minority split,
# a bridge node), connections dropped (RST), delays, a link cut one way,
# kill -9 of a postmaster (restarted: crash recovery), kill -9 of the
# replication worker alone, clean restarts, and a jump of the skew
# writer's clock within scuttlebutt.max_clock_skew.
#
# Then everything heals and the writers stop.  Checks: every server's
# history and clock of every model identical (so to_json, events and
# get_value too), and every JavaScript peer's toJSON, events and value the
# same; every write acknowledged as committed present everywhere or
# superseded by a newer write to its key; every event exactly once; no
# rolled-back write anywhere; no PANIC and no worker crash loop in any
# log.  The time from the heal to convergence is reported per model.
#
# Environment: MESH_SEED (default 20261206), MESH_SECONDS (planned seconds
# of faults, default 100, about two minutes with the last fault and the
# restarts).  A failure's seed and schedule are printed, so
# the same schedule can be played again.
use strict;
use warnings;

use B ();
use FindBin;
use lib "$FindBin::RealBin/../lib";
use FaultProxy;
use IPC::Run;
use LibpqTest;
use MeshTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use StreamTest;
use Test::More;
use Time::HiRes qw(time usleep);

my $seed = $ENV{MESH_SEED} || 20261206;
my $seconds = $ENV{MESH_SECONDS} || 100;
diag("mesh: seed $seed, $seconds s of faults (MESH_SEED=$seed MESH_SECONDS=$seconds plays this schedule again)");
srand($seed);

my $js = ScuttlebuttTest::node_available();
my $json = ScuttlebuttTest::json_codec();
sub q1 { return LibpqTest::q1(@_) }

# ---- the mesh ----
my $dir = PostgreSQL::Test::Utils::tempdir();
my @s = map { MeshTest::new_server("s$_", $dir) } 0 .. 4;
MeshTest::create_models(\@s);
my %id_of = map { ($_->name => q1($_, 'SELECT scuttlebutt.node_id()')) } @s;

my @edges = ([ 0, 1 ], [ 1, 2 ], [ 2, 3 ], [ 3, 4 ], [ 4, 0 ], [ 0, 2 ], [ 1, 3 ]);
my @links = map { { a => $_->[0], b => $_->[1], p => MeshTest::link($s[ $_->[0] ], $s[ $_->[1] ]) } } @edges;
my @js_at = ([ 'JS1', 1 ], [ 'JS2', 3 ], [ 'JS3', 4 ]);
my @js_links;
my ($js_h, $js_in, $js_out, $js_err) = (undef, '', '', '');
if ($js)
{
	@js_links = map { { id => $_->[0], at => $_->[1], p => MeshTest::js_link($_->[0], $s[ $_->[1] ]) } } @js_at;
	$js_h = IPC::Run::start(
		[ 'node', "$ScuttlebuttTest::interop_dir/mesh_peers.js", $seed, $dir,
			map { "$_->{id}:" . $_->{p}->port(0) } @js_links ],
		'<', \$js_in, '>', \$js_out, '2>', \$js_err);
}
else
{
	diag('node.js or the scuttlebutt package is missing: no JavaScript peers');
}

# One command to the JavaScript peers; their JSON answer
sub js_command
{
	my ($cmd) = @_;
	return undef unless $js_h;
	$js_out = '';
	$js_in .= "$cmd\n";
	my $deadline = time + 30;
	while ($js_out !~ /\n/ && time < $deadline && $js_h->pumpable)
	{
		$js_h->pump_nb;
		usleep(10_000);
	}
	my ($line) = split /\n/, $js_out;
	return defined $line ? $json->decode($line) : undef;
}

for my $n (@s)
{
	my $models = join(',', map { "'$_->[0]'" } @MeshTest::MODELS);
	ok(StreamTest::poll($n, "SELECT bool_and(scuttlebutt.wait_for_sync(m, '5s')) FROM unnest(ARRAY[$models]) m", 120),
		$n->name . ': every connection of every model is live before the faults');
}

# ---- writers ----
open my $fh, '>', "$dir/skew.offset" or die;
print $fh "0\n";
close $fh;
my @writers = map { MeshTest::Writer->start($s[$_], "w$_", $dir, $seed * 10 + $_) } 0 .. 4;
my $skew_at = int(rand(5));
push @writers, MeshTest::Writer->start($s[$skew_at], 'skew', $dir, $seed * 10 + 9, skew => 1);
my %writer_node = ((map { ("w$_" => $s[$_]->name) } 0 .. 4), skew => $s[$skew_at]->name);

# ---- the schedule, drawn from the seed before anything runs ----
my @net = qw(partition majority bridge drop delay oneway);
my @proc = qw(kill9 killworker restart clock);
sub pick { return $_[ int(rand(@_)) ] }
sub shuffle { my @a = @_; for (my $i = @a - 1; $i > 0; $i--) { my $j = int(rand($i + 1)); @a[ $i, $j ] = @a[ $j, $i ] } return @a }

sub plan_fault
{
	my ($type) = @_;
	my %f = (type => $type);
	my @nodes = shuffle(0 .. 4);
	if ($type eq 'partition')
	{
		my $k = 1 + int(rand(2));
		$f{side} = { map { ($nodes[$_] => ($_ < $k ? 1 : 0)) } 0 .. 4 };
		$f{drop} = int(rand(2));
	}
	elsif ($type eq 'majority')
	{
		$f{side} = { map { ($nodes[$_] => ($_ < 2 ? 1 : 0)) } 0 .. 4 };
		$f{drop} = int(rand(2));
	}
	elsif ($type eq 'bridge')
	{
		# nodes[0] is the bridge: 1,2 on one side, 3,4 on the other
		$f{side} = { $nodes[0] => 'b', map { ($nodes[$_] => ($_ < 3 ? 1 : 2)) } 1 .. 4 };
		$f{bridge} = $nodes[0];
		$f{drop} = int(rand(2));
	}
	elsif ($type eq 'drop' || $type eq 'delay' || $type eq 'oneway')
	{
		my @pool = (0 .. $#edges, map { "js$_" } 0 .. $#js_at);
		my @l = (shuffle(@pool))[ 0 .. int(rand(3)) ];
		$f{links} = \@l;
		$f{ms} = 20 + int(rand(300)) if $type eq 'delay';
		$f{from} = [ map { int(rand(2)) } @l ] if $type eq 'oneway';
	}
	elsif ($type eq 'clock')
	{
		$f{offset} = pick(0, 15_000, 30_000, 40_000);
	}
	else
	{
		$f{node} = $nodes[0];
		$f{down} = 0.5 + rand(3) if $type eq 'kill9';
	}
	return \%f;
}

my @schedule;
{
	my $planned = 0;
	# every kind once, in a random order, then at random
	my @first = shuffle(@net, @proc);
	while ($planned < $seconds)
	{
		my @f;
		my $t = shift(@first) // (rand() < 0.6 ? pick(@net) : pick(@proc));
		push @f, plan_fault($t);
		# now and then a process fault during a network fault
		push @f, plan_fault(pick(@proc)) if (grep { $_ eq $t } @net) && rand() < 0.3;
		my $hold = 2 + rand(5);
		my $gap = rand(1.5);
		push @schedule, { faults => \@f, hold => $hold, gap => $gap };
		# a server's stop and start take about two seconds more
		$planned += $hold + $gap + 2 * grep { $_->{type} =~ /^(kill9|killworker|restart)$/ } @f;
	}
}

sub describe
{
	my ($f) = @_;
	my $t = $f->{type};
	return "$t " . join('', map { $f->{side}{$_} } 0 .. 4) . ($f->{drop} ? ' (drop first)' : '') if $f->{side};
	return "$t links " . join(',', @{ $f->{links} }) . (defined $f->{ms} ? " $f->{ms} ms" : '') if $f->{links};
	return "clock offset $f->{offset} ms" if $t eq 'clock';
	return "$t s$f->{node}" . (defined $f->{down} ? sprintf(' (down %.1f s)', $f->{down}) : '');
}
note(sprintf('schedule: %d episodes', scalar @schedule));
note(sprintf('  %2d: %-50s hold %.1f s', $_, join(' + ', map { describe($_) } @{ $schedule[$_]{faults} }), $schedule[$_]{hold}))
  for 0 .. $#schedule;

# ---- the nemesis ----
sub proxy_of
{
	my ($l) = @_;
	return $l =~ /^js(\d+)$/ ? $js_links[$1] && $js_links[$1]{p} : $links[$l]{p};
}

sub ends_of
{
	my ($l) = @_;
	return $l =~ /^js(\d+)$/ ? ($js_at[$1][0], $s[ $js_at[$1][1] ]->name) : ($s[ $links[$l]{a} ]->name, $s[ $links[$l]{b} ]->name);
}

my %count;
my @down;    # nodes stopped by a fault, started again when it heals
my $t_start = time;
for my $e (@schedule)
{
	my (@heal, @restart);
	for my $f (@{ $e->{faults} })
	{
		my $t = $f->{type};
		$count{$t}++;
		if ($f->{side})
		{
			for my $l (@links)
			{
				my ($sa, $sb) = ($f->{side}{ $l->{a} }, $f->{side}{ $l->{b} });
				next if $sa eq $sb || $sa eq 'b' || $sb eq 'b';
				$l->{p}->drop if $f->{drop};
				$l->{p}->pause;
				push @heal, $l->{p};
			}
		}
		elsif ($t eq 'drop')
		{
			$_->drop for grep { $_ } map { proxy_of($_) } @{ $f->{links} };
		}
		elsif ($t eq 'delay')
		{
			for my $p (grep { $_ } map { proxy_of($_) } @{ $f->{links} })
			{
				$p->delay($f->{ms});
				push @heal, $p;
			}
		}
		elsif ($t eq 'oneway')
		{
			for my $i (0 .. $#{ $f->{links} })
			{
				my $p = proxy_of($f->{links}[$i]) or next;
				$p->cut((ends_of($f->{links}[$i]))[ $f->{from}[$i] ]);
				push @heal, $p;
			}
		}
		elsif ($t eq 'clock')
		{
			open my $o, '>', "$dir/skew.offset.new" or die;
			print $o "$f->{offset}\n";
			close $o;
			rename("$dir/skew.offset.new", "$dir/skew.offset") or die;
		}
		elsif ($t eq 'kill9')
		{
			MeshTest::kill9_postmaster($s[ $f->{node} ]);
			push @restart, [ $s[ $f->{node} ], time + $f->{down} ];
		}
		elsif ($t eq 'killworker')
		{
			MeshTest::kill9_worker($s[ $f->{node} ]);
		}
		elsif ($t eq 'restart')
		{
			$s[ $f->{node} ]->restart;
		}
	}
	my $until = time + $e->{hold};
	for my $r (sort { $a->[1] <=> $b->[1] } @restart)
	{
		my $left = $r->[1] - time;
		usleep(int($left * 1e6)) if $left > 0;
		MeshTest::start_again($r->[0]);
	}
	my $left = $until - time;
	usleep(int($left * 1e6)) if $left > 0;
	$_->heal for @heal;
	usleep(int($e->{gap} * 1e6));
}
my $nemesis_s = time - $t_start;

# ---- the last fault: a majority/minority split with a server of the
# minority killed; the writers stop while it holds, then it heals ----
my @last = shuffle(0 .. 4);
my %minority = map { ($_ => 1) } @last[ 0, 1 ];
note(sprintf('last fault: s%d and s%d cut off from the rest, s%d killed (kill -9)', @last[ 0, 1, 0 ]));
for my $l (@links)
{
	next if ($minority{ $l->{a} } // 0) == ($minority{ $l->{b} } // 0);
	$l->{p}->drop;
	$l->{p}->pause;
}
MeshTest::kill9_postmaster($s[ $last[0] ]);
usleep(3_000_000);
$_->stop for @writers;
my $stopped = js_command('stop');
my $t_heal = time;
$_->{p}->heal for @links, @js_links;
MeshTest::start_again($s[ $last[0] ]);
my $back_ms = int((time - $t_heal) * 1000);
note("healed; s$last[0] back in $back_ms ms");

# Canonical text of decoded JSON: keys sorted, numbers as the double they are
sub canon
{
	my ($v) = @_;
	return 'null' unless defined $v;
	if (ref $v eq 'HASH') { return '{' . join(',', map { "\"$_\":" . canon($v->{$_}) } sort keys %$v) . '}' }
	if (ref $v eq 'ARRAY') { return '[' . join(',', map { canon($_) } @$v) . ']' }
	if (ref $v) { return $$v ? 'true' : 'false' }
	my $flags = B::svref_2object(\$v)->FLAGS;
	return sprintf('%.17g', $v) if ($flags & (B::SVp_IOK | B::SVp_NOK)) && !($flags & B::SVp_POK);
	return $json->encode([$v]) =~ s/^\[|\]$//gr;
}

# The state of one model as the JavaScript peers must see it (from a server)
sub server_view
{
	my ($node, $m) = @_;
	return canon($json->decode(q1($node, "SELECT scuttlebutt.to_json('kv')::text"))) if $m eq 'kv';
	return canon($json->decode(q1($node, "SELECT coalesce(scuttlebutt.get_value('val'), 'null')::text"))) if $m eq 'val';
	my $ev = $json->decode(q1($node,
		q{SELECT coalesce(json_agg(json_build_array(event, data, ts, source) ORDER BY ts, source), '[]')::text FROM scuttlebutt.events('ev')}));
	return canon([ sort { $a->[2] <=> $b->[2] || $a->[3] cmp $b->[3] } @$ev ]);
}

sub js_view
{
	my ($st, $m) = @_;
	return canon($st->{$m}) unless $m eq 'ev';
	return canon([ sort { $a->[2] <=> $b->[2] || $a->[3] cmp $b->[3] } @{ $st->{ev} } ]);
}

my %converged_ms;
my $deadline = time + 180;
my @names = map { $_->[0] } @MeshTest::MODELS;
my %signed = map { ($_->[0] => $_->[2]) } @MeshTest::MODELS;
while (keys %converged_ms < @names && time < $deadline)
{
	my $t_sample = time;
	my %digests;
	for my $n (@s)
	{
		my @d = split /\|/, MeshTest::digests($n, @names);
		for my $i (0 .. $#names)
		{
			my ($hist, $clock) = @d[ 2 * $i, 2 * $i + 1 ];
			# a signed model's clock moves on verified updates only: see below
			push @{ $digests{ $names[$i] } }, ($hist // '') . ($signed{ $names[$i] } ? '' : '|' . ($clock // ''));
		}
	}
	my $jst = $js_h ? js_command('state') : undef;
	for my $m (grep { !exists $converged_ms{$_} } @names)
	{
		my %d = map { ($_ => 1) } @{ $digests{$m} };
		next unless keys %d == 1 && (keys %d)[0] ne '';
		if ($js_h && $m ne 'skv')
		{
			next unless $jst && $jst->{state};
			my $want = server_view($s[0], $m);
			next if grep { js_view($jst->{state}{$_}, $m) ne $want } keys %{ $jst->{state} };
		}
		$converged_ms{$m} = int(($t_sample - $t_heal) * 1000);
	}
	usleep(200_000) if keys %converged_ms < @names;
}

for my $m (@names)
{
	ok(exists $converged_ms{$m}, "$m: every server" . ($m eq 'skv' || !$js_h ? '' : ' and JavaScript peer')
		  . ' holds the same updates' . ($signed{$m} ? '' : ' and clock') . ' after the heal')
	  or diag("$m digests: " . join(', ', map { $_->name . '=' . MeshTest::digest($_, $m) } @s));
}
# A signed model's clock moves on verified updates only (a peer's word
# never raises it: README, "Signed updates"), so a source whose latest
# updates were superseded before they reached a server, or a server's own
# source after a restart (shown at its reservation until it writes the
# model again), may stay behind there: counted, not required equal.
my %clock_diff;
for my $m (grep { $signed{$_} } @names)
{
	my @c = map { $json->decode(q1($_, "SELECT scuttlebutt.clock('$m')::text")) } @s;
	my %src = map { %$_ } @c;
	$clock_diff{$m} = grep { my $k = $_; my %v = map { (($_->{$k} // 'none') => 1) } @c; keys %v > 1 } keys %src;
	note("$m: $clock_diff{$m} of " . scalar(keys %src) . ' clock entries differ between servers');
}

# ---- what every reader sees ----
my @seen = map { MeshTest::states($_) } @s;
for my $i (1 .. 4)
{
	for my $m (@MeshTest::MODELS)
	{
		my ($name, $kind, $signed) = @$m;
		is($seen[$i]{$name}{read}, $seen[0]{$name}{read},
			$s[$i]->name . " $name: " . ($kind eq 'model' ? 'to_json' : $kind eq 'events' ? 'events' : 'get_value') . ' as on s0');
		is($seen[$i]{$name}{clock}, $seen[0]{$name}{clock}, $s[$i]->name . " $name: clock as on s0") unless $signed;
	}
}
my %view = map { ($_ => server_view($s[0], $_)) } qw(kv ev val);
my $jst = js_command('state');
if ($js_h)
{
	for my $id (sort keys %{ $jst->{state} // {} })
	{
		for my $m (qw(kv ev val))
		{
			is(js_view($jst->{state}{$id}, $m), $view{$m}, "$id $m: the JavaScript peer's state is the servers'");
		}
		# the stream protocol sends a clock only in its header: a source whose
		# latest updates were superseded before they were sent may stay behind
		my $behind = 0;
		for my $m (qw(kv ev val))
		{
			my $sc = $json->decode($seen[0]{$m}{clock});
			$behind += grep { ($jst->{state}{$id}{clock}{$m}{$_} // 0) != $sc->{$_} } keys %$sc;
		}
		note("$id: $behind clock entries differ from the servers' (superseded updates are not sent over a stream)");
	}
}

# ---- every acknowledged write ----
my (%kv, %val, %ev_count);
for my $m (qw(kv skv))
{
	for my $row (split /\n/, q1($s[0], "SELECT json_build_array(key, value, ts, source)::text FROM scuttlebutt.entries('$m')"))
	{
		my $r = $json->decode($row);
		$kv{$m}{ $r->[0] } = { v => canon($r->[1]), ts => $r->[2], src => $r->[3] };
	}
}
{
	my $h = q1($s[0], q{SELECT h::text FROM scuttlebutt.history('val') h});
	my $r = $json->decode($h);
	$val{v} = canon($r->[0]);
	@val{qw(ts src)} = @$r[ 1, 2 ];
	for my $row (split /\n/, q1($s[0], q{SELECT data::text FROM scuttlebutt.events('ev')}))
	{
		$ev_count{ canon($json->decode($row)) }++;
	}
}

# later than (ts, source) by the merge rule
sub newer
{
	my ($cur, $ts, $src) = @_;
	return $cur->{ts} > $ts || ($cur->{ts} == $ts && $cur->{src} gt $src);
}

my (%st, @lost, @ghost, %written_ev);
my @logs = map { $_->log_file } @writers;
push @logs, map { "$dir/$_->[0].log" } @js_at if $js_h;
for my $file (@logs)
{
	open my $lf, '<', $file or next;
	while (my $line = <$lf>)
	{
		my $w = $json->decode($line);
		my $src = $w->{src} // $id_of{ $writer_node{ $w->{w} // '' } // '' } // '?';
		my $st = $w->{st} // 'ok';    # the JavaScript peers' writes are theirs at once
		$st = 'not applied' if $st eq 'ok' && defined $w->{applied} && $w->{applied} ne 't';
		$st{$st}++;
		my $v = canon(ref $w->{v} ? $w->{v} : $json->decode($w->{v}));
		$written_ev{$v} = $st if $w->{m} eq 'ev';
		if ($st eq 'rolledback')
		{
			push @ghost, $line if $w->{m} eq 'ev' ? $ev_count{$v} : ($kv{ $w->{m} }{ $w->{k} }{v} // '') eq $v;
			next;
		}
		next unless $st eq 'ok';
		my $ok;
		if ($w->{m} eq 'ev')
		{
			$ok = ($ev_count{$v} // 0) == 1;
		}
		else
		{
			my $cur = $w->{m} eq 'val' ? \%val : $kv{ $w->{m} }{ $w->{k} };
			$ok = $cur && defined $w->{ts} && $w->{ts} ne '' && ($cur->{v} eq $v || newer($cur, $w->{ts}, $src));
		}
		push @lost, $line unless $ok;
	}
	close $lf;
}
my $acked = $st{ok} // 0;
ok($acked > 100, "$acked acknowledged writes were made (" . join(', ', map { "$_: $st{$_}" } sort keys %st) . ')');
is(scalar @lost, 0, 'every acknowledged write is present everywhere or superseded by a newer write to its key')
  or diag("lost:\n" . join('', @lost[ 0 .. ($#lost < 20 ? $#lost : 19) ]));
is(scalar @ghost, 0, 'no write of a rolled-back transaction is anywhere') or diag("found:\n" . join('', @ghost));
my @dup = grep { $ev_count{$_} > 1 } keys %ev_count;
is(scalar @dup, 0, 'no event is held twice') or diag('duplicated: ' . join(' ', @dup[ 0 .. ($#dup < 10 ? $#dup : 9) ]));
my @stray = grep { !exists $written_ev{$_} || $written_ev{$_} !~ /^(ok|unknown)$/ } keys %ev_count;
is(scalar @stray, 0, 'every event held was written (committed, or its commit unknown)')
  or diag('stray: ' . join(' ', @stray[ 0 .. ($#stray < 10 ? $#stray : 9) ]));

# ---- the servers' health ----
my (%errors, %worker_kills);
for my $n (@s)
{
	my $log = slurp_file($n->logfile);
	my @panic = $log =~ /^.*PANIC.*$/mg;
	is(scalar @panic, 0, $n->name . ': no PANIC in the log') or diag(join("\n", @panic[ 0 .. ($#panic < 5 ? $#panic : 4) ]));
	# the worker exits with code 1 when asked to stop (a shutdown): only
	# an exit while the server runs is an error
	my ($down, @exits, $killed) = (0);
	for my $line (split /\n/, $log)
	{
		$down = 1 if $line =~ /received (fast|smart|immediate) shutdown request/;
		$down = 0 if $line =~ /database system is ready to accept connections/;
		push @exits, $line if !$down && $line =~ /"scuttlebutt replication worker" \(PID \d+\) exited with exit code/;
		$killed++ if $line =~ /"scuttlebutt replication worker" \(PID \d+\) was terminated by signal 9/;
	}
	$worker_kills{ $n->name } = $killed // 0;
	is(scalar @exits, 0, $n->name . ': the replication worker never exited with an error while the server ran')
	  or diag(join("\n", @exits[ 0 .. ($#exits < 5 ? $#exits : 4) ]));
	my $pid = StreamTest::worker_pid($n);
	ok($pid =~ /^\d+$/ && StreamTest::poll($n, "SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = $pid AND now() - backend_start > interval '2 s'", 30),
		$n->name . ': one replication worker, running steadily');
	for my $row (split /\n/, q1($n, 'SELECT reason, sum(count) FROM scuttlebutt.connection_errors GROUP BY reason'))
	{
		my ($reason, $c) = split /\|/, $row;
		$errors{$reason} += $c;
	}
}

# ---- the summary ----
my @ms = sort { $a <=> $b } values %converged_ms;
my $median = @ms ? $ms[ int($#ms / 2) ] : -1;
my $worst = @ms ? $ms[-1] : -1;
diag(sprintf('mesh: seed %s, %d episodes in %.0f s (%s)', $seed, scalar @schedule, $nemesis_s,
	join(', ', map { "$_ $count{$_}" } sort keys %count)));
diag('mesh: writes ' . join(', ', map { "$_ $st{$_}" } sort keys %st)
	  . ($stopped ? '; JavaScript writes ' . join(', ', map { "$_ $stopped->{stopped}{$_}" } sort keys %{ $stopped->{stopped} }) : ''));
diag('mesh: heal to convergence (ms): ' . join(', ', map { "$_ " . ($converged_ms{$_} // 'never') } @names)
	  . "; median $median, worst $worst (s$last[0], killed, accepted connections again after $back_ms)");
diag('mesh: signed model clock entries that differ between servers: ' . join(', ', map { "$_ $clock_diff{$_}" } sort keys %clock_diff));
diag('mesh: workers killed (kill -9): ' . join(', ', map { "$_ $worker_kills{$_}" } sort keys %worker_kills));
diag('mesh: connections closed: ' . join(', ', map { "$_ $errors{$_}" } sort keys %errors));
diag("MESH_RESULT seed=$seed seconds=$seconds nemesis_s=" . int($nemesis_s) . " median_ms=$median worst_ms=$worst "
	  . join(' ', map { "$_=" . ($converged_ms{$_} // 'never') } @names));

if ($js_h)
{
	$js_in .= '';
	$js_h->kill_kill;
	eval { $js_h->finish };
}
$_->{p}->stop for @links, @js_links;
$_->stop('immediate') for @s;
done_testing();
