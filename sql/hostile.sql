-- what a hostile peer or role may send: refused with a SQLSTATE, nothing stored
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT scuttlebutt.create_model('h_kv');
SELECT scuttlebutt.create_model('h_ev', 'events');

-- numbers beyond a double, on every path (JSON.parse reads them as Infinity)
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('h_kv', '[["k",1e400],1,"A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('h_kv', '[["k",-1e400],1,"A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('h_kv', '[["k",{"x":[0.1e310]}],1,"A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('h_kv', '[["k",1.7976931348623159e308],1,"A"]')$$);
SELECT pg_temp.err(format($$SELECT scuttlebutt.apply_update('h_kv', '[["k",1%s],1,"A"]')$$, repeat('0', 309)));
SELECT pg_temp.err(format($$SELECT scuttlebutt.apply_update('h_kv', '[["k",[%s]],1,"A"]')$$,
	(SELECT string_agg('1e99999', ',') FROM generate_series(1, 10000))));
SELECT pg_temp.err($$SELECT scuttlebutt.import('h_kv', E'[["a",1],1,"A"]\n[["b",1e400],2,"A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set('h_kv', 'k', '-1e400')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set_many('h_kv', '{"a":1,"b":[1e400]}')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.emit('h_ev', 'e', '{"n":1e309}')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.stringify('1e400')$$);
SELECT count(*) AS nothing_stored FROM scuttlebutt.history('h_kv');

-- the doubles at the edges are kept byte for byte
SELECT scuttlebutt.apply_update('h_kv', '[["max",1.7976931348623157e308],1,"A"]');
SELECT scuttlebutt.apply_update('h_kv', '[["max_rounded",1.7976931348623158e308],2,"A"]');
SELECT scuttlebutt.apply_update('h_kv', '[["min",[5e-324,-5e-324]],3,"A"]');
SELECT scuttlebutt.apply_update('h_kv', '[["negzero",-0],4,"A"]');
SELECT scuttlebutt.apply_update('h_kv', '[["long",0.1000000000000000055511151231257827021181583404541015625],5,"A"]');
SELECT scuttlebutt.apply_update('h_kv', '[["e308",[1e308,-1E+308,0.00001e313]],6,"A"]');
SELECT scuttlebutt.apply_update('h_kv', '[["under",1e-400],7,"A"]');
SELECT h FROM scuttlebutt.history('h_kv') h;
SELECT scuttlebutt.stringify(scuttlebutt.get('h_kv', 'max_rounded'));

-- nesting deeper than 512 levels is refused before it is parsed
SELECT pg_temp.err(format($$SELECT scuttlebutt.apply_update('h_kv', %L)$$, repeat('[', 1000) || repeat(']', 1000)));
SELECT pg_temp.err(format($$SELECT scuttlebutt.import('h_kv', %L)$$, repeat('{"a":', 100000)));
SELECT scuttlebutt.apply_update('h_kv', format('[["deep",%s1%s],8,"A"]', repeat('[', 510), repeat(']', 510))::json);

-- an update is one line: a line break outside strings is refused
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('h_kv', E'[["nl",\n1],9,"A"]')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('h_kv', E'[["cr",1],\r9,"A"]')$$);
-- and no role can store one in the table
SELECT pg_temp.err(format($$INSERT INTO scuttlebutt.updates VALUES (%s, 'A', 10, 'nl', E'[["nl",\n1],10,"A"]')$$,
	(SELECT id FROM scuttlebutt.registry WHERE name = 'h_kv')));
SELECT pg_temp.err(format($$INSERT INTO scuttlebutt.updates VALUES (%s, 'A', 10, 'cr', E'[["cr",1],10,\r"A"]')$$,
	(SELECT id FROM scuttlebutt.registry WHERE name = 'h_kv')));
SELECT count(*) AS kept FROM scuttlebutt.history('h_kv');

SELECT scuttlebutt.drop_model('h_kv');
SELECT scuttlebutt.drop_model('h_ev');
