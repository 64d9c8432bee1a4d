# Helpers for the mesh fault test (test/t/160_fault_mesh.pl): servers
# linked through FaultProxy links by libpq and stream peers, writers that
# log every write they were told committed, the JavaScript peers, crashes,
# and the checks made once every fault is healed.
#
#   @MeshTest::MODELS                    [name, kind, signed] of each model
#   my $node = MeshTest::new_server($name, $dir)
#       a LibpqTest node with the stream listener, a signing key made in
#       $dir (Ed25519) in use; $node->{mesh_key} is the key
#   MeshTest::create_models(\@nodes)     every server trusts every other's
#       key, then creates the models (the signed one included)
#   my $link = MeshTest::link($a, $b)
#       a FaultProxy between two servers carrying, for every model, a libpq
#       peer $a dials and a stream peer $b dials
#   my $link = MeshTest::js_link($id, $node)
#       a FaultProxy between JavaScript peer $id and $node's listener
#   my $w = MeshTest::Writer->start($node, $name, $dir, $seed, skew => 0|1)
#       a forked writer on $node (see MeshTest::Writer); $w->stop
#   MeshTest::kill9_postmaster($node), MeshTest::kill9_worker($node),
#   MeshTest::start_again($node)
#   MeshTest::state($node, $model, $kind), MeshTest::digest($node, $model),
#   MeshTest::digests($node, @models)
package MeshTest;

use strict;
use warnings;

use FaultProxy;
use IPC::Run;
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use SignedTest;
use StreamTest;
use Test::More;
use Time::HiRes qw(time usleep);

our @MODELS = ([ 'kv', 'model', 0 ], [ 'ev', 'events', 0 ], [ 'val', 'value', 0 ], [ 'skv', 'model', 1 ]);

# Settings of every mesh server: room for every peer's sessions, libpq
# sessions through a stalled link given up after 3 s, short back-offs
our $conf = <<'EOC';
max_connections = 100
scuttlebutt.peer_timeout = 3s
scuttlebutt.handshake_timeout = 5s
restart_after_crash = on
log_min_messages = warning
EOC

sub q1 { return LibpqTest::q1(@_) }

sub new_server
{
	my ($name, $dir) = @_;
	my $node = LibpqTest::new_node($name, listen => 1, conf => $conf);
	my $k = SignedTest::make_key($dir, $name, 'ed25519');
	SignedTest::use_key($node, $k);
	$node->{mesh_key} = $k;
	return $node;
}

sub create_models
{
	my ($nodes) = @_;
	for my $n (@$nodes)
	{
		q1($n, join('', (map { 'SELECT scuttlebutt.trust_key(' . LibpqTest::lit($_->{mesh_key}{pem}) . ');' } grep { $_ != $n } @$nodes),
			(map { "SELECT scuttlebutt.create_model('$_->[0]', '$_->[1]', " . ($_->[2] ? 'true' : 'false') . ');' } @MODELS)));
	}
}

sub link
{
	my ($a, $b) = @_;
	my $p = FaultProxy->new($a->name . '-' . $b->name, [ $a->name, $b->name ],
		[ { to => $b->port, client => $a->name }, { to => LibpqTest::stream_port($a), client => $b->name } ]);
	my $conninfo = 'host=127.0.0.1 port=' . $p->port(0) . ' dbname=postgres';
	q1($a, join('', map { "SELECT scuttlebutt.add_peer('$_->[0]', '$conninfo');" } @MODELS));
	q1($b, join('', map { "SELECT scuttlebutt.add_stream_peer('$_->[0]', '127.0.0.1', " . $p->port(1) . ');' } @MODELS));
	return $p;
}

sub js_link
{
	my ($id, $node) = @_;
	return FaultProxy->new("$id-" . $node->name, [ $id, $node->name ],
		[ { to => LibpqTest::stream_port($node), client => $id } ]);
}

# The pids of the processes whose parent is $pid
sub _children
{
	my ($pid) = @_;
	my @kids;
	for my $stat (glob '/proc/[0-9]*/stat')
	{
		open my $fh, '<', $stat or next;
		my $line = <$fh> // '';
		close $fh;
		push @kids, $1 if $line =~ /^(\d+) \(.*\) \S (\d+) / && $2 == $pid;
	}
	return @kids;
}

