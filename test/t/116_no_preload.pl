# Without shared_preload_libraries there is no replication worker: the
# local API (models, events, values, history, import/export) still works,
# and the replication functions add_stream_peer() and wait_for_sync() raise
# an ERROR whose hint says to add scuttlebutt to shared_preload_libraries.
# Nothing listens on scuttlebutt.port; peer_status and connection_errors
# still answer.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $sb_port = PostgreSQL::Test::Cluster::get_free_port();
my $node = PostgreSQL::Test::Cluster->new('nopreload');
$node->init(extra => [ '--encoding=UTF8', '--no-locale' ]);
$node->append_conf('postgresql.conf', <<"EOC");
scuttlebutt.listen_addresses = '127.0.0.1'
scuttlebutt.port = $sb_port
log_min_messages = warning
EOC

# The extension is created in "postgres" while the library is preloaded
# (as a server that used to preload it), and the server then restarts
# without it; a new database then gets the extension without preloading.
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'scuttlebutt'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION scuttlebutt');
# smart: psql has exited, but its backend may not have read its goodbye
# yet; a fast stop would end it with a FATAL, which the test counts below
$node->stop('smart');
$node->append_conf('postgresql.conf', "shared_preload_libraries = ''\n");
$node->start;

# Runs SQL in a new session; on an error, reports it and returns undef, so
# that every assertion below is made (and fails on its own) rather than
# the script dying at the first error
sub q1
{
	my ($sql, $db) = @_;
	my ($rc, $out, $err) = $node->psql($db // 'postgres', $sql, on_error_stop => 1);
	return $out if $rc == 0;
	diag("$sql\n=> " . (split /\n/, $err)[0]);
	return undef;
}

is(q1('SHOW shared_preload_libraries'), '', 'the library is not preloaded');
is(q1(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'scuttlebutt replication worker'}),
	0, 'no replication worker runs');
ok(!IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $sb_port, Proto => 'tcp'),
	'nothing listens on scuttlebutt.port');
q1('CREATE DATABASE fresh');
my ($rc, $out, $err) = $node->psql('fresh', 'CREATE EXTENSION scuttlebutt');
is($rc, 0, 'CREATE EXTENSION works without preloading') or diag($err);

# ---- the local API works ----
q1(q{SELECT scuttlebutt.create_model('kv');
	 SELECT scuttlebutt.create_model('ev', 'events');
	 SELECT scuttlebutt.create_model('val', 'value')});
q1(q{SELECT scuttlebutt.set('kv', 'x', '{"b":1,"10":2}');
	 SELECT scuttlebutt.set('kv', 'y', '[1.5,null]');
	 SELECT scuttlebutt.delete('kv', 'y');
	 SELECT scuttlebutt.emit('ev', 'hello', '"world"');
	 SELECT scuttlebutt.set_value('val', '1e21')});
is(q1(q{SELECT scuttlebutt.to_json('kv')}), '{"x": {"b": 1, "10": 2}}', 'set / delete / to_json');
is(q1(q{SELECT scuttlebutt.get('kv', 'x')}), '{"b": 1, "10": 2}', 'get');
is(q1(q{SELECT string_agg(event || '=' || data::text, ',') FROM scuttlebutt.events('ev')}), 'hello="world"', 'emit / events');
is(q1(q{SELECT scuttlebutt.get_value('val')}), '1000000000000000000000', 'set_value / get_value');
like(q1(q{SELECT h FROM scuttlebutt.history('kv') h WHERE h::text LIKE '[["x"%'}),
	qr/^\[\["x",\{"10":2,"b":1\}\],[0-9.]+,"[^"]+"\]$/, 'history() in wire form');
is(q1(q{SELECT scuttlebutt.apply_update('kv', '[["remote",true],1795477184259,"PEER"]')}), 't', 'apply_update');
q1(q{SELECT scuttlebutt.create_model('copy')});
is(q1(q{SELECT scuttlebutt.import('copy', (SELECT string_agg(l, E'\n') FROM scuttlebutt.export('kv') l))}), 3,
	'export / import');
is(q1(q{SELECT scuttlebutt.to_json('copy')}), '{"x": {"b": 1, "10": 2}, "remote": true}', 'the import holds the same');
is(q1(q{SELECT scuttlebutt.set_many('kv', '{"a":1,"b":2}')}), 2, 'set_many');

# ---- the replication functions say what to configure ----
q1(q{CREATE FUNCTION error_of(q text) RETURNS text LANGUAGE plpgsql AS $$
	DECLARE st text; msg text; hint text;
	BEGIN
		EXECUTE q;
		RETURN 'no error';
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
		RETURN st || E'\n' || msg || E'\n' || hint;
	END $$});
for my $call ("SELECT scuttlebutt.add_stream_peer('kv', '127.0.0.1', 5999)",
	"SELECT scuttlebutt.add_stream_peer('kv', '127.0.0.1', 5999, send => false, receive => true)",
	"SELECT scuttlebutt.wait_for_sync('kv', '1s')",
	"SELECT scuttlebutt.wait_for_sync('kv')")
{
	my ($st, $msg, $hint) = split /\n/, q1("SELECT error_of(\$q\$$call\$q\$)") // '', -1;
	is($st, '55000', "$call: ERROR object_not_in_prerequisite_state");
	like($msg, qr/replication worker/, "$call: the message says the worker is needed");
	like($hint // '', qr/shared_preload_libraries/, "$call: the hint says to set shared_preload_libraries");
}
($rc, $out, $err) = $node->psql('postgres', "SELECT scuttlebutt.add_stream_peer('kv', '127.0.0.1', 5999)");
isnt($rc, 0, 'psql: add_stream_peer fails');
like($err, qr/ERROR:.*\n(.*\n)*HINT:.*shared_preload_libraries/, 'psql shows the ERROR and the HINT');
unlike($err, qr/FATAL/, 'and the session survives it (no FATAL)');
is(q1('SELECT count(*) FROM scuttlebutt.peers'), 0, 'no peer was stored');

# ---- monitoring still answers ----
is(q1('SELECT count(*) FROM scuttlebutt.peer_status'), 0, 'peer_status: no connection');
is(q1('SELECT count(*) FROM scuttlebutt.connection_errors'), 0, 'connection_errors: nothing');
q1(q{INSERT INTO scuttlebutt.peers (model, transport, host, port) VALUES ('kv', 'stream', '127.0.0.1', 5999)});
is(q1(q{SELECT direction || ' ' || model || ' ' || remote_addr || ' ' || coalesce(state, 'NULL') FROM scuttlebutt.peer_status}),
	'out kv 127.0.0.1:5999 NULL', 'a configured peer shows in peer_status with a NULL state (not held)');

my @fatal = slurp_file($node->logfile) =~ /^.*FATAL:.*$/mg;
is(scalar @fatal, 0, 'no session ended with a FATAL error') or diag("first of them: $fatal[0]");

$node->stop;
done_testing();
