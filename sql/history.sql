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
