-- history(model, sources): the updates newer than each source's timestamp
SELECT scuttlebutt.create_model('h');
SELECT count(*) FROM scuttlebutt.history('h', '{"A":1}');
SELECT scuttlebutt.apply_update('h', format('[["a%s",%s],%s,"A"]', i, i, i * 10)::json) FROM generate_series(1, 5) i;
SELECT scuttlebutt.apply_update('h', format('[["b%s",%s],%s,"B"]', i, i, i * 10 + 5)::json) FROM generate_series(1, 3) i;
SELECT scuttlebutt.apply_update('h', '[["c",1],1,"C"]');

-- all of it, per source in increasing timestamp order
SELECT h FROM scuttlebutt.history('h') h;
SELECT h FROM scuttlebutt.history('h', '{}') h;
-- a delta: sources listed give their timestamp, others everything
SELECT h FROM scuttlebutt.history('h', '{"A":30,"B":25}') h;
SELECT h FROM scuttlebutt.history('h', '{"A":30.5,"B":1e9,"C":1}') h;
-- nothing newer than the model's own clock
SELECT count(*) FROM scuttlebutt.history('h', scuttlebutt.clock('h'));
-- unknown sources in the argument are fine
SELECT count(*) FROM scuttlebutt.history('h', '{"nobody":5}');
-- superseded updates are gone from the history, but the clock remembers
SELECT scuttlebutt.apply_update('h', '[["a1","new"],100,"B"]');
SELECT h FROM scuttlebutt.history('h', '{"A":0,"B":25,"C":1}') h;
SELECT scuttlebutt.clock('h');
-- per source, the timestamps the history returns always increase
SELECT bool_and(ok) AS per_source_increasing FROM (
  SELECT (h -> 1)::text::float8 > lag((h -> 1)::text::float8, 1, '-infinity')
           OVER (PARTITION BY h ->> 2 ORDER BY ordinality) AS ok
  FROM scuttlebutt.history('h') WITH ORDINALITY h) s;

-- this node's own updates: the clock shows the latest one, and the clock
-- row holds a reservation ahead of it (scuttlebutt.timestamp_reserve)
SELECT scuttlebutt.create_model('own');
SELECT scuttlebutt.set('own', 'x', '1') AS ts1 \gset
SELECT scuttlebutt.set('own', 'y', '2') AS ts2 \gset
SELECT :ts2 > :ts1 AS increasing,
       (scuttlebutt.clock('own') ->> scuttlebutt.node_id())::float8 = :ts2 AS clock_is_latest,
       (SELECT latest_ts FROM scuttlebutt.models WHERE name = 'own') = :ts2 AS models_latest,
       (SELECT ts FROM scuttlebutt.clocks c JOIN scuttlebutt.registry r ON r.id = c.model_id
        WHERE r.name = 'own' AND c.source = scuttlebutt.node_id()) >= :ts2 + 500 AS reservation_ahead;
-- the export header shows the clock, not the reservation
SELECT (scuttlebutt.export('own') ::json -> 'clock' ->> scuttlebutt.node_id())::float8 = :ts2 AS header_is_latest
LIMIT 1;
-- in a transaction, its own writes are in its history and clock
BEGIN;
SELECT scuttlebutt.set('own', 'z', '3') AS ts3 \gset
SELECT count(*) AS own_rows FROM scuttlebutt.history('own');
SELECT (scuttlebutt.clock('own') ->> scuttlebutt.node_id())::float8 = :ts3 AS clock_is_own_write;
ROLLBACK;
-- a rolled-back write leaves no trace in what readers see
SELECT count(*) AS after_rollback, (scuttlebutt.clock('own') ->> scuttlebutt.node_id())::float8 = :ts2 AS clock_unchanged
FROM scuttlebutt.history('own');
-- a transaction that wrote local updates cannot be prepared
BEGIN;
SELECT scuttlebutt.set('own', 'p', '1') > 0 AS written;
PREPARE TRANSACTION 'sb_prepare';
-- the reservation can only be changed by a superuser
CREATE ROLE sb_plain_user;
SET ROLE sb_plain_user;
SET scuttlebutt.timestamp_reserve = '10min';
RESET ROLE;
DROP ROLE sb_plain_user;
SELECT scuttlebutt.drop_model('own');
