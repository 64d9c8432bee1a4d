# What a database role may do with peers, secrets and internal functions.
#
#  - a role that may write scuttlebutt.peers (mallory) owns a database
#    whose scuttlebutt.models view calls ALTER ROLE mallory SUPERUSER: a
#    peer to it over the local socket (trust, as the server's own user) is
#    refused by add_peer() and by a direct INSERT (SQLSTATE 2F003, as
#    dblink), and a row written past the trigger (a restore with triggers
#    off) is refused by the worker: mallory never becomes superuser;
#  - options that read the server's files (sslkey) are refused too;
#  - mallory's peer with a password that the remote asks for works, both
#    ways, with exactly the README's grants on the remote (read and write
#    on the model, nothing on the tables); one whose
#    password the remote does not ask for (trust) is refused when the
#    worker connects (last_error "password required"); only a superuser
#    may waive it (password_required = false), and then it connects;
#  - a role granted SELECT on every table of the schema (the old README
#    grant) reads no password of scuttlebutt.peers; an owner reads its own;
#  - a role without grants cannot call internal functions, nor one that
#    may not write the model (none, or read only) move the sequencer: a
#    later set() by the superuser gets a timestamp of now;
#  - a dialed stream address that answers with another protocol's banner:
#    last_error says so without the banner's bytes.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use IO::Socket::INET;
use POSIX ();
use LibpqTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $n = LibpqTest::new_node('a');
my $port = $n->port;
my $sock = $n->host;
sub qn { LibpqTest::q1($n, @_) }
sub qdb { my ($db, $sql) = @_; return $n->safe_psql($db, $sql) }
# A query that may fail (on a server without what it names): its output
sub try_q
{
	my ($sql) = @_;
	my ($o, $e) = ('', '');
	$n->psql('postgres', $sql, stdout => \$o, stderr => \$e);
	return $o;
}
my $lit = \&LibpqTest::lit;

# Runs $sql as $role in $db: (SQLSTATE or '' on success, stdout, stderr)
sub as_role
{
	my ($role, $db, $sql) = @_;
	my ($out, $err) = ('', '');
	$n->psql($db, "\\set VERBOSITY verbose\n$sql",
		stdout => \$out, stderr => \$err, extra_params => [ '-U', $role ]);
	my ($state) = $err =~ /ERROR:\s+([0-9A-Z]{5}):/;
	return ($state // '', $out, $err);
}

my %pw = (mallory => 'Mal-131-77e1', peer => 'Peer-131-0c4d', secret => 'Secret-131-9f2a');

# TCP: a password for sb_peer, trust for everyone else
open my $hba, '>', $n->data_dir . '/pg_hba.conf' or die $!;
print $hba "local all all trust\n"
  . "host all sb_peer 127.0.0.1/32 scram-sha-256\n"
  . "host all all 127.0.0.1/32 trust\n";
close $hba;
$n->reload;

qn(qq{
	CREATE ROLE mallory LOGIN PASSWORD '$pw{mallory}';
	CREATE ROLE sb_peer LOGIN PASSWORD '$pw{peer}';
	CREATE ROLE sb_trusted LOGIN;
	CREATE ROLE sb_reader LOGIN;
	CREATE ROLE sb_usage LOGIN;
	CREATE ROLE sb_ins LOGIN;
	CREATE DATABASE evil OWNER mallory;
	CREATE DATABASE remote;
	GRANT USAGE ON SCHEMA scuttlebutt TO mallory, sb_reader, sb_usage, sb_ins;
	GRANT SELECT ON scuttlebutt.registry, scuttlebutt.node TO mallory;
	GRANT SELECT, INSERT, UPDATE, DELETE ON scuttlebutt.peers TO mallory;
	GRANT USAGE ON SEQUENCE scuttlebutt.peers_id_seq TO mallory;
	GRANT SELECT ON ALL TABLES IN SCHEMA scuttlebutt TO sb_reader;
	SELECT scuttlebutt.create_model('kv');
	SELECT scuttlebutt.create_model('kv2');
	SELECT scuttlebutt.create_model('seq');
	SELECT scuttlebutt.grant(m, 'mallory', p)
		FROM unnest(ARRAY['kv', 'kv2']) m, unnest(ARRAY['read', 'write']) p;
	SELECT scuttlebutt.grant('seq', 'sb_ins', 'read');
	SELECT scuttlebutt.set('kv', 'here', '1');
	SELECT scuttlebutt.set('kv2', 'here', '1');
});

# The remote: the extension, and the README's grants for a peer role
qdb('remote', q{
	CREATE EXTENSION scuttlebutt;
	SELECT scuttlebutt.create_model('kv');
	SELECT scuttlebutt.create_model('kv2');
	SELECT scuttlebutt.set('kv', 'there', '1');
	SELECT scuttlebutt.set('kv2', 'there', '1');
	SELECT scuttlebutt.grant('kv', 'sb_peer', p) FROM unnest(ARRAY['read', 'write']) p;
	SELECT scuttlebutt.grant('kv2', 'sb_trusted', p) FROM unnest(ARRAY['read', 'write']) p;
});

# mallory's database: whoever reads its scuttlebutt.models makes her superuser
my ($st, $out, $err) = as_role('mallory', 'evil', q{
	CREATE SCHEMA scuttlebutt;
	CREATE FUNCTION scuttlebutt.escalate() RETURNS text LANGUAGE plpgsql AS $$
	BEGIN
		EXECUTE 'ALTER ROLE mallory SUPERUSER';
		RETURN 'model';
	EXCEPTION WHEN OTHERS THEN
		RETURN 'model';
	END $$;
	CREATE FUNCTION scuttlebutt._model_id(text) RETURNS integer LANGUAGE sql AS 'SELECT 1';
	CREATE FUNCTION scuttlebutt._export_header(integer) RETURNS text LANGUAGE sql
		AS $$SELECT '{"id":"EVIL","clock":{}}'$$;
	CREATE VIEW scuttlebutt.models AS SELECT 'kv'::text AS name, scuttlebutt.escalate() AS kind;
});
is($st, '', "mallory's database is set up") or diag($err);

sub mallory_is_superuser
{
	return qn(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}) eq 't';
}

