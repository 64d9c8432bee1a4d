-- merge rules at timestamp ties: of two updates of a key with the same
-- timestamp the greater source in byte order stays, whatever the arrival
-- order (src/merge.h states the rule; test/unit/merge_test.c tests it)

SELECT scuttlebutt.create_model('tie_kv');
SELECT scuttlebutt.create_model('tie_kv2');
SELECT scuttlebutt.create_model('tie_val', 'value');
SELECT scuttlebutt.create_model('tie_val2', 'value');
SELECT scuttlebutt.create_model('tie_ev', 'events');

-- equal ts, different sources: B after A replaces, A after B loses
SELECT scuttlebutt.apply_update('tie_kv', '[["k","from A"],100,"A"]') AS stored;
SELECT scuttlebutt.apply_update('tie_kv', '[["k","from B"],100,"B"]') AS stored;
SELECT scuttlebutt.apply_update('tie_kv2', '[["k","from B"],100,"B"]') AS stored;
SELECT scuttlebutt.apply_update('tie_kv2', '[["k","from A"],100,"A"]') AS stored;
SELECT m, key, value, ts, source FROM (
	SELECT 'tie_kv' AS m, * FROM scuttlebutt.entries('tie_kv')
	UNION ALL SELECT 'tie_kv2', * FROM scuttlebutt.entries('tie_kv2')) e ORDER BY m;
-- both clocks hold both sources: the loser was seen
SELECT scuttlebutt.clock('tie_kv') AS kv, scuttlebutt.clock('tie_kv2') AS kv2;

-- equal ts and source: the same version again is old (at the clock)
SELECT scuttlebutt.apply_update('tie_kv', '[["k","again"],100,"B"]') AS stored;
SELECT scuttlebutt.get('tie_kv', 'k');

-- byte order, not the collation's: lower case after upper, é (C3 A9)
-- after z (7A), a prefix before its extension, digits as bytes
SELECT scuttlebutt.apply_update('tie_kv', '[["case",1],100,"a"]') AS stored,
       scuttlebutt.apply_update('tie_kv', '[["case",2],100,"Z"]') AS stored;
SELECT scuttlebutt.apply_update('tie_kv', '[["accent",1],100,"z"]') AS stored,
       scuttlebutt.apply_update('tie_kv', '[["accent",2],100,"é"]') AS stored;
SELECT scuttlebutt.apply_update('tie_kv2', '[["accent",2],100,"é"]') AS stored,
       scuttlebutt.apply_update('tie_kv2', '[["accent",1],100,"z"]') AS stored;
SELECT scuttlebutt.apply_update('tie_kv', '[["prefix",1],100,"ab"]') AS stored,
       scuttlebutt.apply_update('tie_kv', '[["prefix",2],100,"a"]') AS stored;
SELECT scuttlebutt.apply_update('tie_kv', '[["digits",1],100,"9"]') AS stored,
       scuttlebutt.apply_update('tie_kv', '[["digits",2],100,"10"]') AS stored;
SELECT scuttlebutt.apply_update('tie_kv', '[["astral",1],100,"😀"]') AS stored,
       scuttlebutt.apply_update('tie_kv', '[["astral",2],100,"\ufffd"]') AS stored;
SELECT m, key, value, source FROM (
	SELECT 'tie_kv' AS m, * FROM scuttlebutt.entries('tie_kv')
	UNION ALL SELECT 'tie_kv2', * FROM scuttlebutt.entries('tie_kv2')) e
WHERE key <> 'k' ORDER BY m, key;
-- under a linguistic collation é sorts before z: the rule does not use it
SELECT 'é' < 'z' COLLATE "C" AS c_bytes;

-- -0 and 0 are one timestamp: the source decides
SELECT scuttlebutt.apply_update('tie_kv', '[["zero",1],0,"Q"]') AS stored,
       scuttlebutt.apply_update('tie_kv', '[["zero",2],-0,"P"]') AS stored;
