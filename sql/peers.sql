-- Peers: configuration and the remote end of a libpq peer (poll()).
-- The worker serves another database ("postgres"), so the peers
-- configured here are not dialed, and peer_status shows only their rows.
SELECT scuttlebutt.create_model('pm');
SELECT scuttlebutt.create_model('pe', 'events');

-- add_peer: a libpq connection string, checked by libpq's own parser
SELECT scuttlebutt.add_peer('pm', 'host=127.0.0.1 port=5 dbname=x user=u password=hunter2') AS p1 \gset
SELECT scuttlebutt.add_peer('pm', 'postgresql://u:hunter2@127.0.0.1:6/db?sslmode=verify-full', send => false) AS p2 \gset
SELECT scuttlebutt.add_peer('pe', 'host=''a b'' sslpassword=hunter3 dbname=''it\''s''', receive => false) AS p3 \gset
SELECT model, transport, host, port, send, receive FROM scuttlebutt.peers ORDER BY id;

-- what users see: never a password
SELECT transport, model, remote_addr, state, conninfo
FROM scuttlebutt.peer_status ORDER BY peer_id;
SELECT count(*) AS shown_with_password FROM scuttlebutt.peer_status
WHERE conninfo LIKE '%hunter%' OR remote_addr LIKE '%hunter%';
SELECT scuttlebutt._conninfo_shown('port=1 password=x options=''-c a=b''');
SELECT scuttlebutt._conninfo_address('host=h1,h2 port=7,8'), scuttlebutt._conninfo_address('dbname=x');

-- bad arguments
SELECT scuttlebutt.add_peer('pm', 'host=127.0.0.1 bogus=1');
SELECT scuttlebutt.add_peer('pm', 'host=''unterminated');
SELECT scuttlebutt.add_peer('pm', 'postgresql://[::1');
SELECT scuttlebutt.add_peer('nosuch', 'host=127.0.0.1');
SELECT scuttlebutt.add_peer('pm', NULL);
SELECT scuttlebutt.add_peer('pm', 'host=x', NULL);
SELECT scuttlebutt.remove_peer(:p3);
SELECT scuttlebutt.remove_peer(:p3);
SELECT count(*) FROM scuttlebutt.peers;

-- poll(): the updates newer than what the caller holds, a page at most,
-- and, when that is all, the model's header (node id, clock); the
-- node id differs per install
SELECT scuttlebutt.node_id() AS node \gset
SELECT scuttlebutt.apply_update('pm', '[["a",1],10,"S1"]');
SELECT scuttlebutt.apply_update('pm', '[["b",2],20,"S1"]');
SELECT scuttlebutt.apply_update('pm', '[["c",3],15,"S2"]');
SELECT scuttlebutt.apply_update('pm', '[["a",4],30,"S2"]');
SELECT replace(p::text, :'node', 'NODE') FROM scuttlebutt.poll('pm') p;
SELECT replace(p::text, :'node', 'NODE') FROM scuttlebutt.poll('pm', '{"S1": 10}') p;
SELECT replace(p::text, :'node', 'NODE') FROM scuttlebutt.poll('pm', '{"S1": 20, "S2": 30}') p;
-- a page: a prefix of each source's updates, in source then timestamp order
SELECT replace(p::text, :'node', 'NODE') FROM scuttlebutt.poll('pm', '{}', 1) p;
SELECT replace(p::text, :'node', 'NODE') FROM scuttlebutt.poll('pm', '{"S1": 20}', 1) p;
-- nothing new: nothing, at once
SELECT count(*) FROM scuttlebutt.poll('pm', '{"S1": 20, "S2": 30}', 10);
-- a row above its source's clock row (as a restored dump can hold until
-- the clock catches up) is not sent: the header vouches for the clock
SELECT scuttlebutt.create_model('above');
SELECT scuttlebutt.apply_update('above', '[["a",1],4,"F"]');
SELECT scuttlebutt.apply_update('above', '[["b",1],5,"F"]');
INSERT INTO scuttlebutt.updates (model_id, source, ts, key, doc)
SELECT id, 'F', 10, 'c', '[["c",1],10,"F"]' FROM scuttlebutt.registry WHERE name = 'above';
SELECT replace(p::text, :'node', 'NODE') FROM scuttlebutt.poll('above', '{"F": 3}') p;
-- wait_for_commit(): nothing new, a short wait; news: returns at once
CALL scuttlebutt.wait_for_commit('pm', '{"S1": 20, "S2": 30}', 20);
CALL scuttlebutt.wait_for_commit('pm', '{"S1": 20}', 3600000);
-- it commits before it waits: not inside a transaction block
BEGIN;
CALL scuttlebutt.wait_for_commit('pm', '{"S1": 20, "S2": 30}', 20);
ROLLBACK;
CALL scuttlebutt.wait_for_commit('pm', '{}', -1);
CALL scuttlebutt.wait_for_commit('pm', '{"S1": "x"}', 20);
CALL scuttlebutt.wait_for_commit('pm', '{}', 3600001);
CALL scuttlebutt.wait_for_commit('pm', NULL);
CALL scuttlebutt.wait_for_commit('nosuch');

-- bad arguments
SELECT scuttlebutt.poll('nosuch');
SELECT replace(p::text, :'node', 'NODE') FROM scuttlebutt.poll('pm', '[1]') p;
SELECT replace(p::text, :'node', 'NODE') FROM scuttlebutt.poll('pm', '{"S1": "x"}') p;
SELECT replace(p::text, :'node', 'NODE') FROM scuttlebutt.poll('pm', '{}', 0) p;
SELECT replace(p::text, :'node', 'NODE') FROM scuttlebutt.poll('pm', NULL) p;

-- a conninfo changed by hand must still parse
\set VERBOSITY terse
UPDATE scuttlebutt.peers SET conninfo = 'password=abc def' WHERE id = :p1;
\set VERBOSITY default

-- poll() ends an answer that holds all the rest with the model's header
-- (its clock in the same snapshot); a clock ahead of the caller's alone
-- (its updates superseded) is news too
SELECT scuttlebutt.apply_update('pm', '[["a",5],12,"S3"]');  -- loses to S2's "a"
SELECT replace(p::text, :'node', 'NODE') FROM scuttlebutt.poll('pm', '{"S1": 20, "S2": 30}', 10) p;
SELECT count(*) FROM scuttlebutt.poll('pm', '{"S1": 20, "S2": 30, "S3": 12}', 10);

-- worker_conf_load_time(): when the worker (serving "postgres") last read
-- the settings; a reload moves it (the TAP tests wait on it)
SELECT scuttlebutt.worker_conf_load_time() BETWEEN pg_postmaster_start_time() AND now()
	AS worker_read_settings;
