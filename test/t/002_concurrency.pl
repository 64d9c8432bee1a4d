# Concurrent local writes to one model: eight pgbench clients call set()
# and emit() at once, in transactions of several shapes.  Per source (here
# the node itself), commit order must equal timestamp order: a peer drops
# any update whose timestamp is not above what it already has from that
# source, so an update that commits after a later-stamped one would be
# lost for every peer that synced in between.
#
# The true commit order comes from logical decoding (test_decoding emits
# transactions in commit order), and is cross-checked with commit
# timestamps (track_commit_timestamp).  Every write must be present.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use Test::More;

my $clients = 8;
my $per_client = 150;
my $total = $clients * $per_client;

my $node = ScuttlebuttTest::new_node(
	'concurrency',
	allows_streaming => 'logical',
	conf => "track_commit_timestamp = on\nshared_buffers = 32MB\n");

$node->safe_psql(
	'postgres', q{
	SELECT scuttlebutt.create_model('kv', 'model');
	SELECT scuttlebutt.create_model('ev', 'events');
	-- what each transaction wrote, as the functions returned it
	CREATE TABLE writes (
		client int NOT NULL,
		script text NOT NULL,
		key text, set_ts float8,
		key2 text, set2_ts float8,
		emit_ts float8
	);
	SELECT pg_create_logical_replication_slot('commit_order', 'test_decoding');
});
my $node_id = $node->safe_psql('postgres', 'SELECT scuttlebutt.node_id()');
my %model_id = map { split /\|/ }
  split /\n/, $node->safe_psql('postgres', 'SELECT name, id FROM scuttlebutt.registry');

# Transaction shapes (weights after @): set then emit (two models, locks
# taken in the same order everywhere), emit only, two sets of one model,
# and a single autocommit statement.
$node->pgbench(
	"--no-vacuum --client=$clients --jobs=2 --transactions=$per_client",
	0,
	[qr{processed: $total/$total}],
	[qr{^$}],
	'pgbench: concurrent set() and emit() on one model',
	{
		'002_both@3' => q{
\set k random(1, 16)
BEGIN;
SELECT scuttlebutt.set('kv', 'key' || :k, jsonb_build_object('client', :client_id, 'k', :k)) AS set_ts \gset
SELECT scuttlebutt.emit('ev', 'both', jsonb_build_object('client', :client_id, 'k', :k)) AS emit_ts \gset
INSERT INTO writes (client, script, key, set_ts, emit_ts) VALUES (:client_id, 'both', 'key' || :k, :set_ts, :emit_ts);
COMMIT;
},
		'002_emit@2' => q{
BEGIN;
SELECT scuttlebutt.emit('ev', 'only', jsonb_build_object('client', :client_id)) AS emit_ts \gset
INSERT INTO writes (client, script, emit_ts) VALUES (:client_id, 'emit', :emit_ts);
COMMIT;
},
		'002_twosets@2' => q{
\set k random(1, 16)
\set k2 random(1, 16)
BEGIN;
SELECT scuttlebutt.set('kv', 'key' || :k, jsonb_build_object('client', :client_id)) AS set_ts \gset
SELECT scuttlebutt.set('kv', 'other' || :k2, jsonb_build_object('client', :client_id)) AS set2_ts \gset
INSERT INTO writes (client, script, key, set_ts, key2, set2_ts)
	VALUES (:client_id, 'twosets', 'key' || :k, :set_ts, 'other' || :k2, :set2_ts);
COMMIT;
},
		'002_auto@1' => q{
\set k random(1, 16)
INSERT INTO writes (client, script, key, set_ts)
	SELECT :client_id, 'auto', 'key' || :k, scuttlebutt.set('kv', 'key' || :k, jsonb_build_object('client', :client_id));
},
	},
	'postgres');

is($node->safe_psql('postgres', 'SELECT count(*) FROM writes'), $total, 'every transaction recorded its writes');

# ---------------------------------------------------------------------------
# Commit order from logical decoding
# ---------------------------------------------------------------------------

my $changes = $node->safe_psql('postgres',
	q{SELECT data FROM pg_logical_slot_get_changes('commit_order', NULL, NULL, 'include-xids', '1', 'skip-empty-xacts', '1')});

# per model: the timestamps of this node's updates, in commit order, and
# the same for the clock row
my (%upd_seq, %clock_seq);
my $txns = 0;
for my $line (split /\n/, $changes)
{
	$txns++ if $line =~ /^COMMIT /;
	next unless $line =~ /^table scuttlebutt\.(updates|clocks): (INSERT|UPDATE): /;
	my $table = $1;
	# with a changed primary key, UPDATE shows "old-key: ... new-tuple: ..."
	my $tuple = $line =~ /new-tuple: (.*)$/ ? $1 : $line;
	my ($mid) = $tuple =~ /model_id\[integer\]:(\d+)/;
	my ($src) = $tuple =~ /source\[text\]:'((?:[^']|'')*)'/;
	my ($ts) = $tuple =~ /ts\[double precision\]:(\S+)/;
	die "cannot parse decoded change: $line" unless defined $mid && defined $src && defined $ts;
	next unless $src eq $node_id;
	my $seqs = $table eq 'updates' ? \%upd_seq : \%clock_seq;
	push @{ $seqs->{$mid} }, $ts;
}
cmp_ok($txns, '>=', $total, "logical decoding saw every transaction ($txns)");

my $n_sets = $node->safe_psql('postgres',
	q{SELECT count(set_ts) + count(set2_ts) FROM writes});
my $n_emits = $node->safe_psql('postgres', q{SELECT count(emit_ts) FROM writes});

