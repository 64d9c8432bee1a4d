-- Per-model privileges: grant(), revoke(), the privileges view, model
-- owners, and the privilege every SQL function needs.
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

CREATE ROLE regress_sb_owner;
CREATE ROLE regress_sb_reader;
CREATE ROLE regress_sb_writer;
CREATE ROLE regress_sb_none;
CREATE ROLE regress_sb_group;
CREATE ROLE regress_sb_member IN ROLE regress_sb_group;

-- ---- creating models: EXECUTE on create_model() ----
-- (not CREATE on schema scuttlebutt, which would let the role put
-- functions there that outrank the extension's for others' calls)
SET ROLE regress_sb_owner;
SELECT pg_temp.err($$SELECT scuttlebutt.create_model('p_kv')$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION scuttlebutt.create_model(text, text, boolean) TO regress_sb_owner;
SET ROLE regress_sb_owner;
SELECT pg_temp.err($$CREATE FUNCTION scuttlebutt.set(model text, key text, value text)
	RETURNS float8 LANGUAGE sql AS 'SELECT 0::float8'$$);
SELECT scuttlebutt.create_model('p_kv');
SELECT scuttlebutt.create_model('p_ev', 'events');
SELECT scuttlebutt.create_model('p_val', 'value');
SELECT scuttlebutt.set('p_kv', 'a', '1') > 0 AS set;
SELECT scuttlebutt.emit('p_ev', 'e', '2') > 0 AS emitted;
SELECT scuttlebutt.set_value('p_val', '3') > 0 AS set;
-- the owner holds every privilege without a grant
SELECT scuttlebutt.to_json('p_kv');
RESET ROLE;
SELECT scuttlebutt.create_model('p_other');
SELECT scuttlebutt.set('p_other', 'secret', '"s"') > 0 AS set;
SELECT name, owner FROM scuttlebutt.models WHERE name LIKE 'p\_%' ORDER BY name;

-- ---- grant() and revoke(): the owner (or a superuser) may ----
SET ROLE regress_sb_owner;
SELECT scuttlebutt.grant('p_kv', 'regress_sb_reader', 'read');
SELECT scuttlebutt.grant('p_ev', 'regress_sb_reader', 'read');
SELECT scuttlebutt.grant('p_val', 'regress_sb_reader', 'read');
SELECT scuttlebutt.grant('p_kv', 'regress_sb_writer', 'write');
SELECT scuttlebutt.grant('p_ev', 'regress_sb_writer', 'write');
SELECT scuttlebutt.grant('p_val', 'regress_sb_writer', 'write');
SELECT scuttlebutt.grant('p_kv', 'regress_sb_reader', 'read');	-- again: nothing new
SELECT pg_temp.err($$SELECT scuttlebutt.grant('p_kv', 'regress_sb_reader', 'select')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.grant('p_kv', 'regress_sb_nobody', 'read')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.grant('p_nosuch', 'regress_sb_reader', 'read')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.grant('p_other', 'regress_sb_reader', 'read')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.revoke('p_other', 'regress_sb_reader', 'read')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.grant('p_kv', NULL, 'read')$$);
RESET ROLE;
SET ROLE regress_sb_reader;
SELECT pg_temp.err($$SELECT scuttlebutt.grant('p_kv', 'regress_sb_reader', 'write')$$);
RESET ROLE;
SELECT model, role, privilege, granted_by, granted_at <= now() AS granted_at_ok
FROM scuttlebutt.privileges ORDER BY 1, 2, 3;

-- ---- reading functions need read ----
SET ROLE regress_sb_reader;
SELECT scuttlebutt.get('p_kv', 'a');
SELECT scuttlebutt.keys('p_kv');
SELECT key, value FROM scuttlebutt.entries('p_kv');
SELECT scuttlebutt.to_json('p_kv');
SELECT event, data FROM scuttlebutt.events('p_ev');
SELECT scuttlebutt.get_value('p_val');
SELECT scuttlebutt.clock('p_kv') ? scuttlebutt.node_id() AS clock_has_node;
SELECT count(*) FROM scuttlebutt.history('p_kv');
SELECT count(*) FROM scuttlebutt.export('p_kv');
SELECT count(*) FROM scuttlebutt.poll('p_kv');
-- and nothing else
SELECT pg_temp.err($$SELECT scuttlebutt.get('p_other', 'secret')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.keys('p_other')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.entries('p_other')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.to_json('p_other')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.clock('p_other')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.history('p_other')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.export('p_other')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.poll('p_other')$$);
-- writing functions need write: a reader may not
SELECT pg_temp.err($$SELECT scuttlebutt.set('p_kv', 'b', '2')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.delete('p_kv', 'a')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set_many('p_kv', '{"b": 2}')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.emit('p_ev', 'e', '1')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set_value('p_val', '1')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('p_kv', '[["b",2],1000,"SRC"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.import('p_kv', '[["b",2],1000,"SRC"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt._push('p_kv', '[["b",2],1000,"SRC"]')$$);
RESET ROLE;

-- ---- write implies nothing else: a writer writes, and reads nothing ----
SET ROLE regress_sb_writer;
SELECT scuttlebutt.set('p_kv', 'w', '"w"') > 0 AS set;
SELECT scuttlebutt.delete('p_kv', 'w') > 0 AS deleted;
SELECT scuttlebutt.set_many('p_kv', '{"w1": 1, "w2": 2}');
SELECT scuttlebutt.emit('p_ev', 'w', '1') > 0 AS emitted;
SELECT scuttlebutt.set_value('p_val', '"w"') > 0 AS set;
SELECT scuttlebutt.apply_update('p_kv', '[["x",1],1000,"SRC"]');
SELECT scuttlebutt.import('p_kv', E'[["y",1],1001,"SRC"]\n[["z",1],1002,"SRC"]');
SELECT scuttlebutt._push('p_kv', '[["z2",1],1003,"SRC"]');
SELECT pg_temp.err($$SELECT scuttlebutt.get('p_kv', 'a')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.keys('p_kv')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.entries('p_kv')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.to_json('p_kv')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.events('p_ev')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.get_value('p_val')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.clock('p_kv')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.history('p_kv')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.export('p_kv')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.poll('p_kv')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set('p_other', 'b', '2')$$);
-- the tables show it none of the model's rows
SELECT count(*) FROM scuttlebutt.updates;
RESET ROLE;
SELECT scuttlebutt.to_json('p_kv');

-- ---- a role without grants: every function refuses, naming the privilege ----
SET ROLE regress_sb_none;
SELECT pg_temp.err($$SELECT scuttlebutt.get('p_kv', 'a')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.events('p_ev')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.get_value('p_val')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set('p_kv', 'b', '2')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.emit('p_ev', 'e', '1')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set_value('p_val', '1')$$);
-- an unknown model is still "does not exist"
SELECT pg_temp.err($$SELECT scuttlebutt.get('p_nosuch', 'a')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set('p_nosuch', 'a', '1')$$);
-- a peer needs read to send and write to receive
SELECT pg_temp.err($$SELECT scuttlebutt.add_stream_peer('p_kv', '127.0.0.1', 1, receive => false)$$);
SELECT pg_temp.err($$SELECT scuttlebutt.add_peer('p_kv', 'host=127.0.0.1 password=x', send => false)$$);
RESET ROLE;

-- ---- the tables: readable under row-level security, writable by no one else ----
SET ROLE regress_sb_reader;
SELECT r.name, count(*) FROM scuttlebutt.updates u JOIN scuttlebutt.registry r ON r.id = u.model_id
GROUP BY r.name ORDER BY r.name;
SELECT r.name FROM scuttlebutt.clocks c JOIN scuttlebutt.registry r ON r.id = c.model_id
GROUP BY r.name ORDER BY r.name;
-- a header's clock is read as the table shows it to the role (entries of
-- the models it may read only), and with row_security off as a query is
SELECT r.name, scuttlebutt._export_header(r.id) LIKE '%"clock":{}}' AS clock_empty
FROM scuttlebutt.registry r WHERE r.name IN ('p_kv', 'p_other') ORDER BY r.name;
SET row_security = off;
SELECT pg_temp.err($$SELECT scuttlebutt._export_header(scuttlebutt._model_id('p_kv'))$$);
RESET row_security;
SELECT pg_temp.err($$INSERT INTO scuttlebutt.updates VALUES (1, 'x', 1, 'x', '[]')$$);
SELECT pg_temp.err($$UPDATE scuttlebutt.updates SET doc = '[]'$$);
SELECT pg_temp.err($$DELETE FROM scuttlebutt.updates$$);
SELECT pg_temp.err($$INSERT INTO scuttlebutt.clocks VALUES (1, 'x', 1)$$);
SELECT pg_temp.err($$UPDATE scuttlebutt.clocks SET ts = 0$$);
SELECT pg_temp.err($$DELETE FROM scuttlebutt.registry$$);
SELECT pg_temp.err($$INSERT INTO scuttlebutt.grants VALUES (1, 'regress_sb_reader', 'write', 'regress_sb_reader')$$);
SELECT pg_temp.err($$TRUNCATE scuttlebutt.updates$$);
RESET ROLE;

-- ---- history() as a role under row-level security: still index range scans ----
SELECT scuttlebutt.set_many('p_kv', (SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 2000) i));
ANALYZE scuttlebutt.updates;
ANALYZE scuttlebutt.clocks;
SET ROLE regress_sb_reader;
EXPLAIN (COSTS OFF) SELECT * FROM scuttlebutt.history('p_kv', '{"SRC": 1000}');
SELECT count(*) FROM scuttlebutt.history('p_kv', jsonb_build_object(scuttlebutt.node_id(), 0));
RESET ROLE;
-- the extension's owner and superusers (the worker) are not under the policies
EXPLAIN (COSTS OFF) SELECT * FROM scuttlebutt.history('p_kv', '{"SRC": 1000}');

-- ---- membership and PUBLIC ----
SET ROLE regress_sb_member;
SELECT pg_temp.err($$SELECT scuttlebutt.get('p_kv', 'a')$$);
RESET ROLE;
SET ROLE regress_sb_owner;
SELECT scuttlebutt.grant('p_kv', 'regress_sb_group', 'read');
RESET ROLE;
SET ROLE regress_sb_member;
SELECT scuttlebutt.get('p_kv', 'a');
RESET ROLE;
SET ROLE regress_sb_owner;
SELECT scuttlebutt.revoke('p_kv', 'regress_sb_group', 'read');
SELECT scuttlebutt.grant('p_kv', 'public', 'read');
RESET ROLE;
SELECT model, role, privilege FROM scuttlebutt.privileges WHERE role = 'public';
SET ROLE regress_sb_none;
SELECT scuttlebutt.get('p_kv', 'a');
SELECT pg_temp.err($$SELECT scuttlebutt.set('p_kv', 'a', '1')$$);
RESET ROLE;
SET ROLE regress_sb_owner;
SELECT scuttlebutt.revoke('p_kv', 'public', 'read');
SELECT scuttlebutt.revoke('p_kv', 'public', 'read');	-- not granted: nothing
RESET ROLE;
SET ROLE regress_sb_none;
SELECT pg_temp.err($$SELECT scuttlebutt.get('p_kv', 'a')$$);
RESET ROLE;
-- the models view counts only what the caller may read: a model it may
-- not read shows its name and owner, but no updates, sources or latest_ts
SET ROLE regress_sb_none;
SELECT name, updates, sources, latest_ts IS NULL AS no_latest_ts, owner
FROM scuttlebutt.models WHERE name IN ('p_kv', 'p_other') ORDER BY name;
RESET ROLE;
SET ROLE regress_sb_reader;
SELECT name, updates, sources, latest_ts IS NULL AS no_latest_ts, owner
FROM scuttlebutt.models WHERE name IN ('p_kv', 'p_other') ORDER BY name;
RESET ROLE;
-- a revoke takes effect at once, in the revoker's session too
SET ROLE regress_sb_owner;
SELECT scuttlebutt.revoke('p_kv', 'regress_sb_reader', 'read');
RESET ROLE;
SET ROLE regress_sb_reader;
SELECT pg_temp.err($$SELECT scuttlebutt.get('p_kv', 'a')$$);
SELECT count(*) FROM scuttlebutt.updates u JOIN scuttlebutt.registry r ON r.id = u.model_id
WHERE r.name = 'p_kv';
RESET ROLE;

-- ---- drop_model(): the owner or a superuser ----
SET ROLE regress_sb_writer;
SELECT pg_temp.err($$SELECT scuttlebutt.drop_model('p_kv')$$);
RESET ROLE;
SET ROLE regress_sb_owner;
SELECT pg_temp.err($$SELECT scuttlebutt.drop_model('p_other')$$);
SELECT scuttlebutt.drop_model('p_kv');
SELECT scuttlebutt.drop_model('p_ev');
RESET ROLE;
SELECT scuttlebutt.drop_model('p_val');
SELECT scuttlebutt.drop_model('p_other');
-- their grants went with them
SELECT count(*) FROM scuttlebutt.grants;

REVOKE EXECUTE ON FUNCTION scuttlebutt.create_model(text, text, boolean) FROM regress_sb_owner;
DROP ROLE regress_sb_owner, regress_sb_reader, regress_sb_writer, regress_sb_none,
	regress_sb_member, regress_sb_group;
