# Concurrent local writes to one model: eight pgbench clients call set()
# and emit() at once, in transactions of several shapes, while tailers
# read the models the way a peer does: history(model, clock) again and
# again, raising their clock each time.
#
# A peer drops any update whose timestamp is not above what it already has
# from that source, so a reader must never be shown an update with
# timestamp t while an update of the same source with a smaller timestamp
# can still commit: that one would be lost for every peer that synced in
# between.  What is checked depends on how timestamps are taken:
#
#  - Preloaded library (the default node): local writes take timestamps
#    from a shared-memory sequencer and may COMMIT out of timestamp order;
#    readers must still only ever see, per source, a prefix in timestamp
#    order (publication order).  Commit order is only reported (commit
#    timestamps), not checked.
#
#  - Library not preloaded (a second node, set up like 116_no_preload.pl):
#    local writes still serialize on the clock row, and commit order must
#    equal timestamp order.  The true commit order comes from logical
#    decoding (test_decoding emits transactions in commit order), cross-
#    checked with commit timestamps (track_commit_timestamp).
#
# On both nodes four tailers run during the load, each a plpgsql procedure
# polling in its own session and committing after each poll: A (kv) and
# B (ev) in READ COMMITTED, each poll one statement returning the history
# after the tailer's clock, clock() and pg_current_snapshot() (one
# snapshot); C (kv) and D (ev) in REPEATABLE READ, each poll a transaction
# of two statements (the history, then clock() and the snapshot).  After
# each poll the tailer raises its clock, per source, to the greatest
# timestamp it was sent and the clock() it read.  When the writers are
# done each tailer polls once more, and then:
#
#  - it was sent every emit() (ev), every update the model holds (kv), and
#    nothing that was not written;
#  - kv keeps only the latest update of a key, so a tailer may miss a
#    set() that was overwritten; but one it was not sent must not be its
#    key's value in the snapshot of the poll that took the tailer's clock
#    past its timestamp, nor in any later one (each writer records its
#    transaction id and each poll its snapshot, so this is exact);
#  - no poll returned an update at or below the clock it sent (so nothing
#    twice), each source's updates arrived in increasing timestamp order,
#    and neither its clock nor the clock() it read ever went down;
#  - every update a poll returned had committed in the snapshot it
#    recorded (the poll really read in that one snapshot);
#  - it polled, with rows returned, many times during the load.
#
# Also on both: every write is present, each with its own timestamp, two
# set() calls in one transaction are stamped in call order, each key holds
# its latest set(), and the clock is the latest write.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use ScuttlebuttTest;
use Test::More;
use Time::HiRes qw(time);

my $clients = 8;

# polls during the load that must have returned rows, per tailer
my $min_polls = 20;

# name => [model, isolation level]
my %tailers = (
	A => [ 'kv', 'read committed' ],
	B => [ 'ev', 'read committed' ],
	C => [ 'kv', 'repeatable read' ],
	D => [ 'ev', 'repeatable read' ],);

# ---------------------------------------------------------------------------
# Shared by both nodes
# ---------------------------------------------------------------------------

