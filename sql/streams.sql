-- export() and import(): the reference's createReadStream() dump format
SELECT scuttlebutt.create_model('src');
SELECT scuttlebutt.apply_update('src', '[["x",{"10":true,"n":1,"b":[1.5,null]}],1795477184259,"A"]');
SELECT scuttlebutt.apply_update('src', '[["y",2],1795477184259.001,"B"]');
SELECT scuttlebutt.apply_update('src', '[["z","live"],1795477184270,"A"]');
-- header (this node's id), history, "SYNC"
SELECT replace(line, scuttlebutt.node_id(), '<node>') FROM scuttlebutt.export('src') line;

-- a dump imports into another model; again, it changes nothing
SELECT scuttlebutt.create_model('dst');
SELECT scuttlebutt.import('dst', string_agg(line, E'\n')) FROM scuttlebutt.export('src') line;
SELECT scuttlebutt.import('dst', string_agg(line, E'\n')) FROM scuttlebutt.export('src') line;
SELECT scuttlebutt.to_json('dst') = scuttlebutt.to_json('src') AS same_state,
       scuttlebutt.clock('dst') = scuttlebutt.clock('src') AS same_clock;
SELECT h FROM scuttlebutt.history('dst') h;

-- a dump as the reference writes it: header with meta, CRLF line ends,
-- blank lines, and JSON values that are ignored (numbers, other strings)
SELECT scuttlebutt.create_model('js');
SELECT scuttlebutt.import('js', E'{"id":"J","clock":{"J":20},"meta":"users"}\r\n' ||
                                 E'[["a",1],10,"J"]\r\n' ||
                                 E'\r\n' ||
                                 E'42\n' ||
                                 E'"hello"\n' ||
                                 E'[["a",2],20,"J"]\n' ||
                                 E'"SYNC"\n');
SELECT scuttlebutt.get('js', 'a'), scuttlebutt.clock('js');
-- a later dump of the same node applies only what is newer
SELECT scuttlebutt.import('js', E'{"id":"J","clock":{"J":30}}\n[["a",2],20,"J"]\n[["b",3],30,"J"]\n"SYNC"');

-- events and values dump and load too
SELECT scuttlebutt.create_model('ev_src', 'events');
SELECT scuttlebutt.apply_update('ev_src', '[["e",1],1,"A"]');
SELECT scuttlebutt.apply_update('ev_src', '[["e",2],2,"A"]');
SELECT scuttlebutt.create_model('ev_dst', 'events');
SELECT scuttlebutt.import('ev_dst', string_agg(line, E'\n')) FROM scuttlebutt.export('ev_src') line;
SELECT * FROM scuttlebutt.events('ev_dst');
SELECT scuttlebutt.create_model('v_dst', 'value');
SELECT scuttlebutt.import('v_dst', E'{"id":"V1","clock":{"V1":3}}\n[{"big":1e+21,"small":1e-7},3,"V1"]\n"SYNC"');
SELECT scuttlebutt.get_value('v_dst');

-- an empty model exports a header and "SYNC"
SELECT scuttlebutt.create_model('empty');
SELECT replace(line, scuttlebutt.node_id(), '<node>') FROM scuttlebutt.export('empty') line;
SELECT scuttlebutt.import('empty', '');

-- a large dump is applied in batches
SELECT scuttlebutt.create_model('large');
SELECT scuttlebutt.import('large', string_agg(format('[["k%s",%s],%s,"S%s"]', i, i, i, i % 7), E'\n'))
FROM generate_series(1, 25000) i;
SELECT count(*), count(DISTINCT source) FROM scuttlebutt.entries('large');

-- a batch of keys the model does not hold is stored by bulk insert; one that
-- meets a held key by bulk replace: each held row kept if newer (the merge
-- rule), else replaced
SELECT scuttlebutt.create_model('copied');
SET client_min_messages = debug1;
SELECT scuttlebutt.import('copied', string_agg(format('[["k%s",%s],%s,"B"]', i, i, 1000 + i), E'\n'))
FROM generate_series(1, 3000) i;
-- k1 again, older, from another source (not stored), and 2,999 new keys
SELECT scuttlebutt.import('copied', '[["k1",-1],500,"D"]' || E'\n' ||
	string_agg(format('[["n%s",%s],%s,"C"]', i, i, 10000 + i), E'\n'))
FROM generate_series(1, 2999) i;
RESET client_min_messages;
SELECT count(*), count(*) FILTER (WHERE source = 'B') AS b, count(*) FILTER (WHERE source = 'C') AS c
FROM scuttlebutt.entries('copied');
SELECT scuttlebutt.get('copied', 'k1'), scuttlebutt.get('copied', 'k3000'), scuttlebutt.get('copied', 'n2999');
SELECT scuttlebutt.clock('copied');
-- strings are read from the line's text when it has no backslash, and
-- de-escaped when it has one: the same strings either way
SELECT scuttlebutt.create_model('strs');
SELECT scuttlebutt.import('strs', E'[["plain \u00e9",1],1,"S\u00e9"]\n[["quo\\"te",2],2,"S\\u00e9"]\n[["tab\\tk",3],3,"S\u00e9"]');
SELECT key, value, source, length(key) FROM scuttlebutt.entries('strs') ORDER BY key;
SELECT scuttlebutt.clock('strs');
-- events are never held twice: a batch of them is copied
SELECT scuttlebutt.create_model('copied_ev', 'events');
SET client_min_messages = debug1;
SELECT scuttlebutt.import('copied_ev', string_agg(format('[["e",%s],%s,"E"]', i, i), E'\n'))
FROM generate_series(1, 1500) i;
RESET client_min_messages;
SELECT count(*) FROM scuttlebutt.history('copied_ev');

-- this node's own updates, adopted by a transaction that rolled back, are
-- still new afterwards: the clock row does not move past what is stored
SELECT scuttlebutt.create_model('own_src');
SELECT scuttlebutt.set_many('own_src', (SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 30) i));
SELECT scuttlebutt.create_model('own_dst');
CREATE TEMP TABLE own_lines AS SELECT line, n
	FROM scuttlebutt.export('own_src') WITH ORDINALITY e(line, n);
BEGIN;
SELECT scuttlebutt.import('own_dst', string_agg(line, E'\n' ORDER BY n)) FROM own_lines;
ROLLBACK;
SELECT scuttlebutt.import('own_dst', string_agg(line, E'\n' ORDER BY n)) FROM own_lines WHERE n <= 11;
SELECT scuttlebutt.import('own_dst', string_agg(line, E'\n' ORDER BY n)) FROM own_lines WHERE n > 11;
SELECT scuttlebutt.to_json('own_dst')::jsonb = scuttlebutt.to_json('own_src')::jsonb AS same;
