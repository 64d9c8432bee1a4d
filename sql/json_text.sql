-- stringify(): the text JSON.stringify writes for a value
-- numbers: shortest round-trip digits, JavaScript's notation boundaries
SELECT v, scuttlebutt.stringify(v::jsonb)
FROM unnest(ARRAY['0', '-0', '1', '-1', '0.1', '1.5', '100', '1e-6', '1e-7', '0.000001',
                  '0.0000012345', '9.99e-7', '1e20', '1e21', '999000000000000000000',
                  '123456789012345678901', '1.7976931348623157e308', '5e-324',
                  '9007199254740993', '0.30000000000000004', '1e300', '-1.5e-10',
                  '2.5E+3', '1.0', '12345678901234567890123',
                  -- shortest forms on a rounding boundary (Ryu alone writes more digits)
                  '1e23', '5e22', '8e23', '28788967360742390']) AS v;
-- object keys: array indexes first in ascending order, then the others
SELECT scuttlebutt.stringify('{"b":1,"10":2,"1":3,"a":4,"4294967295":5,"4294967294":6,"01":7}');
SELECT scuttlebutt.stringify('{"-1":1,"1.5":2,"0":3,"":4," 1":5}');
-- strings: only quote, backslash and control characters are escaped
SELECT scuttlebutt.stringify(to_jsonb(E'q"b\\s/\b\f\n\r\t\x01\x1f\x7f\u2028é😀'::text));
-- nesting, empty containers
SELECT scuttlebutt.stringify('[[[[[[[[[[{"a":[{}]}]]]]]]]]],[],{}]');
SELECT scuttlebutt.stringify('{"a":{"2":{"1":[true,false,null]}}}');
SELECT scuttlebutt.stringify('"scalar"'), scuttlebutt.stringify('null'), scuttlebutt.stringify('true');