for my $m ([ 'kv', $n_sets ], [ 'ev', $n_emits ])
{
	my ($name, $expected) = @$m;
	my $mid = $model_id{$name};
	for my $seq ([ 'updates', $upd_seq{$mid} ], [ 'clock', $clock_seq{$mid} ])
	{
		my ($what, $list) = @$seq;
		$list ||= [];
		my @bad;
		for my $i (1 .. $#$list)
		{
			push @bad, "#$i: $list->[$i] committed after $list->[$i-1]"
			  unless $list->[$i] > $list->[ $i - 1 ];
		}
		ok(!@bad,
			"$name: $what timestamps strictly increase in commit order (logical decoding, "
			  . scalar(@$list) . " changes)")
		  or diag(join("\n", @bad[ 0 .. ($#bad < 9 ? $#bad : 9) ]));
	}
	my %distinct = map { $_ => 1 } @{ $upd_seq{$mid} || [] };
	is(scalar(keys %distinct), $expected, "$name: one stored update per local write in the decoded changes");
}

# ---------------------------------------------------------------------------
# Cross-check with commit timestamps
# ---------------------------------------------------------------------------

for my $m ([ 'kv', 'greatest(set_ts, set2_ts)', 'least(set_ts, set2_ts)', 'set_ts IS NOT NULL' ],
	[ 'ev', 'emit_ts', 'emit_ts', 'emit_ts IS NOT NULL' ])
{
	my ($name, $last, $first, $filter) = @$m;
	# pairs of transactions consecutive in commit-timestamp order whose
	# timestamps are out of order, or whose commit timestamps tie
	my $bad = $node->safe_psql(
		'postgres', qq{
		SELECT string_agg(format('%s(%s..%s) then %s(%s..%s)', prev_commit, prev_first, prev_last, commit_ts, first_ts, last_ts), E'\\n')
		FROM (
			SELECT pg_xact_commit_timestamp(xmin) AS commit_ts, $first AS first_ts, $last AS last_ts,
				   lag(pg_xact_commit_timestamp(xmin)) OVER w AS prev_commit,
				   lag($first) OVER w AS prev_first,
				   lag($last) OVER w AS prev_last
			FROM writes WHERE $filter
			WINDOW w AS (ORDER BY pg_xact_commit_timestamp(xmin), $first)
		) t
		WHERE prev_commit IS NOT NULL AND (NOT first_ts > prev_last OR commit_ts = prev_commit)});
	is($bad, '', "$name: in commit-timestamp order, each transaction's timestamps come after the previous one's");
}

is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM writes WHERE script = 'twosets' AND NOT set2_ts > set_ts}),
	'0',
	'kv: two set() calls in one transaction are stamped in call order');

# ---------------------------------------------------------------------------
# Every write is there
# ---------------------------------------------------------------------------

is( $node->safe_psql(
		'postgres', q{
		SELECT count(*), count(DISTINCT ts) FROM (
			SELECT set_ts AS ts FROM writes WHERE set_ts IS NOT NULL
			UNION ALL SELECT set2_ts FROM writes WHERE set2_ts IS NOT NULL) t}),
	"$n_sets|$n_sets",
	'kv: every set() got its own timestamp');
is($node->safe_psql('postgres', q{SELECT count(DISTINCT emit_ts) FROM writes}),
	$n_emits, 'ev: every emit() got its own timestamp');

is($node->safe_psql('postgres', q{SELECT count(*) FROM scuttlebutt.events('ev')}),
	$n_emits, 'ev: the log holds one event per emit()');
is( $node->safe_psql(
		'postgres', q{
		SELECT count(*) FROM writes w
		WHERE w.emit_ts IS NOT NULL AND NOT EXISTS (
			SELECT 1 FROM scuttlebutt.events('ev') e
			WHERE e.ts = w.emit_ts AND e.source = scuttlebutt.node_id()
			  AND e.event = CASE w.script WHEN 'both' THEN 'both' ELSE 'only' END
			  AND (e.data ->> 'client')::int = w.client)}),
	'0',
	'ev: every emit() is in the log with its timestamp and data');

# the latest set() of each key, by timestamp, is the value held
my $kv_mismatch = $node->safe_psql(
	'postgres', q{
	WITH s AS (
		SELECT key, set_ts AS ts, client FROM writes WHERE set_ts IS NOT NULL
		UNION ALL SELECT key2, set2_ts, client FROM writes WHERE set2_ts IS NOT NULL),
	latest AS (SELECT DISTINCT ON (key) key, ts, client FROM s ORDER BY key, ts DESC)
	SELECT string_agg(format('%s: expected ts %s client %s, got %s %s', l.key, l.ts, l.client, e.ts, e.value), E'\n')
	FROM latest l FULL JOIN scuttlebutt.entries('kv') e USING (key)
	WHERE e.ts IS DISTINCT FROM l.ts OR (e.value ->> 'client')::int IS DISTINCT FROM l.client});
is($kv_mismatch, '', 'kv: each key holds its latest set()');

is($node->safe_psql('postgres', q{SELECT (scuttlebutt.clock('kv') ->> scuttlebutt.node_id())::float8 = max(greatest(set_ts, set2_ts)) FROM writes}),
	't', 'kv: the clock is the latest set()');
is($node->safe_psql('postgres', q{SELECT (scuttlebutt.clock('ev') ->> scuttlebutt.node_id())::float8 = max(emit_ts) FROM writes}),
	't', 'ev: the clock is the latest emit()');

$node->safe_psql('postgres', q{SELECT pg_drop_replication_slot('commit_order')});
$node->stop;
done_testing();
