-- limits: the length of keys, event names and sources, and how far ahead of
-- this server's clock an update's timestamp may be (max_clock_skew)
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT scuttlebutt.create_model('l_kv');
SELECT scuttlebutt.create_model('l_ev', 'events');

-- keys and event names: up to 1024 bytes, in SQL and in updates alike
SELECT scuttlebutt.set('l_kv', repeat('k', 1024), '1') > 0 AS longest_key;
SELECT scuttlebutt.emit('l_ev', repeat('e', 1024), '1') > 0 AS longest_event;
SELECT pg_temp.err($$SELECT scuttlebutt.set('l_kv', repeat('k', 1025), '1')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set('l_kv', repeat('é', 513), '1')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.delete('l_kv', repeat('k', 3000))$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set_many('l_kv', jsonb_build_object('ok', 1, repeat('k', 3000), 2))$$);
SELECT pg_temp.err($$SELECT scuttlebutt.emit('l_ev', repeat('e', 1025), '1')$$);
SELECT pg_temp.err(format($f$SELECT scuttlebutt.apply_update('l_kv', '[["%s",1],2,"A"]')$f$, repeat('k', 3000)));
SELECT pg_temp.err(format($f$SELECT scuttlebutt.apply_update('l_ev', '[["%s",1],2,"A"]')$f$, repeat('e', 1025)));
-- sources: up to 256 bytes
SELECT scuttlebutt.apply_update('l_kv', format('[["s",1],1,"%s"]', repeat('s', 256))::json) AS longest_source;
SELECT pg_temp.err(format($f$SELECT scuttlebutt.apply_update('l_kv', '[["s",1],2,"%s"]')$f$, repeat('s', 257)));
SELECT pg_temp.err(format($f$SELECT scuttlebutt.import('l_kv', E'[["a",1],1,"A"]\n[["b",1],2,"%s"]')$f$, repeat('s', 2500)));
-- a clock entry of a source too long to hold is left out
SELECT scuttlebutt._push('l_kv', format('{"id":"P","clock":{"%s":5,"P0":5}}', repeat('s', 2500)));
SELECT string_agg(length(s)::text, ',' ORDER BY s) AS clock_sources
  FROM jsonb_object_keys(scuttlebutt.clock('l_kv')) s;
SELECT count(*) AS stored FROM scuttlebutt.updates WHERE model_id = scuttlebutt._model_id('l_kv');

-- clock skew: one minute by default
SHOW scuttlebutt.max_clock_skew;
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('l_kv', '[["f",1],1e15,"F"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('l_kv', '[["f",1],1.7976931348623157e308,"F"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.import('l_kv', E'[["a",1],3,"A"]\n[["f",1],1e15,"F"]')$$);
-- this node's own source too: beyond the skew that is forgery or a broken clock
SELECT pg_temp.err(format($f$SELECT scuttlebutt.apply_update('l_kv', '[["f",1],1e15,"%s"]')$f$, scuttlebutt.node_id()));
-- within the skew an update is taken, ours included (a restored node)
SELECT scuttlebutt.apply_update('l_kv', format('[["near",1],%s,"N"]',
	(extract(epoch FROM clock_timestamp()) * 1000 + 30000)::bigint)::json) AS near_taken;
SELECT scuttlebutt.apply_update('l_kv', format('[["own",1],%s,"%s"]',
	(extract(epoch FROM clock_timestamp()) * 1000 + 30000)::bigint, scuttlebutt.node_id())::json) AS own_near_taken;
SELECT ts AS own_ts FROM scuttlebutt.updates
  WHERE model_id = scuttlebutt._model_id('l_kv') AND key = 'own' \gset
SELECT scuttlebutt.set('l_kv', 'own', '2') > :own_ts AS local_write_passes_it;
-- a push defers such an update, with the later ones of its source, and
-- raises no clock past it
SELECT scuttlebutt._push('l_kv', E'[["p1",1],5,"P"]\n[["f",1],1e15,"F"]\n[["f2",1],6,"F"]\n{"id":"P","clock":{"P":5,"F":1e15,"Q":1e15}}');
SELECT scuttlebutt.clock('l_kv') ? 'F' AS f_clock, scuttlebutt.clock('l_kv') ? 'Q' AS q_clock,
	scuttlebutt.clock('l_kv')->'P' AS p_clock;
SELECT count(*) FILTER (WHERE key IN ('f', 'f2')) AS deferred_stored, count(*) FILTER (WHERE key = 'p1') AS p1_stored
  FROM scuttlebutt.updates WHERE model_id = scuttlebutt._model_id('l_kv');
-- the sequencer: no floor past the bound moves it
SELECT pg_temp.err($$SELECT scuttlebutt._next_local_ts(scuttlebutt._model_id('l_kv'), scuttlebutt.node_id(), 1.79e308)$$);
SELECT scuttlebutt.set('l_kv', 'after', '1') < (extract(epoch FROM clock_timestamp()) * 1000 + 60000) AS local_ts_sane;
-- a reloadable setting
SELECT pg_temp.err($$SET scuttlebutt.max_clock_skew = '1s'$$);