# kill -9 of the postmaster alone; returns once its children are gone too
# (they exit on the postmaster's death), so that it can start again
sub kill9_postmaster
{
	my ($node) = @_;
	my $pid = $node->{_pid} or return;
	my @kids = _children($pid);
	$node->kill9;
	my $deadline = time + 20;
	while (grep { kill 0, $_ } @kids)
	{
		if (time > $deadline)
		{
			diag($node->name . ': children of the killed postmaster still alive after 20 s, killing them');
			kill 'KILL', @kids;
			$deadline = time + 20;
		}
		usleep(50_000);
	}
	unlink($node->data_dir . '/postmaster.pid');
}

# kill -9 of the replication worker alone; the postmaster then
# reinitializes (crash recovery) and starts it again
sub kill9_worker
{
	my ($node) = @_;
	my $pid = eval { StreamTest::worker_pid($node) } // '';
	return 0 unless $pid =~ /^\d+$/;
	kill 'KILL', $pid;
	return $pid;
}

sub start_again
{
	my ($node) = @_;
	my $o = -s $node->logfile;
	$node->start;
	my $sport = LibpqTest::stream_port($node);
	$node->wait_for_log(qr/listening for stream peers on "127\.0\.0\.1" port $sport/, $o);
}

# What must be equal everywhere for a model: the updates held (wire text)
# and the clock
sub digest
{
	my ($node, $model) = @_;
	my (undef, $out) = $node->psql('postgres', "SELECT md5(coalesce((SELECT string_agg(h::text, E'\\n' ORDER BY h::text)"
		  . " FROM scuttlebutt.history('$model') h), '') || '|' || scuttlebutt.clock('$model')::text)");
	return $out // '';
}

# Per model, a digest of the updates held and one of the clock, all
# separated by "|" ('' if the server does not answer)
sub digests
{
	my ($node, @models) = @_;
	my $sql = 'SELECT ' . join(" || '|' || ", map {
		"md5(coalesce((SELECT string_agg(h::text, E'\\n' ORDER BY h::text) FROM scuttlebutt.history('$_') h), ''))"
		  . " || '|' || md5(scuttlebutt.clock('$_')::text)" } @models);
	my (undef, $out) = $node->psql('postgres', $sql);
	return $out // '';
}

# What a reader of $node sees of every model, in one query:
# {model => {read => to_json, events or get_value as text, clock => text}}
sub states
{
	my ($node) = @_;
	my $sql = join("\nUNION ALL ", map {
		my ($m, $kind) = @$_;
		my $read = $kind eq 'model' ? "scuttlebutt.to_json('$m')::text"
		  : $kind eq 'events'
		  ? "(SELECT coalesce(json_agg(json_build_array(event, data, ts, source) ORDER BY ts, source), '[]')::text FROM scuttlebutt.events('$m'))"
		  : "scuttlebutt.get_value('$m')::text";
		"SELECT '$m', replace($read, E'\\n', ' '), scuttlebutt.clock('$m')::text" } @MODELS);
	my %st;
	for my $row (split /\n/, q1($node, $sql))
	{
		my ($m, $read, $clock) = split /\|/, $row, 3;
		$st{$m} = { read => $read, clock => $clock };
	}
	return \%st;
}

# The state a reader sees: to_json, events or get_value, as text
sub state
{
	my ($node, $model, $kind) = @_;
	my $read = $kind eq 'model' ? "scuttlebutt.to_json('$model')::text"
	  : $kind eq 'events'
	  ? "(SELECT coalesce(json_agg(json_build_array(event, data, ts, source) ORDER BY ts, source), '[]')::text FROM scuttlebutt.events('$model'))"
	  : "scuttlebutt.get_value('$model')::text";
	return q1($node, "SELECT $read");
}


package MeshTest::Writer;

# A writer: a forked process with one psql session on its server that
# writes at random until told to stop, and logs each write as a JSON line
# in <dir>/<name>.log: {op, n, m (model), k (key), v (value), ts (the
# timestamp returned), at (when it returned), st: "ok" (committed),
# "rolledback" (the transaction was rolled back on purpose), "unknown"
# (the session ended before the answer: committed or not), "failed" (an
# error)}.  A skew writer (skew => 1) is another node, source "SKEW",
# whose updates are applied with apply_update() with timestamps from its
# own clock: the wall clock plus the offset in <dir>/skew.offset (ms),
# which the test changes to make its clock jump; they stay increasing.

use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time usleep);

my $enc = JSON::PP->new->canonical;

