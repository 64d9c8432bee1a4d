-- key/value model: set, get, delete, keys, entries, to_json, set_many
-- Local timestamps and the node id vary between runs: they are masked.
CREATE FUNCTION pg_temp.masked(doc json) RETURNS text LANGUAGE sql AS
$$ SELECT replace(regexp_replace(doc::text, ',[0-9.e+]+,"([^"]*)"\]$', ',<ts>,"\1"]'),
                  scuttlebutt.node_id(), '<node>') $$;

SELECT scuttlebutt.create_model('kv');
SELECT name, kind, updates, sources, latest_ts FROM scuttlebutt.models WHERE name = 'kv';

-- an empty model
SELECT scuttlebutt.get('kv', 'missing') IS NULL AS absent;
SELECT count(*) AS keys FROM scuttlebutt.keys('kv');
SELECT scuttlebutt.to_json('kv');
SELECT scuttlebutt.clock('kv');
SELECT count(*) AS history FROM scuttlebutt.history('kv');

-- set returns the update's timestamp, strictly increasing, near the wall clock
SELECT scuttlebutt.set('kv', 'a', '1') AS t1 \gset
SELECT scuttlebutt.set('kv', 'a', '{"b":1,"10":2,"1":3,"a":4}') AS t2 \gset
SELECT :t2 > :t1 AS increasing,
       abs(:t1 - extract(epoch FROM clock_timestamp()) * 1000) < 60000 AS near_now;
SELECT scuttlebutt.get('kv', 'a');
-- only the latest update per key is kept, written as JSON.stringify would
SELECT pg_temp.masked(h) FROM scuttlebutt.history('kv') h;
-- the timestamp in the text is the one returned, in JavaScript's notation
SELECT (h -> 1)::text::float8 = :t2 AS same_ts, h -> 2 #>> '{}' = scuttlebutt.node_id() AS own_source
FROM scuttlebutt.history('kv') h;

-- values of every JSON type, null included
SELECT scuttlebutt.set('kv', 'str', '"text with \"quotes\" and \\ and \n"') > 0 AS set;
SELECT scuttlebutt.set('kv', 'num', '-0.0000001') > 0 AS set;
SELECT scuttlebutt.set('kv', 'bool', 'false') > 0 AS set;
SELECT scuttlebutt.set('kv', 'arr', '[1.50, [], {}, null, "x"]') > 0 AS set;
SELECT scuttlebutt.set('kv', 'nul', 'null') > 0 AS set;
SELECT scuttlebutt.set('kv', 'sqlnull', NULL) > 0 AS set;
SELECT key, value, source = scuttlebutt.node_id() AS own FROM scuttlebutt.entries('kv');
SELECT pg_temp.masked(h) FROM scuttlebutt.history('kv') h ORDER BY 1;

-- get() and to_json() hide null values; keys() and entries() list them
SELECT scuttlebutt.get('kv', 'nul') IS NULL AS null_is_null;
SELECT scuttlebutt.keys('kv');
SELECT scuttlebutt.to_json('kv');

-- delete sets null, as the reference does
SELECT scuttlebutt.delete('kv', 'str') AS t3 \gset
SELECT :t3 > :t2 AS increasing, scuttlebutt.get('kv', 'str') IS NULL AS deleted;
SELECT key, value FROM scuttlebutt.entries('kv') WHERE key = 'str';
SELECT scuttlebutt.to_json('kv') ? 'str' AS still_in_to_json;

-- unicode keys and values, written as is (not escaped)
SELECT scuttlebutt.set('kv', 'ключ 🔑', '"значение\u2028/\u007f"') > 0 AS set;
SELECT scuttlebutt.get('kv', 'ключ 🔑');
SELECT pg_temp.masked(h) FROM scuttlebutt.history('kv') h WHERE h::text LIKE '%ключ%';

-- a huge value
SELECT scuttlebutt.set('kv', 'big', (SELECT jsonb_agg(i) FROM generate_series(1, 100000) i)) > 0 AS set;
SELECT jsonb_array_length(scuttlebutt.get('kv', 'big')) AS elements,
       length((h -> 0)::text) AS change_bytes
FROM scuttlebutt.history('kv') h WHERE h -> 0 ->> 0 = 'big';

