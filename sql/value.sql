-- value (r-value): set_value() and get_value(), the latest update kept
SELECT scuttlebutt.create_model('val', 'value');
SELECT scuttlebutt.get_value('val') IS NULL AS empty;

SELECT scuttlebutt.set_value('val', '{"big":1e21,"small":1e-7,"x":123456789012345678901}') > 0 AS set;
SELECT scuttlebutt.get_value('val');
SELECT replace(regexp_replace(h::text, ',[0-9.e+]+,', ',<ts>,'), scuttlebutt.node_id(), '<node>')
FROM scuttlebutt.history('val') h;
SELECT scuttlebutt.set_value('val', '"second"') > 0 AS set;
SELECT scuttlebutt.get_value('val');
SELECT count(*) AS held FROM scuttlebutt.history('val');
SELECT scuttlebutt.set_value('val', NULL) > 0 AS set;
SELECT scuttlebutt.get_value('val');

-- remote values: the greatest (timestamp, source) wins
SELECT scuttlebutt.create_model('val2', 'value');
SELECT scuttlebutt.apply_update('val2', '[[1,2,3],500,"A"]');
SELECT scuttlebutt.apply_update('val2', '["older",400,"B"]');
SELECT scuttlebutt.apply_update('val2', '["tie, greater source",500,"B"]');
SELECT scuttlebutt.apply_update('val2', '["tie, lesser source",500,"0"]');
SELECT scuttlebutt.get_value('val2');
SELECT h FROM scuttlebutt.history('val2') h;
SELECT scuttlebutt.clock('val2');