sub start
{
	my ($class, $node, $name, $dir, $seed, %o) = @_;
	my $stop = "$dir/$name.stop";
	unlink $stop;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		$SIG{PIPE} = 'IGNORE';
		my $rc = eval { _run($node->connstr('postgres'), $name, $dir, $seed, $o{skew}); 1 } ? 0 : 1;
		print STDERR "writer $name: $@" if $rc;
		POSIX::_exit($rc);
	}
	return bless { pid => $pid, name => $name, stop => $stop, log => "$dir/$name.log" }, $class;
}

sub log_file { return $_[0]->{log} }

# Asks the writer to stop after its current write; waits for it
sub stop
{
	my ($self) = @_;
	return unless $self->{pid};
	open my $fh, '>', $self->{stop} or die "cannot write $self->{stop}: $!";
	close $fh;
	my $deadline = time + 60;
	while (waitpid($self->{pid}, POSIX::WNOHANG()) == 0)
	{
		if (time > $deadline)
		{
			kill 'KILL', $self->{pid};
			waitpid($self->{pid}, 0);
			last;
		}
		usleep(50_000);
	}
	$self->{pid} = 0;
}

# One psql session: statements in, lines out
sub _session
{
	my ($connstr) = @_;
	my ($in, $out, $err) = ('', '', '');
	my $t = IPC::Run::timeout(30);
	my $h = IPC::Run::start([ 'psql', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', $connstr ],
		'<', \$in, '>', \$out, '2>', \$err, $t);
	return { h => $h, in => \$in, out => \$out, err => \$err, t => $t };
}

# Runs $sql in the session; returns ('ok', [lines]) once it answered,
# ('failed', error) if psql reported an error and ended, ('unknown', why)
# if the session ended or timed out without an answer
sub _exec
{
	my ($s, $sql, $tag) = @_;
	${ $s->{in} } .= "$sql\n\\echo DONE $tag\n";
	$s->{t}->start(20);
	my $ok = eval {
		while ($s->{h}->pumpable && ${ $s->{out} } !~ /^DONE \Q$tag\E$/m)
		{
			$s->{h}->pump;
		}
		1;
	};
	if (${ $s->{out} } =~ /^DONE \Q$tag\E$/m)
	{
		my ($before) = split /^DONE \Q$tag\E\n?/m, ${ $s->{out} };
		${ $s->{out} } = '';
		return ('ok', [ grep { $_ ne '' } split /\n/, $before // '' ]);
	}
	my $why = $ok ? ${ $s->{err} } : "timeout: $@";
	eval { $s->{h}->kill_kill };
	eval { $s->{h}->finish };
	$s->{dead} = 1;
	# an error reported by the server (not a lost connection): the
	# transaction did not commit
	return ('failed', $why)
	  if $ok && $why =~ /ERROR:/ && $why !~ /server closed the connection|terminating connection|connection to server/;
	return ('unknown', $why);
}

sub _lit { my ($s) = @_; $s =~ s/'/''/g; return "'$s'" }

sub _run
{
	my ($connstr, $name, $dir, $seed, $skew) = @_;
	srand($seed);
	open my $log, '>>', "$dir/$name.log" or die "cannot write $dir/$name.log: $!";
	$log->autoflush(1);
	my ($s, $n, $last) = (undef, 0, 0);
	my $record = sub {
		my ($st, $op, $writes, $err) = @_;
		my $at = time;
		for my $w (@$writes)
		{
			print $log $enc->encode({ op => $op, w => $name, %$w, st => $st, at => $at,
				(defined $err ? (err => substr($err, 0, 300)) : ()) }) . "\n";
		}
	};
	while (!-e "$dir/$name.stop")
	{
		if (!$s || $s->{dead})
		{
			$s = _session($connstr);
			my ($st) = _exec($s, 'SELECT 1;', 'hello');
			if ($st ne 'ok')
			{
				usleep(200_000);
				next;
			}
		}
		$n++;
		my $val = sub { return $enc->encode({ w => $name, n => $n, @_ }) };
		my $r = rand();
		my ($op, $sql, @w);
		if ($skew)
		{
			my $off = 0;
			if (open my $fh, '<', "$dir/skew.offset") { $off = <$fh> // 0; chomp $off; close $fh }
			my $ts = int(time * 1000) + $off;
			$ts = $last + 1 if $ts <= $last;
			$last = $ts;
			my ($m, $upd, $k);
			my $v = $val->();
			if ($r < 0.5) { ($m, $k) = ('kv', 'k' . int(rand(20))); $upd = qq([["$k",$v],$ts,"SKEW"]) }
			elsif ($r < 0.8) { ($m, $k) = ('ev', 'e'); $upd = qq([["e",$v],$ts,"SKEW"]) }
			else { ($m, $k) = ('val', undef); $upd = qq([$v,$ts,"SKEW"]) }
			$op = 'apply_update';
			$sql = "SELECT scuttlebutt.apply_update('$m', " . _lit($upd) . ');';
			@w = ({ m => $m, k => $k, v => $v, ts => $ts, src => 'SKEW' });
		}
		elsif ($r < 0.25)
		{
			my $k = 'k' . int(rand(20));
			$op = 'set';
			@w = ({ m => 'kv', k => $k, v => $val->() });
			$sql = "SELECT scuttlebutt.set('kv', '$k', " . _lit($w[0]{v}) . ');';
		}
		elsif ($r < 0.35)
		{
			my %keys = map { ('k' . int(rand(20)) => 1) } 1 .. 3;
			my @k = sort keys %keys;
			$op = 'set_many';
			@w = map { { m => 'kv', k => $_, v => $val->(k => $_) } } @k;
			my $obj = '{' . join(',', map { qq("$_->{k}":$_->{v}) } @w) . '}';
			$sql = "BEGIN; SELECT scuttlebutt.set_many('kv', " . _lit($obj) . ');'
			  . " SELECT ts FROM scuttlebutt.entries('kv') WHERE key IN ("
			  . join(',', map { "'$_'" } @k) . ') ORDER BY key; COMMIT;';
		}
		elsif ($r < 0.55)
		{
			$op = 'emit';
			@w = ({ m => 'ev', k => 'e', v => $val->() });
			$sql = "SELECT scuttlebutt.emit('ev', 'e', " . _lit($w[0]{v}) . ');';
		}
		elsif ($r < 0.65)
		{
			$op = 'set_value';
			@w = ({ m => 'val', v => $val->() });
			$sql = "SELECT scuttlebutt.set_value('val', " . _lit($w[0]{v}) . ');';
		}
		elsif ($r < 0.80)
		{
			my $k = 'k' . int(rand(10));
			$op = 'set_signed';
			@w = ({ m => 'skv', k => $k, v => $val->() });
			$sql = "SELECT scuttlebutt.set('skv', '$k', " . _lit($w[0]{v}) . ');';
		}
		elsif ($r < 0.92)
		{
			my ($k, $sk) = ('k' . int(rand(20)), 'k' . int(rand(10)));
			$op = 'transaction';
			@w = (
				{ m => 'kv', k => $k, v => $val->(t => 'kv') },
				{ m => 'ev', k => 'e', v => $val->(t => 'ev') },
				{ m => 'val', v => $val->(t => 'val') },
				{ m => 'skv', k => $sk, v => $val->(t => 'skv') });
			$sql = 'BEGIN;'
			  . " SELECT scuttlebutt.set('kv', '$k', " . _lit($w[0]{v}) . ');'
			  . " SELECT scuttlebutt.emit('ev', 'e', " . _lit($w[1]{v}) . ');'
			  . " SELECT scuttlebutt.set_value('val', " . _lit($w[2]{v}) . ');'
			  . " SELECT scuttlebutt.set('skv', '$sk', " . _lit($w[3]{v}) . '); COMMIT;';
		}
		else
		{
			my $k = 'k' . int(rand(20));
			$op = 'rollback';
			@w = ({ m => 'kv', k => $k, v => $val->(t => 'kv') }, { m => 'ev', k => 'e', v => $val->(t => 'ev') });
			$sql = "BEGIN; SELECT scuttlebutt.set('kv', '$k', " . _lit($w[0]{v}) . ');'
			  . " SELECT scuttlebutt.emit('ev', 'e', " . _lit($w[1]{v}) . '); ROLLBACK;';
		}
		my ($st, $res) = _exec($s, $sql, $n);
		if ($st eq 'ok')
		{
			my @lines = @$res;
			shift @lines if $op eq 'set_many';    # the count
			if ($op eq 'apply_update')
			{
				$w[0]{applied} = $lines[0] // '';
			}
			else
			{
				$w[$_]{ts} = $lines[$_] for 0 .. $#w;
			}
			$st = 'rolledback' if $op eq 'rollback';
			$record->($st, $op, \@w);
		}
		else
		{
			$record->($st, $op, \@w, $res);
		}
		usleep(int(50_000 + rand(200_000)));
	}
	if ($s && !$s->{dead})
	{
		${ $s->{in} } .= "\\q\n";
		eval { $s->{h}->finish };
	}
	close $log;
	return;
}

1;