# Waits up to $secs for mallory to become superuser; true if she did
sub escalated_within
{
	my ($secs) = @_;
	my $deadline = time + $secs;
	while (time < $deadline)
	{
		return 1 if mallory_is_superuser();
		usleep(200_000);
	}
	return 0;
}

my $evil = "host=$sock port=$port dbname=evil";

# ---- add_peer() to a database mallory owns, as the server's own user ----
($st, $out, $err) = as_role('mallory', 'postgres',
	"SELECT scuttlebutt.add_peer('kv', " . $lit->($evil) . ")");
is($st, '2F003', 'add_peer without a password: refused (2F003)');
like($err, qr/password is required/, 'add_peer without a password: "password is required"');

# ---- the same row written directly ----
($st, $out, $err) = as_role('mallory', 'postgres',
	"INSERT INTO scuttlebutt.peers (model, transport, conninfo) VALUES ('kv', 'libpq', " . $lit->($evil) . ")");
is($st, '2F003', 'direct INSERT without a password: refused (2F003)');

# ---- an option that reads the server's files ----
($st, $out, $err) = as_role('mallory', 'postgres',
	"SELECT scuttlebutt.add_peer('kv', "
	  . $lit->("host=127.0.0.1 port=$port dbname=remote user=sb_peer password=$pw{peer} sslkey=/etc/ssl/private/server.key")
	  . ")");
is($st, '2F003', 'sslkey: refused for a role that is not superuser');
like($err, qr/"sslkey" is for superusers only/, 'sslkey: the error names the option');

