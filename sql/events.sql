-- events: emit() and events(), every update kept, in timestamp order
SELECT scuttlebutt.create_model('ev', 'events');
SELECT count(*) FROM scuttlebutt.events('ev');

SELECT scuttlebutt.emit('ev', 'login', '{"user":"ann"}') AS e1 \gset
SELECT scuttlebutt.emit('ev', 'login', '{"user":"bob"}') AS e2 \gset
SELECT scuttlebutt.emit('ev', 'logout', NULL) AS e3 \gset
SELECT :e1 < :e2 AND :e2 < :e3 AS increasing;
SELECT event, data, source = scuttlebutt.node_id() AS own FROM scuttlebutt.events('ev');
SELECT replace(regexp_replace(h::text, ',[0-9.e+]+,', ',<ts>,'), scuttlebutt.node_id(), '<node>')
FROM scuttlebutt.history('ev') h;

-- remote events from two sources interleave by timestamp
SELECT scuttlebutt.create_model('ev2', 'events');
SELECT scuttlebutt.apply_update('ev2', '[["tick",1],100,"A"]');
SELECT scuttlebutt.apply_update('ev2', '[["tick",2],300,"A"]');
SELECT scuttlebutt.apply_update('ev2', '[["tock",{"n":1}],200,"B"]');
SELECT scuttlebutt.apply_update('ev2', '[["tock"],400,"B"]');
-- the same event again, or an older one, is old for its source
SELECT scuttlebutt.apply_update('ev2', '[["tick",2],300,"A"]');
SELECT scuttlebutt.apply_update('ev2', '[["tick",0],50,"A"]');
-- identical changes at distinct timestamps are distinct events
SELECT scuttlebutt.apply_update('ev2', '[["tick",2],301,"A"]');
SELECT * FROM scuttlebutt.events('ev2');
SELECT scuttlebutt.clock('ev2');
SELECT name, kind, updates, sources, latest_ts FROM scuttlebutt.models WHERE name = 'ev2';