-- ties: equal timestamps, the greater source id (byte order) wins,
-- whatever the arrival order
SELECT scuttlebutt.apply_update('kv', '[["tie","from B"],1000,"B"]');
SELECT scuttlebutt.apply_update('kv', '[["tie","from A"],1000,"A"]');
SELECT scuttlebutt.apply_update('kv', '[["tie","from BA"],1000,"BA"]');
SELECT scuttlebutt.get('kv', 'tie');
SELECT scuttlebutt.create_model('kv2');
SELECT scuttlebutt.apply_update('kv2', '[["tie","from BA"],1000,"BA"]');
SELECT scuttlebutt.apply_update('kv2', '[["tie","from A"],1000,"A"]');
SELECT scuttlebutt.apply_update('kv2', '[["tie","from B"],1000,"B"]');
SELECT scuttlebutt.get('kv2', 'tie');

-- last write wins by timestamp; a loser still advances its source's clock
SELECT scuttlebutt.apply_update('kv2', '[["lww",1],2000,"A"]');
SELECT scuttlebutt.apply_update('kv2', '[["lww",2],1500,"C"]');
SELECT scuttlebutt.get('kv2', 'lww'), scuttlebutt.clock('kv2');
-- an update at or below its source's clock is old and changes nothing
SELECT scuttlebutt.apply_update('kv2', '[["lww",3],1500,"C"]');
SELECT scuttlebutt.apply_update('kv2', '[["other",3],1400,"C"]');
SELECT scuttlebutt.get('kv2', 'other') IS NULL AS dropped;

-- a local write supersedes the value it replaces, even one from the future
-- (30 s ahead: within scuttlebutt.max_clock_skew)
SELECT (extract(epoch FROM clock_timestamp()) * 1000 + 30000)::bigint AS future \gset
SELECT scuttlebutt.apply_update('kv2', format('[["ahead","future"],%s,"F"]', :future)::json);
SELECT scuttlebutt.set('kv2', 'ahead', '"mine"') > :future AS after_future;
SELECT scuttlebutt.get('kv2', 'ahead');
SELECT scuttlebutt.set('kv2', 'next', '1') > :future AS clock_kept;

-- remote updates are kept byte for byte as received (signatures cover them)
SELECT scuttlebutt.apply_update('kv2', '[["raw",{"z":1.0,"a":[1e2]}],3000,"A","c2lnbmF0dXJl"]');
SELECT regexp_replace(replace(h::text, scuttlebutt.node_id(), '<node>'), ',[0-9.]+,"<node>"', ',<ts>,"<node>"')
FROM scuttlebutt.history('kv2', '{"A":2000}') h;
SELECT scuttlebutt.get('kv2', 'raw');

-- set_many: one update per key, in one call
SELECT scuttlebutt.create_model('bulk');
SELECT scuttlebutt.set_many('bulk', (SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 1000) i));
SELECT count(*) AS keys, count(DISTINCT ts) AS distinct_ts, count(DISTINCT source) AS sources
FROM scuttlebutt.entries('bulk');
SELECT scuttlebutt.get('bulk', 'k500');
SELECT scuttlebutt.set_many('bulk', '{}');
SELECT scuttlebutt.set_many('bulk', '{"k1":"again","new":null}');
SELECT scuttlebutt.get('bulk', 'k1'),
       'new' IN (SELECT scuttlebutt.keys('bulk')) AS has_new,
       scuttlebutt.get('bulk', 'new') IS NULL AS new_is_null;
-- the clock is the last timestamp taken
SELECT (scuttlebutt.clock('bulk') ->> scuttlebutt.node_id())::float8 = max(ts) AS clock_is_max
FROM scuttlebutt.entries('bulk');

-- set_many over a key a peer holds newer: that key is written again past it
SELECT (extract(epoch FROM clock_timestamp()) * 1000 + 30000)::bigint AS future \gset
SELECT scuttlebutt.apply_update('bulk', format('[["k7","future"],%s,"F"]', :future)::json);
SELECT scuttlebutt.set_many('bulk', '{"k7":"mine","k8":"also"}');
SELECT key, value, ts > :future AS after_future, source = scuttlebutt.node_id() AS own
FROM scuttlebutt.entries('bulk') WHERE key IN ('k7', 'k8');

SELECT name, kind, updates, sources FROM scuttlebutt.models ORDER BY name;

-- drop_model removes everything of the model
SELECT scuttlebutt.drop_model('kv2');
SELECT count(*) FROM scuttlebutt.models WHERE name = 'kv2';
SELECT scuttlebutt.create_model('kv2');
SELECT scuttlebutt.clock('kv2'), count(*) FROM scuttlebutt.history('kv2');