# ---- a row of mallory's that skipped the trigger (a restore with triggers off) ----
my ($rc) = $n->psql('postgres', qq{
	SET session_replication_role = replica;
	INSERT INTO scuttlebutt.peers (model, transport, conninfo, owner)
		VALUES ('kv', 'libpq', @{[ $lit->($evil) ]}, 'mallory');
	RESET session_replication_role;
	SELECT scuttlebutt._wake_worker();
});
is($rc, 0, 'restored row: inserted with the trigger off');
my $restored = qn(q{SELECT max(id) FROM scuttlebutt.peers});
$restored = 0 if $restored eq '';
my ($ok, $row) = LibpqTest::wait_peer($n, "peer_id = $restored",
	sub { ($_[0]{last_error} // '') ne '' }, 30);
like($row->{last_error} // '', qr/password required/, 'restored row: the worker refuses to connect');
ok(!escalated_within(5), 'mallory did not become superuser');
qn("DELETE FROM scuttlebutt.peers WHERE id = $restored") if $restored;

# ---- mallory's peer with a password the remote asks for ----
my $peer_ci = "host=127.0.0.1 port=$port dbname=remote user=sb_peer password=$pw{peer}";
($st, $out, $err) = as_role('mallory', 'postgres',
	"SELECT scuttlebutt.add_peer('kv', " . $lit->($peer_ci) . ")");
is($st, '', 'a password conninfo: accepted') or diag($err);
ok(LibpqTest::poll($n, q{SELECT scuttlebutt.get('kv', 'there') = '1'}, 30),
	'a password conninfo: the remote\'s key was pulled');
ok(LibpqTest::poll($n, q{SELECT count(*) = 1 FROM scuttlebutt.peer_status WHERE model = 'kv' AND state = 'live'}, 30),
	'a password conninfo: live');
is(qdb('remote', q{SELECT scuttlebutt.get('kv', 'here')}), '1',
	'a password conninfo: the local key was pushed, with the README\'s grants alone');
is(try_q(q{SELECT owner::text FROM scuttlebutt.peers WHERE model = 'kv'}), 'mallory',
	'the peer row is owned by its writer');

# ---- a password the remote does not ask for ----
my $trust_ci = "host=127.0.0.1 port=$port dbname=remote user=sb_trusted password=unused";
($st, $out, $err) = as_role('mallory', 'postgres',
	"SELECT scuttlebutt.add_peer('kv2', " . $lit->($trust_ci) . ")");
is($st, '', 'a trusted login with a password in the conninfo: accepted by add_peer') or diag($err);
my $trust_id = qn(q{SELECT coalesce(max(id), 0) FROM scuttlebutt.peers WHERE model = 'kv2'});
($ok, $row) = LibpqTest::wait_peer($n, "peer_id = $trust_id",
	sub { ($_[0]{last_error} // '') ne '' || ($_[0]{state} // '') eq 'live' }, 30);
like($row->{last_error} // '', qr/password required.*did not ask for the password/,
	'a password not asked for: the worker closes the session');
is(qn(q{SELECT scuttlebutt.get('kv2', 'there')}), '', 'a password not asked for: nothing was pulled');

# ---- only a superuser waives it ----
($st) = as_role('mallory', 'postgres',
	"UPDATE scuttlebutt.peers SET password_required = false WHERE id = $trust_id");
is($st, '42501', 'password_required = false: refused to mallory');
($st) = as_role('mallory', 'postgres',
	"UPDATE scuttlebutt.peers SET owner = 'sb_reader' WHERE id = $trust_id");
is($st, '42501', 'owner: mallory may not hand her peer to another role');
try_q("UPDATE scuttlebutt.peers SET password_required = false WHERE id = $trust_id");
ok(LibpqTest::poll($n, q{SELECT scuttlebutt.get('kv2', 'there') = '1'}, 30),
	'password_required = false set by a superuser: the peer connects');

# ---- secrets: only their owner reads them ----
LibpqTest::add_peer($n, 'seq', "host=127.0.0.1 port=$port dbname=nosuch user=sb_peer password=$pw{secret}", send => 'false');
($st, $out) = as_role('sb_reader', 'postgres',
	"SELECT count(*) FROM scuttlebutt.peers WHERE conninfo LIKE '%Secret-131%' OR conninfo LIKE '%Peer-131%'");
is($out, '0', 'SELECT on every table of the schema: no password read from scuttlebutt.peers');
($st, $out) = as_role('mallory', 'postgres',
	"SELECT count(*) FROM scuttlebutt.peers WHERE conninfo LIKE '%Secret-131%'");
is($out, '0', 'mallory reads no password of a peer not hers');
($st, $out) = as_role('mallory', 'postgres',
	"SELECT count(*) FROM scuttlebutt.peers WHERE conninfo LIKE '%Peer-131%'");
is($out, '1', 'mallory reads her own peer\'s conninfo');
is(qdb('remote', q{SELECT has_table_privilege('sb_peer', 'scuttlebutt.peers', 'SELECT')
	OR has_any_column_privilege('sb_peer', 'scuttlebutt.peers', 'SELECT')}), 'f',
	'the README\'s peer role cannot read scuttlebutt.peers');
is(qdb('remote', q{SELECT bool_or(has_table_privilege('sb_peer', 'scuttlebutt.' || t, p))
	FROM unnest(ARRAY['updates', 'clocks', 'registry', 'grants']) t,
		 unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p}), 'f',
	'the README\'s peer role may write none of the tables');

# ---- internal functions and the sequencer ----
# a first write makes the model's sequencer slot, which the calls below could move
qn(q{SELECT scuttlebutt.set('seq', 'k0', '0')});
my $seq_id = qn(q{SELECT id FROM scuttlebutt.registry WHERE name = 'seq'});
my $node_id = qn(q{SELECT scuttlebutt.node_id()});
($st, $out, $err) = as_role('sb_usage', 'postgres',
	"SELECT scuttlebutt._next_local_ts($seq_id, '$node_id', 1.79e308)");
is($st, '42501', 'no grant: _next_local_ts is refused');
($st, $out, $err) = as_role('sb_ins', 'postgres',
	"SELECT scuttlebutt._next_local_ts($seq_id, '$node_id', 1.78e308)");
is($st, '42501', 'read only: _next_local_ts is refused');
($st) = as_role('sb_usage', 'postgres', q{SELECT scuttlebutt._push('seq', '["x"]')});
is($st, '42501', 'no grant: _push is refused');
($st) = as_role('sb_usage', 'postgres', q{SELECT * FROM scuttlebutt._peer_status()});
is($st, '42501', 'no grant: _peer_status is refused');
($st) = as_role('sb_usage', 'postgres', q{SELECT scuttlebutt.set('seq', 'k', '1')});
is($st, '42501', 'no grant: set() is refused');
($st) = as_role('sb_usage', 'postgres', q{SELECT scuttlebutt.set_many('seq', '{"a": 1, "b": 2}')});
is($st, '42501', 'no grant: set_many() is refused');
($st, $out, $err) = as_role('sb_ins', 'postgres', q{SELECT scuttlebutt.set('seq', 'k', '1')});
is($st, '42501', 'read only: set() is refused');
like($err, qr/permission denied for scuttlebutt model "seq": write privilege required/,
	'read only: the error names the model and the privilege');
($st) = as_role('sb_ins', 'postgres', q{INSERT INTO scuttlebutt.updates VALUES (1, 'x', 1, 'k', '[]')});
is($st, '42501', 'read only: a direct INSERT into scuttlebutt.updates is refused');
my ($src, $ts_out, $ts_err) = (0, '', '');
$src = $n->psql('postgres',
	q{SELECT scuttlebutt.set('seq', 'k', '1') - extract(epoch FROM clock_timestamp()) * 1000},
	stdout => \$ts_out, stderr => \$ts_err);
is($src, 0, 'a later set() by the superuser works') or diag($ts_err);
ok($ts_out ne '' && abs($ts_out) < 60_000, "its timestamp is now (off by $ts_out ms)");

# ---- a stream address that answers with a banner ----
my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 5, ReuseAddr => 1)
  or die "listen: $!";
my $bport = $listen->sockport;
my $child = fork();
die "fork: $!" unless defined $child;
if ($child == 0)
{
	# a client may close first; and the child must end without running the
	# parent's END blocks or destructors (they would stop the parent's
	# servers): PostgreSQL 17's Cluster.pm turns SIGTERM into a die
	$SIG{PIPE} = 'IGNORE';
	$SIG{TERM} = $SIG{INT} = 'DEFAULT';
	while (1)
	{
		my $c = $listen->accept;
		if (!$c)
		{
			next if $!{EINTR};
			POSIX::_exit(0);
		}
		print $c "SSH-2.0-OpenSSH_9.2p1 Banner131\r\n";
		usleep(100_000);
		close $c;
	}
}
close $listen;
my $sid = qn("SELECT scuttlebutt.add_stream_peer('kv', '127.0.0.1', $bport, receive => false)");
($ok, $row) = LibpqTest::wait_peer($n, "peer_id = $sid", sub { ($_[0]{last_error} // '') ne '' }, 30);
ok($ok, 'banner: the peer has a last_error');
unlike($row->{last_error} // '', qr/SSH|OpenSSH|Banner131/, 'banner: last_error holds none of its bytes');
like($row->{last_error} // '', qr/no scuttlebutt header \(\d+ bytes\)/, 'banner: last_error says what happened');
unlike(LibpqTest::visible_text($n), qr/OpenSSH|Banner131/, 'banner: peer_status and connection_errors hold none of it');
# the same address as a libpq peer: libpq quotes the first byte it got
for my $mode (qw(prefer disable))
{
	my $lid = qn(qq{SELECT scuttlebutt.add_peer('kv', 'host=127.0.0.1 port=$bport dbname=x sslmode=$mode', receive => false)});
	($ok, $row) = LibpqTest::wait_peer($n, "peer_id = $lid", sub { ($_[0]{last_error} // '') =~ /received/ }, 30);
	ok($ok, "banner, libpq sslmode=$mode: last_error says what libpq received")
	  or diag($row->{last_error} // 'no last_error');
	unlike($row->{last_error} // '', qr/(negotiation|but received): S/,
		"banner, libpq sslmode=$mode: last_error does not quote the byte the address sent");
	qn(qq{SELECT scuttlebutt.remove_peer($lid)});
}
kill 'TERM', $child;
waitpid($child, 0);

ok(!mallory_is_superuser(), 'in the end mallory is still not superuser');

done_testing();
