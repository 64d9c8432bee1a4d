-- every user-reachable error, with its SQLSTATE
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT scuttlebutt.create_model('e_kv');
SELECT scuttlebutt.create_model('e_ev', 'events');
SELECT scuttlebutt.create_model('e_val', 'value');
SELECT scuttlebutt.set('e_kv', 'kept', '"safe"') > 0 AS set;

-- models
SELECT pg_temp.err($$SELECT scuttlebutt.create_model('e_kv')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.create_model('x', 'tree')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.create_model('')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.create_model(NULL)$$);
SELECT pg_temp.err($$SELECT scuttlebutt.drop_model('nope')$$);
-- unknown model, wrong kind
SELECT pg_temp.err($$SELECT scuttlebutt.set('nope', 'k', '1')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.get('nope', 'k')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.history('nope')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.export('nope')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set('e_ev', 'k', '1')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.emit('e_kv', 'k', '1')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set_value('e_kv', '1')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.get_value('e_ev')$$);
SELECT pg_temp.err($$SELECT * FROM scuttlebutt.events('e_val')$$);
SELECT pg_temp.err($$SELECT * FROM scuttlebutt.entries('e_ev')$$);
-- __proto__ and nulls
SELECT pg_temp.err($$SELECT scuttlebutt.set('e_kv', '__proto__', '1')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.delete('e_kv', '__proto__')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.emit('e_ev', '__proto__', '1')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set_many('e_kv', '{"ok":1,"__proto__":2}')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set('e_kv', NULL, '1')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.emit('e_ev', NULL, '1')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set_many('e_kv', '[1,2]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set_many('e_kv', NULL)$$);
-- values JavaScript cannot hold as numbers
SELECT pg_temp.err($$SELECT scuttlebutt.set('e_kv', 'k', '1e400')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set_value('e_val', '[-1e309]')$$);
-- underflow reads as 0, as JSON.parse reads it
SELECT scuttlebutt.stringify('[1e-400, -1e-400]');
-- remote updates
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_kv', '{"id":"A","clock":{}}')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_kv', '"SYNC"')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_kv', '[["k",1],1]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_kv', '[["k",1],1,"A","sig",5]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_kv', '[["k",1],"1","A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_kv', '[["k",1],1e400,"A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_kv', '[["k",1],null,"A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_kv', '[["k",1],1,5]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_kv', '[["k",1],1,"__proto__"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_kv', '[["k",1],1,"A",7]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_kv', '[["__proto__",1],1,"A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_kv', '[[1,1],1,"A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_kv', '[["k"],1,"A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_kv', '["k",1,"A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_ev', '[{"e":1},1,"A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_ev', '[["__proto__",1],1,"A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_kv', '[["k","\u0000"],1,"A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_kv', '[["k","\ud83d"],1,"A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_kv', '[["k","\udc00"],1,"A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_kv', '[["k",1e999999],1,"A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_kv', NULL)$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('e_kv', (repeat('[', 600) || repeat(']', 600))::json)$$);
-- history arguments
SELECT pg_temp.err($$SELECT scuttlebutt.history('e_kv', '[1]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.history('e_kv', '{"A":"1"}')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.history('e_kv', '{"A":1e400}')$$);
-- import: any bad line rejects the whole dump
SELECT pg_temp.err($$SELECT scuttlebutt.import('e_kv', E'[["a",1],1,"A"]\n[["b",1],2,"A"')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.import('e_kv', E'{"id":"A"}\n[["a",1],1,"A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.import('e_kv', E'[["a",1],1,"A"]\n[["b",1],"2","A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.import('e_kv', E'[["a",1],1,"A"]\n[["b","\\u0000"],2,"A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.import('e_kv', E'{"id":"A","clock":{"A":"x"}}')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.import('e_kv', NULL)$$);

-- nothing of any of that was stored
SELECT key, value, source = scuttlebutt.node_id() AS own FROM scuttlebutt.entries('e_kv');
SELECT scuttlebutt.clock('e_kv') - scuttlebutt.node_id() AS remote_clock;
SELECT count(*) FROM scuttlebutt.events('e_ev');
SELECT scuttlebutt.get_value('e_val') IS NULL AS empty;

-- a plain error as psql shows it, with its hint
SELECT scuttlebutt.get('nope', 'k');