# Asserts that a query returns no rows; shows the first ten on failure.
sub none
{
	my ($node, $name, $sql) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my @rows = grep { $_ ne '' } split /\n/, $node->safe_psql('postgres', $sql);
	ok(!@rows, $name)
	  or diag(scalar(@rows) . " offending rows, the first ones:\n" . join("\n", @rows[ 0 .. ($#rows < 9 ? $#rows : 9) ]));
}

# Models, the writes table and the tailers' procedure and tables.
sub setup
{
	my ($node) = @_;
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
			emit_ts float8,
			xid xid8 NOT NULL DEFAULT pg_current_xact_id()
		);

		-- the tailers stop after their next poll once this has a row
		CREATE UNLOGGED TABLE tail_stop (at timestamptz NOT NULL);
		-- one row per poll
		CREATE UNLOGGED TABLE tail_polls (
			tailer text NOT NULL,
			poll int NOT NULL,
			isolation text NOT NULL,
			final boolean NOT NULL,     -- taken after the writers finished
			sent jsonb NOT NULL,        -- the clock it sent to history()
			read_clock jsonb NOT NULL,  -- clock() in the same snapshot
			snap pg_snapshot NOT NULL,  -- that snapshot
			rows int NOT NULL,          -- history rows returned
			clock jsonb NOT NULL,       -- the tailer's clock after it
			PRIMARY KEY (tailer, poll)
		);
		-- every line a poll returned, in order (n); also 'clock {...}' for
		-- the clock() and 'snap ...' for pg_current_snapshot()
		CREATE UNLOGGED TABLE tail_rows (
			tailer text NOT NULL,
			poll int NOT NULL,
			n bigint NOT NULL,
			line text NOT NULL,
			PRIMARY KEY (tailer, poll, n)
		);
		CREATE VIEW tail_seen AS
			SELECT tailer, poll, n, line, line::json -> 0 AS change,
				   (line::json ->> 1)::float8 AS ts, line::json ->> 2 AS source
			FROM tail_rows WHERE line LIKE '[%';

		-- Tails a model until tail_stop has a row, then polls once more.
		-- Runs in the session's default isolation level: in READ COMMITTED
		-- a poll is one statement (one snapshot), in REPEATABLE READ two
		-- statements in one transaction.  Each poll commits; the first
		-- statement of the next one reads the stop flag.
		CREATE PROCEDURE tail(who text, mdl text, nap float8 DEFAULT 0.002)
		LANGUAGE plpgsql AS $proc$
		DECLARE
			clk jsonb := '{}';
			p int := 0;
			stopping boolean := false;
			got_clock jsonb;
			got_snap pg_snapshot;
			nrows int;
			deadline timestamptz := clock_timestamp() + interval '5 minutes';
		BEGIN
			WHILE NOT stopping LOOP
				p := p + 1;
				stopping := EXISTS (SELECT FROM tail_stop);
				IF current_setting('transaction_isolation') = 'read committed' THEN
					INSERT INTO tail_rows (tailer, poll, n, line)
					SELECT who, p, row_number() OVER (), line FROM (
						SELECT h::text AS line FROM scuttlebutt.history(mdl, clk) h
						UNION ALL
						SELECT 'clock ' || scuttlebutt.clock(mdl)::text
						UNION ALL
						SELECT 'snap ' || pg_current_snapshot()::text) t;
				ELSE
					INSERT INTO tail_rows (tailer, poll, n, line)
					SELECT who, p, n, h::text FROM scuttlebutt.history(mdl, clk) WITH ORDINALITY AS t(h, n);
					INSERT INTO tail_rows (tailer, poll, n, line)
					VALUES (who, p, -1, 'clock ' || scuttlebutt.clock(mdl)::text),
						   (who, p, 0, 'snap ' || pg_current_snapshot()::text);
				END IF;

				SELECT count(*) FILTER (WHERE line LIKE '[%'),
					   (array_agg(substr(line, 7)::jsonb) FILTER (WHERE line LIKE 'clock %'))[1],
					   (array_agg(substr(line, 6)::pg_snapshot) FILTER (WHERE line LIKE 'snap %'))[1]
				INTO nrows, got_clock, got_snap
				FROM tail_rows WHERE tailer = who AND poll = p;

				-- per source: the greatest of the old clock, the timestamps
				-- returned and the clock() read
				INSERT INTO tail_polls (tailer, poll, isolation, final, sent, read_clock, snap, rows, clock)
				SELECT who, p, current_setting('transaction_isolation'), stopping, clk, got_clock, got_snap, nrows,
					   coalesce(jsonb_object_agg(s, ts), '{}')
				FROM (
					SELECT s, max(ts) AS ts FROM (
						SELECT key AS s, value::float8 AS ts FROM jsonb_each_text(clk)
						UNION ALL
						SELECT key, value::float8 FROM jsonb_each_text(got_clock)
						UNION ALL
						SELECT source, ts FROM tail_seen WHERE tailer = who AND poll = p) a
					GROUP BY s) b
				RETURNING clock INTO clk;

				IF NOT stopping THEN
					PERFORM pg_sleep(nap);
					stopping := clock_timestamp() > deadline;   -- (not final: fails the test)
				END IF;
				COMMIT;
			END LOOP;
		END
		$proc$;
	});
}

# Starts the tailers in their own sessions and waits until each has polled.
sub start_tailers
{
	my ($node, $label) = @_;
	my %run;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	for my $t (sort keys %tailers)
	{
		my ($model, $iso) = @{ $tailers{$t} };
		my $r = { out => "$dir/tail_$t.out", err => "$dir/tail_$t.err" };
		$r->{h} = IPC::Run::start(
			[
				'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
				'-c', "SET default_transaction_isolation = '$iso'",
				'-c', "CALL tail('$t', '$model')"
			],
			'<', \undef, '>', $r->{out}, '2>', $r->{err},
			IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
		$run{$t} = $r;
	}
	my $n = scalar keys %tailers;
	ok($node->poll_query_until('postgres', "SELECT count(DISTINCT tailer) = $n FROM tail_polls"),
		"$label: the $n tailers are polling")
	  or diag(join("\n", map { "$_: " . slurp_file($run{$_}{err}) } sort keys %run));
	return \%run;
}

# Asks the tailers to stop and waits for them.
sub stop_tailers
{
	my ($node, $label, $run) = @_;
	$node->safe_psql('postgres', 'INSERT INTO tail_stop VALUES (now())');
	for my $t (sort keys %$run)
	{
		my $r = $run->{$t};
		ok(eval { $r->{h}->finish } && $r->{h}->result == 0, "$label: tailer $t ended")
		  or diag("$@" . slurp_file($r->{err}));
	}
}

# The writer load.  Transaction shapes (weights after @): set then emit
# (two models, locks taken in the same order everywhere), emit only, two
# sets of one model, and a single autocommit statement.
sub run_writers
{
	my ($node, $label, $per_client) = @_;
	my $total = $clients * $per_client;
	my $t0 = time;
	$node->pgbench(
		"--no-vacuum --client=$clients --jobs=2 --transactions=$per_client",
		0,
		[qr{processed: $total/$total}],
		[qr{^$}],
		"$label: pgbench: concurrent set() and emit() on one model",
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
	note(sprintf('%s: %d transactions in %.1fs', $label, $total, time - $t0));
	is($node->safe_psql('postgres', 'SELECT count(*) FROM writes'), $total, "$label: every transaction recorded its writes");
}

# What must hold whatever the commit order: every write is there.
sub check_writes
{
	my ($node, $label) = @_;
	my $n_sets = $node->safe_psql('postgres', q{SELECT count(set_ts) + count(set2_ts) FROM writes});
	my $n_emits = $node->safe_psql('postgres', q{SELECT count(emit_ts) FROM writes});

	is( $node->safe_psql(
			'postgres',
			q{SELECT count(*) FROM writes WHERE script = 'twosets' AND NOT set2_ts > set_ts}),
		'0',
		"$label: kv: two set() calls in one transaction are stamped in call order");
	is( $node->safe_psql(
			'postgres', q{
			SELECT count(*), count(DISTINCT ts) FROM (
				SELECT set_ts AS ts FROM writes WHERE set_ts IS NOT NULL
				UNION ALL SELECT set2_ts FROM writes WHERE set2_ts IS NOT NULL) t}),
		"$n_sets|$n_sets",
		"$label: kv: every set() got its own timestamp");
	is($node->safe_psql('postgres', q{SELECT count(DISTINCT emit_ts) FROM writes}),
		$n_emits, "$label: ev: every emit() got its own timestamp");

	is($node->safe_psql('postgres', q{SELECT count(*) FROM scuttlebutt.events('ev')}),
		$n_emits, "$label: ev: the log holds one event per emit()");
	none(
		$node,
		"$label: ev: every emit() is in the log with its timestamp and data",
		q{
		SELECT w.client, w.script, w.emit_ts FROM writes w
		WHERE w.emit_ts IS NOT NULL AND NOT EXISTS (
			SELECT 1 FROM scuttlebutt.events('ev') e
			WHERE e.ts = w.emit_ts AND e.source = scuttlebutt.node_id()
			  AND e.event = CASE w.script WHEN 'both' THEN 'both' ELSE 'only' END
			  AND (e.data ->> 'client')::int = w.client)});

	# the latest set() of each key, by timestamp, is the value held
	none(
		$node,
		"$label: kv: each key holds its latest set()",
		q{
		WITH s AS (
			SELECT key, set_ts AS ts, client FROM writes WHERE set_ts IS NOT NULL
			UNION ALL SELECT key2, set2_ts, client FROM writes WHERE set2_ts IS NOT NULL),
		latest AS (SELECT DISTINCT ON (key) key, ts, client FROM s ORDER BY key, ts DESC)
		SELECT format('%s: expected ts %s client %s, got %s %s', l.key, l.ts, l.client, e.ts, e.value)
		FROM latest l FULL JOIN scuttlebutt.entries('kv') e USING (key)
		WHERE e.ts IS DISTINCT FROM l.ts OR (e.value ->> 'client')::int IS DISTINCT FROM l.client});

	is( $node->safe_psql(
			'postgres',
			q{SELECT (scuttlebutt.clock('kv') ->> scuttlebutt.node_id())::float8 = max(greatest(set_ts, set2_ts)) FROM writes}),
		't',
		"$label: kv: the clock is the latest set()");
	is( $node->safe_psql(
			'postgres',
			q{SELECT (scuttlebutt.clock('ev') ->> scuttlebutt.node_id())::float8 = max(emit_ts) FROM writes}),
		't',
		"$label: ev: the clock is the latest emit()");
}

# What each tailer saw.
sub check_tailers
{
	my ($node, $label) = @_;

	# every local update made, with the transaction that made it; and
	# what the tailers were sent, parsed once
	$node->safe_psql(
		'postgres', q{
		CREATE TABLE seen AS SELECT * FROM tail_seen;
		CREATE INDEX ON seen (tailer, ts);
		ANALYZE seen;
		CREATE TABLE stamped AS
			SELECT 'kv' AS model, key, set_ts AS ts, xid FROM writes WHERE set_ts IS NOT NULL
			UNION ALL SELECT 'kv', key2, set2_ts, xid FROM writes WHERE set2_ts IS NOT NULL
			UNION ALL SELECT 'ev', NULL, emit_ts, xid FROM writes WHERE emit_ts IS NOT NULL;
		CREATE INDEX ON stamped (model, key, ts);
		CREATE INDEX ON stamped (ts);
		ANALYZE stamped;
	});

	for my $t (sort keys %tailers)
	{
		my ($model, $iso) = @{ $tailers{$t} };
		my $l = "$label: tailer $t ($model, $iso)";
		my ($polls, $busy, $finals, $last_final, $isos, $rows) = split /\|/, $node->safe_psql(
			'postgres', qq{
			SELECT count(*), count(*) FILTER (WHERE NOT final AND rows > 0), count(*) FILTER (WHERE final),
				   bool_or(final AND poll = (SELECT max(poll) FROM tail_polls WHERE tailer = '$t')),
				   string_agg(DISTINCT isolation, ','), sum(rows)
			FROM tail_polls WHERE tailer = '$t'});
		note("$l: $polls polls, $busy of them with rows during the load, $rows rows");
		cmp_ok($busy, '>=', $min_polls, "$l: polled with rows returned at least $min_polls times during the load");
		ok($finals == 1 && $last_final eq 't', "$l: ended with one poll after the writers finished")
		  or diag("final polls: $finals, last one final: $last_final");
		is($isos, $iso, "$l: every poll ran in $iso");

		# (b) nothing at or below the clock sent; so no duplicates, and
		# each source's updates arrive in increasing timestamp order
		none(
			$node,
			"$l: no poll returned an update at or below the clock it sent",
			qq{
			SELECT format('poll %s: %s from %s, clock sent %s', s.poll, s.ts, s.source, p.sent ->> s.source)
			FROM seen s JOIN tail_polls p USING (tailer, poll)
			WHERE s.tailer = '$t' AND s.ts <= (p.sent ->> s.source)::float8
			ORDER BY s.poll, s.n});
		# the snapshot each poll recorded is the one it read in
		none(
			$node,
			"$l: every update a poll returned had committed in that poll's snapshot",
			qq{
			SELECT format('poll %s: %s (xid %s) not visible in %s', s.poll, s.ts, u.xid, p.snap)
			FROM seen s JOIN tail_polls p USING (tailer, poll) JOIN stamped u ON u.model = '$model' AND u.ts = s.ts
			WHERE s.tailer = '$t' AND NOT pg_visible_in_snapshot(u.xid, p.snap)
			ORDER BY s.poll, s.n});
		none(
			$node,
			"$l: no update was returned twice",
			qq{
			SELECT format('%s from %s: %s times', ts, source, count(*))
			FROM seen WHERE tailer = '$t' GROUP BY ts, source HAVING count(*) > 1});
		none(
			$node,
			"$l: each source's updates arrived in increasing timestamp order",
			qq{
			SELECT format('poll %s #%s: %s from %s after %s', poll, n, ts, source, prev)
			FROM (SELECT poll, n, ts, source, lag(ts) OVER (PARTITION BY source ORDER BY poll, n) AS prev
				  FROM seen WHERE tailer = '$t') s
			WHERE NOT ts > prev ORDER BY poll, n});
		# the tailer's own clock, and the clock() it read
		my $down = sub {
			my ($col) = @_;
			return qq{
				SELECT format('poll %s: %s was %s, then %s', q.poll, k.key, k.value, q.$col ->> k.key)
				FROM tail_polls p JOIN tail_polls q ON q.tailer = p.tailer AND q.poll = p.poll + 1
				CROSS JOIN jsonb_each_text(p.$col) k
				WHERE p.tailer = '$t' AND NOT coalesce((q.$col ->> k.key)::float8 >= k.value::float8, false)
				ORDER BY q.poll};
		};
		none($node, "$l: per source, the clock it sent never went down", $down->('sent'));
		none($node, "$l: per source, the clock() it read never went down", $down->('read_clock'));
		none(
			$node,
			"$l: its last clock is the model's clock",
			qq{
			SELECT format('%s: model %s, tailer %s', key, m.value, t.value)
			FROM jsonb_each_text(scuttlebutt.clock('$model')) m
			FULL JOIN jsonb_each_text((SELECT clock FROM tail_polls WHERE tailer = '$t' ORDER BY poll DESC LIMIT 1)) t
			USING (key)
			WHERE m.value::float8 IS DISTINCT FROM t.value::float8});

		# (a) every update the model holds was seen
		if ($model eq 'ev')
		{
			none(
				$node,
				"$l: saw every emit(), with its data",
				qq{
				SELECT format('%s emit by client %s at %s', w.script, w.client, w.emit_ts) FROM writes w
				WHERE w.emit_ts IS NOT NULL AND NOT EXISTS (
					SELECT 1 FROM seen s
					WHERE s.tailer = '$t' AND s.ts = w.emit_ts AND s.source = scuttlebutt.node_id()
					  AND s.change ->> 0 = CASE w.script WHEN 'both' THEN 'both' ELSE 'only' END
					  AND (s.change -> 1 ->> 'client')::int = w.client)});
			is( $node->safe_psql('postgres', qq{SELECT count(*) FROM seen WHERE tailer = '$t'}),
				$node->safe_psql('postgres', q{SELECT count(emit_ts) FROM writes}),
				"$l: saw nothing else");
		}
		else
		{
			none(
				$node,
				"$l: saw every update the model holds",
				qq{
				SELECT h::text FROM scuttlebutt.history('kv') h
				WHERE NOT EXISTS (SELECT 1 FROM seen s WHERE s.tailer = '$t' AND s.line = h::text)});
			# A set() it was not sent is fine only if it never was the
			# key's value in the snapshot of the poll whose interval
			# (clock sent, clock after] holds its timestamp, nor in any
			# later poll's (which send a clock past it).  Each snapshot
			# sees what the one before saw, so look at the first of them
			# in which the set() had committed: a set() of the key with a
			# later timestamp must have committed there too.
			none(
				$node,
				"$l: every set() it was not sent was overwritten before it could have been",
				qq{
				WITH p AS MATERIALIZED (
					SELECT poll, (sent ->> scuttlebutt.node_id())::float8 AS sent,
						   (clock ->> scuttlebutt.node_id())::float8 AS clock
					FROM tail_polls WHERE tailer = '$t')
				SELECT format('%s at %s (xid %s): clock passed it at poll %s, committed by poll %s, not overwritten there',
							  u.key, u.ts, u.xid, coalesce(p.poll::text, 'none'), coalesce(m.poll::text, 'none'))
				FROM stamped u
				LEFT JOIN p ON u.ts > coalesce(p.sent, '-infinity') AND u.ts <= p.clock
				LEFT JOIN LATERAL (
					SELECT m.poll, m.snap FROM tail_polls m
					WHERE m.tailer = '$t' AND m.poll >= p.poll AND pg_visible_in_snapshot(u.xid, m.snap)
					ORDER BY m.poll LIMIT 1) m ON true
				WHERE u.model = 'kv'
				  AND NOT EXISTS (SELECT 1 FROM seen s WHERE s.tailer = '$t' AND s.ts = u.ts)
				  AND (m.poll IS NULL OR NOT EXISTS (
						SELECT 1 FROM stamped v
						WHERE v.model = 'kv' AND v.key = u.key AND v.ts > u.ts AND pg_visible_in_snapshot(v.xid, m.snap)))
				ORDER BY u.ts});
			none(
				$node,
				"$l: every update it saw is a set() that was made",
				qq{
				WITH w AS (
					SELECT key, set_ts AS ts, client FROM writes WHERE set_ts IS NOT NULL
					UNION ALL SELECT key2, set2_ts, client FROM writes WHERE set2_ts IS NOT NULL)
				SELECT format('poll %s: %s', s.poll, s.line) FROM seen s
				WHERE s.tailer = '$t' AND NOT EXISTS (
					SELECT 1 FROM w
					WHERE w.ts = s.ts AND w.key = s.change ->> 0 AND s.source = scuttlebutt.node_id()
					  AND w.client = (s.change -> 1 ->> 'client')::int)});
		}
	}
}

# Pairs of transactions consecutive in commit-timestamp order whose
# timestamps are out of order, or whose commit timestamps tie.
sub commit_ts_disorder
{
	my ($node, $name) = @_;
	my ($last, $first, $filter) =
	  $name eq 'kv'
	  ? ('greatest(set_ts, set2_ts)', 'least(set_ts, set2_ts)', 'set_ts IS NOT NULL')
	  : ('emit_ts', 'emit_ts', 'emit_ts IS NOT NULL');
	return grep { $_ ne '' } split /\n/, $node->safe_psql(
		'postgres', qq{
		SELECT format('%s(%s..%s) then %s(%s..%s)', prev_commit, prev_first, prev_last, commit_ts, first_ts, last_ts)
		FROM (
			SELECT pg_xact_commit_timestamp(xmin) AS commit_ts, $first AS first_ts, $last AS last_ts,
				   lag(pg_xact_commit_timestamp(xmin)) OVER w AS prev_commit,
				   lag($first) OVER w AS prev_first,
				   lag($last) OVER w AS prev_last
			FROM writes WHERE $filter
			WINDOW w AS (ORDER BY pg_xact_commit_timestamp(xmin), $first)
		) t
		WHERE prev_commit IS NOT NULL AND (NOT first_ts > prev_last OR commit_ts = prev_commit)});
}

# Commit order equals timestamp order, from logical decoding and from
# commit timestamps.
sub check_commit_order
{
	my ($node, $label, $slot, $total) = @_;
	my $node_id = $node->safe_psql('postgres', 'SELECT scuttlebutt.node_id()');
	my %model_id = map { split /\|/ }
	  split /\n/, $node->safe_psql('postgres', 'SELECT name, id FROM scuttlebutt.registry');

	my $changes = $node->safe_psql('postgres',
		qq{SELECT data FROM pg_logical_slot_get_changes('$slot', NULL, NULL, 'include-xids', '1', 'skip-empty-xacts', '1')});

	# per model: the timestamps of this node's updates, in commit order,
	# and the same for the clock row
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
	cmp_ok($txns, '>=', $total, "$label: logical decoding saw every transaction ($txns)");

	my $n_sets = $node->safe_psql('postgres', q{SELECT count(set_ts) + count(set2_ts) FROM writes});
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
				"$label: $name: $what timestamps strictly increase in commit order (logical decoding, "
				  . scalar(@$list) . " changes)")
			  or diag(join("\n", @bad[ 0 .. ($#bad < 9 ? $#bad : 9) ]));
		}
		my %distinct = map { $_ => 1 } @{ $upd_seq{$mid} || [] };
		is(scalar(keys %distinct), $expected, "$label: $name: one stored update per local write in the decoded changes");

		my @bad = commit_ts_disorder($node, $name);
		ok(!@bad, "$label: $name: in commit-timestamp order, each transaction's timestamps come after the previous one's")
		  or diag(join("\n", @bad[ 0 .. ($#bad < 9 ? $#bad : 9) ]));
	}
}

# One node's run: tailers, writers, then the checks.  $serialized: local
# writes serialize on the clock row (library not preloaded).
sub run_node
{
	my ($node, $label, $per_client, $serialized) = @_;
	setup($node);
	$node->safe_psql('postgres', q{SELECT pg_create_logical_replication_slot('commit_order', 'test_decoding')})
	  if $serialized;
	my $run = start_tailers($node, $label);
	run_writers($node, $label, $per_client);
	stop_tailers($node, $label, $run);
	check_writes($node, $label);
	check_tailers($node, $label);
	if ($serialized)
	{
		check_commit_order($node, $label, 'commit_order', $clients * $per_client);
		$node->safe_psql('postgres', q{SELECT pg_drop_replication_slot('commit_order')});
	}
	else
	{
		# reported only: here readers are protected by publication order
		for my $name (qw(kv ev))
		{
			my @bad = commit_ts_disorder($node, $name);
			note("$label: $name: " . scalar(@bad)
				  . ' commits whose timestamps are not after those of the commit before (allowed here)'
				  . (@bad ? ", e.g. $bad[0]" : ''));
		}
	}
}

# ---------------------------------------------------------------------------
# Preloaded: publication order
# ---------------------------------------------------------------------------

my $pre = ScuttlebuttTest::new_node('concurrency',
	conf => "track_commit_timestamp = on\nshared_buffers = 32MB\n");
run_node($pre, 'preloaded', 1000, 0);
$pre->stop;

# ---------------------------------------------------------------------------
# Not preloaded: commit order equals timestamp order
# ---------------------------------------------------------------------------

# The extension is created while the library is preloaded, and the server
# then restarts without it (as 116_no_preload.pl does).
my $nopre = ScuttlebuttTest::new_node(
	'concurrency_nopreload',
	allows_streaming => 'logical',
	conf => "track_commit_timestamp = on\nshared_buffers = 32MB\n");
$nopre->stop;
$nopre->append_conf('postgresql.conf', "shared_preload_libraries = ''\n");
$nopre->start;
is($nopre->safe_psql('postgres', 'SHOW shared_preload_libraries'), '', 'not preloaded: the library is not preloaded');
run_node($nopre, 'not preloaded', 300, 1);
$nopre->stop;

done_testing();