SELECT scuttlebutt.get('tie_kv', 'zero');

-- a value: the same rule
SELECT scuttlebutt.apply_update('tie_val', '["from A",100,"A"]') AS stored,
       scuttlebutt.apply_update('tie_val', '["from B",100,"B"]') AS stored;
SELECT scuttlebutt.apply_update('tie_val2', '["from B",100,"B"]') AS stored,
       scuttlebutt.apply_update('tie_val2', '["from A",100,"A"]') AS stored;
SELECT scuttlebutt.get_value('tie_val') AS val, scuttlebutt.get_value('tie_val2') AS val2;

-- events: both updates of a tie are kept, ordered by (ts, source)
SELECT scuttlebutt.apply_update('tie_ev', '[["e","from B"],100,"B"]') AS stored,
       scuttlebutt.apply_update('tie_ev', '[["e","from A"],100,"A"]') AS stored,
       scuttlebutt.apply_update('tie_ev', '[["e","again"],100,"A"]') AS stored;
SELECT * FROM scuttlebutt.events('tie_ev');

-- one batch (import) with several updates of a key at one timestamp, in
-- both arrival orders: the same winner, and each update that would have
-- changed the state applied one by one is counted
SELECT scuttlebutt.create_model('tie_batch');
SELECT scuttlebutt.create_model('tie_batch2');
SELECT scuttlebutt.import('tie_batch', E'[["k",1],7,"A"]\n[["k",2],7,"C"]\n[["k",3],7,"B"]') AS changed;
SELECT scuttlebutt.import('tie_batch2', E'[["k",2],7,"C"]\n[["k",3],7,"B"]\n[["k",1],7,"A"]') AS changed;
SELECT scuttlebutt.get('tie_batch', 'k') AS batch, scuttlebutt.get('tie_batch2', 'k') AS batch2;
-- a later batch at the same timestamp from a greater source still wins
SELECT scuttlebutt.import('tie_batch', E'[["k",4],7,"D"]') AS changed,
       scuttlebutt.import('tie_batch2', E'[["k",0],7,"0"]') AS changed;
SELECT scuttlebutt.get('tie_batch', 'k') AS batch, scuttlebutt.get('tie_batch2', 'k') AS batch2;

SELECT scuttlebutt.drop_model(m)
FROM unnest(ARRAY['tie_kv', 'tie_kv2', 'tie_val', 'tie_val2', 'tie_ev', 'tie_batch', 'tie_batch2']) m;

-- A lone update of a source the model knows (one statement advances the
-- clock and stores it): losing the merge it still moves the clock; at the
-- clock it is old; past the held one it wins.  The same for an event.
SELECT scuttlebutt.create_model('lone');
SELECT scuttlebutt.apply_update('lone', '[["x",1],50,"B"]') AS stored;
SELECT scuttlebutt.apply_update('lone', '[["k","A"],200,"A"]') AS stored;
SELECT scuttlebutt.apply_update('lone', '[["k","B"],150,"B"]') AS stored;
SELECT scuttlebutt.get('lone', 'k'), scuttlebutt.clock('lone');
SELECT scuttlebutt.apply_update('lone', '[["k","B2"],150,"B"]') AS stored;
SELECT scuttlebutt.apply_update('lone', '[["k","B3"],250,"B"]') AS stored;
SELECT scuttlebutt.get('lone', 'k'), scuttlebutt.clock('lone');
SELECT scuttlebutt.create_model('lone_ev', 'events');
SELECT scuttlebutt.apply_update('lone_ev', '[["e",1],50,"B"]') AS stored;
SELECT scuttlebutt.apply_update('lone_ev', '[["e",2],60,"B"]') AS stored;
SELECT scuttlebutt.apply_update('lone_ev', '[["e",3],60,"B"]') AS stored;
SELECT * FROM scuttlebutt.history('lone_ev');
