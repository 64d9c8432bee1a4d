-- signed models: trusted keys, signing with this node's key, verification
-- on every SQL path.  The keys below are test keys, made for this file only.
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
-- writes a private key into the data directory, readable by the server only
CREATE FUNCTION pg_temp.write_key(name text, pem text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('COPY (SELECT %L) TO PROGRAM %L',
		translate(encode(convert_to(pem, 'UTF8'), 'base64'), E'\n', ''),
		format('umask 077 && rm -f %1$s && base64 -d > %1$s', name));
END $$;
\getenv abs_srcdir PG_ABS_SRCDIR
CREATE TEMP TABLE pem (name text PRIMARY KEY, text text NOT NULL);
INSERT INTO pem VALUES
	('rsa', $pem$-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA5/4svd21GDWKEDaPgI3N
Iy0jaUM5lKYjn9wUFTAFOynXtnBhZ3v9SGYm9PrlCnZIQ+YeWGqpAmHQHQMK/dLA
zEj1LAjA/emHcZceege52ZV/jX97O93q6B3rTJaQUf6oURkvR6yUas0aV/4UG7Mw
WGwfrVHV6BP+I6LJxcMet7nWwcBTuuH+iCcbRE2P9WQH+UarymWrYoT9j16PfaCj
OS9uVSm7QkUDobeJY/4d2dPm4GDa0ZQgS8llTOhvOHQDKq6x3HU7XRkUAVaZOV/S
M5ZLwMxfTiqCkCt3WjErwBTPGyYt8yjXx1I9UoSWTIVspkVvSKXenTMv2vPtJk5a
kwIDAQAB
-----END PUBLIC KEY-----
$pem$),
	('rsa_pkcs1', $pem$-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEA5/4svd21GDWKEDaPgI3NIy0jaUM5lKYjn9wUFTAFOynXtnBhZ3v9
SGYm9PrlCnZIQ+YeWGqpAmHQHQMK/dLAzEj1LAjA/emHcZceege52ZV/jX97O93q
6B3rTJaQUf6oURkvR6yUas0aV/4UG7MwWGwfrVHV6BP+I6LJxcMet7nWwcBTuuH+
iCcbRE2P9WQH+UarymWrYoT9j16PfaCjOS9uVSm7QkUDobeJY/4d2dPm4GDa0ZQg
S8llTOhvOHQDKq6x3HU7XRkUAVaZOV/SM5ZLwMxfTiqCkCt3WjErwBTPGyYt8yjX
x1I9UoSWTIVspkVvSKXenTMv2vPtJk5akwIDAQAB
-----END RSA PUBLIC KEY-----
$pem$),
	('ed25519', $pem$-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA9TBiF29hT60kepiGnZ/kneHYOdyxGsmoyPIEi+rK9+A=
-----END PUBLIC KEY-----
$pem$),
	('other_rsa', $pem$-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAq8kXZYuTIVL4383IFLVQ
SUD4zZfpn469E313NArq1sVeTd88oAj9g1eH6JmnBPuAbiWJ+eub189DZHswHGWi
igYxH2I/nsVNt7EHsax7Sdukcj3e9bHiG4n5Vtb988S/nRz+S1K1gdxF7DoaLdJ6
5nyNvghDf+feVBE5BO0LwHYl6btjxo7wipLz+FcbKToeui6OpjrWR4GbccrH+H/a
BfMWRS0nLx8RjIQpb021DzDwWclX8RcsOFWjqnZbqH6RWOY/QemAu5d+kraZdR+q
4s1tNYKsYcW4887ztiZRkDsApn+wRa9Aw7qwzNDNK56r9HZMVp0wCfcUC3VDvomx
lQIDAQAB
-----END PUBLIC KEY-----
$pem$),
	('ec', $pem$-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEdnkr5Fo5mxP+DlbgJZlIy0bcgPvg
OfQg8TAppapzwVHZdsHLLWx9wHm+RSj4p/bR5aekpwszZVhuI6Y2fJ9g9Q==
-----END PUBLIC KEY-----
$pem$);

-- without a signing key: no public key, a random id, signed models refuse writes
SHOW scuttlebutt.signing_key_file;
SELECT scuttlebutt.node_public_key() IS NULL AS no_public_key;
SELECT scuttlebutt.node_id() = (SELECT id FROM scuttlebutt.node) AS random_id;
SELECT scuttlebutt.create_model('s_kv', 'model', true);
SELECT scuttlebutt.create_model('s_ev', 'events', true);
SELECT scuttlebutt.create_model('s_val', 'value', true);
SELECT scuttlebutt.create_model('u_kv');
SELECT name, kind, signed, signature_algorithm FROM scuttlebutt.models
	WHERE name IN ('s_kv', 's_ev', 's_val', 'u_kv') ORDER BY name;
SELECT pg_temp.err($$SELECT scuttlebutt.create_model('s_null', 'model', NULL)$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set('s_kv', 'k', '1')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set_many('s_kv', '{"a":1}')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.delete('s_kv', 'k')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.emit('s_ev', 'e', '1')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set_value('s_val', '1')$$);
SELECT count(*) AS nothing_stored FROM scuttlebutt.history('s_kv');

-- trusting keys: the id is base64(SHA-1) of the exact text, as security.js
SELECT scuttlebutt.trust_key(text) AS id, name FROM pem
	WHERE name IN ('rsa', 'rsa_pkcs1', 'ed25519') ORDER BY name;
SELECT scuttlebutt.trust_key(text) FROM pem WHERE name = 'rsa';	-- again: the same id
SELECT scuttlebutt.trust_key(rtrim(text, E'\n')) <> scuttlebutt._key_id(text) AS newline_counts
	FROM pem WHERE name = 'ed25519';
SELECT scuttlebutt.distrust_key(scuttlebutt._key_id(rtrim(text, E'\n'))) FROM pem WHERE name = 'ed25519';
SELECT source, algorithm, key_size, added <= now() AS added FROM scuttlebutt.keys ORDER BY source;
SELECT pg_temp.err($$SELECT scuttlebutt.trust_key('not a key')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.trust_key(E'-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n')$$);
SELECT pg_temp.err(format('SELECT scuttlebutt.trust_key(%L)', (SELECT text FROM pem WHERE name = 'ec')));
SELECT pg_temp.err(format('SELECT scuttlebutt.trust_key(%L)',
	(SELECT string_agg(text, '' ORDER BY name) FROM pem WHERE name IN ('rsa', 'other_rsa'))));
SELECT pg_temp.err($$SELECT scuttlebutt.trust_key(NULL)$$);
-- a key is held under its own id only, even by a superuser's INSERT
SELECT pg_temp.err(format($$INSERT INTO scuttlebutt.trusted_keys (source, public_key, algorithm, key_size)
	VALUES ('DjGANptrsKin+s3dzktgi2QuaK8=', %L, 'rsa', 2048)$$, (SELECT text FROM pem WHERE name = 'rsa')));
SELECT scuttlebutt.distrust_key('nobody');

-- only a superuser decides whom a model believes
CREATE ROLE sb_signed_user;
SET ROLE sb_signed_user;
SELECT pg_temp.err($$SELECT scuttlebutt.trust_key('x')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.distrust_key('x')$$);
SELECT pg_temp.err($$SELECT scuttlebutt.set_signature_algorithm('s_kv', 'ed25519')$$);
RESET ROLE;
DROP ROLE sb_signed_user;

-- verification by apply_update(): every check, with its SQLSTATE
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('s_kv', '[["x",1],1700000000000,"+FTKiPRbMrss6uxyYbkYqe/ddHU="]')$$) AS unsigned;
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('s_kv', '[["x",1],1700000000000,"DjGANptrsKin+s3dzktgi2QuaK8=","AAAA"]')$$) AS unknown_key;
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('s_kv', '[["x",1],1700000000000,"+FTKiPRbMrss6uxyYbkYqe/ddHU=","AAAA"]')$$) AS bad_signature;
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('s_kv', '[["x",1],1700000000000,"+FTKiPRbMrss6uxyYbkYqe/ddHU=","not base64!"]')$$) AS not_base64;
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('s_kv', '[["x",2],1700000000000,"+FTKiPRbMrss6uxyYbkYqe/ddHU=","BBtkbO2Sa3Mo/t3GW+b6AdC/VwEWcwVR4XpKc8lYVXvqLMKo2hFwSq/l62yRHXeawGvmMJ7Ox4/gd/g25dFtQumm+zkh0m/Rv590sjocIz7aF8AMzkXnJtMM2OQFToyCyqzoVwJLdSpyMamQbxDqH8+CgX4gig76bj2r+UzpqtmCUK9hVQ0WU/KfLeAF/ZoCOfxOW9I43W2HEh2w5F16Rbts4XK+S6OgGrn14UXUu+2ZLuxwzFiD0zJpqM0yo52UDRGZrf5AacNr5yR5CmCQUg6CvCrgqo1gy6h+Rz1CkbwIa0WKpV9uXa3OtYLpTnntjqPFlM0SkEtLLkPg3Wkmsw=="]')$$) AS altered_value;
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('s_kv', '[["y",{"b":1,"a":[1.5,null]}],1700000000001,"MJcnto/XEJ+cYoTBXW65Wb4AMzc=","Gw0GX+uxiqvhjIpRJ26nCq2cxgU2UUvGUqwIc3Vn6mWW9ZmLpux1L2ivXnXkycFqcCpIHhtfnu3WE+Jg7QY3CA=="]')$$) AS other_algorithm;
SELECT count(*) AS nothing_stored FROM scuttlebutt.history('s_kv');
SELECT count(*) AS no_clock_moved FROM scuttlebutt.clocks c JOIN scuttlebutt.registry r ON r.id = c.model_id
	WHERE r.name = 's_kv';
-- a genuine update is taken, and kept byte for byte
SELECT scuttlebutt.apply_update('s_kv', '[["x",1],1700000000000,"+FTKiPRbMrss6uxyYbkYqe/ddHU=","BBtkbO2Sa3Mo/t3GW+b6AdC/VwEWcwVR4XpKc8lYVXvqLMKo2hFwSq/l62yRHXeawGvmMJ7Ox4/gd/g25dFtQumm+zkh0m/Rv590sjocIz7aF8AMzkXnJtMM2OQFToyCyqzoVwJLdSpyMamQbxDqH8+CgX4gig76bj2r+UzpqtmCUK9hVQ0WU/KfLeAF/ZoCOfxOW9I43W2HEh2w5F16Rbts4XK+S6OgGrn14UXUu+2ZLuxwzFiD0zJpqM0yo52UDRGZrf5AacNr5yR5CmCQUg6CvCrgqo1gy6h+Rz1CkbwIa0WKpV9uXa3OtYLpTnntjqPFlM0SkEtLLkPg3Wkmsw=="]');
SELECT (SELECT doc::text FROM scuttlebutt.history('s_kv') h(doc)) = '[["x",1],1700000000000,"+FTKiPRbMrss6uxyYbkYqe/ddHU=","BBtkbO2Sa3Mo/t3GW+b6AdC/VwEWcwVR4XpKc8lYVXvqLMKo2hFwSq/l62yRHXeawGvmMJ7Ox4/gd/g25dFtQumm+zkh0m/Rv590sjocIz7aF8AMzkXnJtMM2OQFToyCyqzoVwJLdSpyMamQbxDqH8+CgX4gig76bj2r+UzpqtmCUK9hVQ0WU/KfLeAF/ZoCOfxOW9I43W2HEh2w5F16Rbts4XK+S6OgGrn14UXUu+2ZLuxwzFiD0zJpqM0yo52UDRGZrf5AacNr5yR5CmCQUg6CvCrgqo1gy6h+Rz1CkbwIa0WKpV9uXa3OtYLpTnntjqPFlM0SkEtLLkPg3Wkmsw=="]' AS kept_as_sent;
-- the signed text is JSON.stringify of the value, whatever the layout sent
SELECT scuttlebutt.apply_update('s_kv2', '[ [ "\u0078" , 1.0 ] , 1.7e12 , "+FTKiPRbMrss6uxyYbkYqe/ddHU=" , "BBtkbO2Sa3Mo/t3GW+b6AdC/VwEWcwVR4XpKc8lYVXvqLMKo2hFwSq/l62yRHXeawGvmMJ7Ox4/gd/g25dFtQumm+zkh0m/Rv590sjocIz7aF8AMzkXnJtMM2OQFToyCyqzoVwJLdSpyMamQbxDqH8+CgX4gig76bj2r+UzpqtmCUK9hVQ0WU/KfLeAF/ZoCOfxOW9I43W2HEh2w5F16Rbts4XK+S6OgGrn14UXUu+2ZLuxwzFiD0zJpqM0yo52UDRGZrf5AacNr5yR5CmCQUg6CvCrgqo1gy6h+Rz1CkbwIa0WKpV9uXa3OtYLpTnntjqPFlM0SkEtLLkPg3Wkmsw==" ]') FROM (SELECT scuttlebutt.create_model('s_kv2', 'model', true)) m;
SELECT scuttlebutt.get('s_kv2', 'x');
-- an older genuine update of the source is still taken after a refused newer one
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('s_kv', '[["w",1],1800000000000,"+FTKiPRbMrss6uxyYbkYqe/ddHU=","AAAA"]')$$) AS forged_newer;
SELECT scuttlebutt.apply_update('s_kv', '[["z",1],1700000000003,"+FTKiPRbMrss6uxyYbkYqe/ddHU=","Ou1J9f/QBDWEhr0vDw/bEN4scje1O/XmHkzhCXK/0u4DYC8cOc96hfijJSTsbLlM3YgXmABUiCCJ4j5sWBLSbVqsFhZ0UNBFVVDknc4L/oZbtL3YVuDwGIYi4/bQMT7fhpLYFSUqz4+TBBqhnTcThIqNGg6QI7InRBDVZ0yO5SvlQGUTjWTpbhnIVuce/FpOMTo7fspt6qXv8CU49I+eU4QmXIXnZsENNc77vTfJzmu36/ZG2dE2B4Hqt+Uwh2DPExM4wTPxssueoPlOQ8EKytEMrNMLWrXwQLeuUGgeLW7lNlFLVkq4CtyJUtJ/8t8Mcz+1bGJqq6+dyiH4/g6UxA=="]');
SELECT scuttlebutt.get('s_kv', 'z');
-- the other algorithm's model
SELECT scuttlebutt.set_signature_algorithm('s_ev', 'ed25519');
SELECT pg_temp.err($$SELECT scuttlebutt.set_signature_algorithm('s_kv', 'ed25519')$$) AS holds_updates;
SELECT pg_temp.err($$SELECT scuttlebutt.set_signature_algorithm('u_kv', 'ed25519')$$) AS unsigned_model;
SELECT pg_temp.err($$SELECT scuttlebutt.set_signature_algorithm('s_ev', 'dsa')$$) AS unknown_algorithm;
SELECT scuttlebutt.create_model('s_ed', 'model', true);
SELECT scuttlebutt.set_signature_algorithm('s_ed', 'ED25519');
SELECT scuttlebutt.apply_update('s_ed', '[["y",{"b":1,"a":[1.5,null]}],1700000000001,"MJcnto/XEJ+cYoTBXW65Wb4AMzc=","Gw0GX+uxiqvhjIpRJ26nCq2cxgU2UUvGUqwIc3Vn6mWW9ZmLpux1L2ivXnXkycFqcCpIHhtfnu3WE+Jg7QY3CA=="]');
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('s_ed', '[["x",1],1700000000000,"+FTKiPRbMrss6uxyYbkYqe/ddHU=","BBtkbO2Sa3Mo/t3GW+b6AdC/VwEWcwVR4XpKc8lYVXvqLMKo2hFwSq/l62yRHXeawGvmMJ7Ox4/gd/g25dFtQumm+zkh0m/Rv590sjocIz7aF8AMzkXnJtMM2OQFToyCyqzoVwJLdSpyMamQbxDqH8+CgX4gig76bj2r+UzpqtmCUK9hVQ0WU/KfLeAF/ZoCOfxOW9I43W2HEh2w5F16Rbts4XK+S6OgGrn14UXUu+2ZLuxwzFiD0zJpqM0yo52UDRGZrf5AacNr5yR5CmCQUg6CvCrgqo1gy6h+Rz1CkbwIa0WKpV9uXa3OtYLpTnntjqPFlM0SkEtLLkPg3Wkmsw=="]')$$) AS rsa_into_ed25519;
SELECT scuttlebutt.get('s_ed', 'y');

-- import(): a refused line is named, and nothing of the dump is applied
SELECT scuttlebutt.create_model('s_imp', 'model', true);
SELECT pg_temp.err(format('SELECT scuttlebutt.import(%L, %L)', 's_imp',
	'[["x",1],1700000000000,"+FTKiPRbMrss6uxyYbkYqe/ddHU=","BBtkbO2Sa3Mo/t3GW+b6AdC/VwEWcwVR4XpKc8lYVXvqLMKo2hFwSq/l62yRHXeawGvmMJ7Ox4/gd/g25dFtQumm+zkh0m/Rv590sjocIz7aF8AMzkXnJtMM2OQFToyCyqzoVwJLdSpyMamQbxDqH8+CgX4gig76bj2r+UzpqtmCUK9hVQ0WU/KfLeAF/ZoCOfxOW9I43W2HEh2w5F16Rbts4XK+S6OgGrn14UXUu+2ZLuxwzFiD0zJpqM0yo52UDRGZrf5AacNr5yR5CmCQUg6CvCrgqo1gy6h+Rz1CkbwIa0WKpV9uXa3OtYLpTnntjqPFlM0SkEtLLkPg3Wkmsw=="]' || E'\n' || '[["x",2],1700000000000,"+FTKiPRbMrss6uxyYbkYqe/ddHU=","BBtkbO2Sa3Mo/t3GW+b6AdC/VwEWcwVR4XpKc8lYVXvqLMKo2hFwSq/l62yRHXeawGvmMJ7Ox4/gd/g25dFtQumm+zkh0m/Rv590sjocIz7aF8AMzkXnJtMM2OQFToyCyqzoVwJLdSpyMamQbxDqH8+CgX4gig76bj2r+UzpqtmCUK9hVQ0WU/KfLeAF/ZoCOfxOW9I43W2HEh2w5F16Rbts4XK+S6OgGrn14UXUu+2ZLuxwzFiD0zJpqM0yo52UDRGZrf5AacNr5yR5CmCQUg6CvCrgqo1gy6h+Rz1CkbwIa0WKpV9uXa3OtYLpTnntjqPFlM0SkEtLLkPg3Wkmsw=="]' || E'\n'));
SELECT count(*) AS nothing_imported FROM scuttlebutt.history('s_imp');
SELECT scuttlebutt.import('s_imp', '[["x",1],1700000000000,"+FTKiPRbMrss6uxyYbkYqe/ddHU=","BBtkbO2Sa3Mo/t3GW+b6AdC/VwEWcwVR4XpKc8lYVXvqLMKo2hFwSq/l62yRHXeawGvmMJ7Ox4/gd/g25dFtQumm+zkh0m/Rv590sjocIz7aF8AMzkXnJtMM2OQFToyCyqzoVwJLdSpyMamQbxDqH8+CgX4gig76bj2r+UzpqtmCUK9hVQ0WU/KfLeAF/ZoCOfxOW9I43W2HEh2w5F16Rbts4XK+S6OgGrn14UXUu+2ZLuxwzFiD0zJpqM0yo52UDRGZrf5AacNr5yR5CmCQUg6CvCrgqo1gy6h+Rz1CkbwIa0WKpV9uXa3OtYLpTnntjqPFlM0SkEtLLkPg3Wkmsw=="]' || E'\n' || '[["z",1],1700000000003,"+FTKiPRbMrss6uxyYbkYqe/ddHU=","Ou1J9f/QBDWEhr0vDw/bEN4scje1O/XmHkzhCXK/0u4DYC8cOc96hfijJSTsbLlM3YgXmABUiCCJ4j5sWBLSbVqsFhZ0UNBFVVDknc4L/oZbtL3YVuDwGIYi4/bQMT7fhpLYFSUqz4+TBBqhnTcThIqNGg6QI7InRBDVZ0yO5SvlQGUTjWTpbhnIVuce/FpOMTo7fspt6qXv8CU49I+eU4QmXIXnZsENNc77vTfJzmu36/ZG2dE2B4Hqt+Uwh2DPExM4wTPxssueoPlOQ8EKytEMrNMLWrXwQLeuUGgeLW7lNlFLVkq4CtyJUtJ/8t8Mcz+1bGJqq6+dyiH4/g6UxA=="]' || E'\n"SYNC"\n');

-- a pusher's header raises an unsigned model's clock, never a signed one's
-- (there only verified updates move it)
SELECT scuttlebutt._push(m, format('{"id":"P","clock":{"Z1":%s}}',
		(extract(epoch FROM now()) * 1000)::bigint)) AS pushed
	FROM unnest(ARRAY['s_imp', 'u_kv']) m;
SELECT m, scuttlebutt.clock(m) ? 'Z1' AS raised FROM unnest(ARRAY['s_imp', 'u_kv']) m;

-- an unsigned model keeps signatures as sent, and checks none
SELECT scuttlebutt.apply_update('u_kv', '[["x",1],1700000000000,"+FTKiPRbMrss6uxyYbkYqe/ddHU=","AAAA"]');
SELECT doc FROM scuttlebutt.history('u_kv') h(doc);

-- distrusting a key: its source's updates are refused from then on
SELECT scuttlebutt.distrust_key('+FTKiPRbMrss6uxyYbkYqe/ddHU=');
SELECT pg_temp.err($$SELECT scuttlebutt.apply_update('s_imp', '[["w",1],1600000000000,"+FTKiPRbMrss6uxyYbkYqe/ddHU=","54morbFyLo/fFL20JtEwdPtAI2G+sBG9DaJ/1f3xBhttApYLXuhYR9UEudTVMDW1yoyAPBIHi6cJdMhJtAWsjy3t/fleN91ztp0AIOCGMCdQNzm+Fv5FyCW6fXUQHHNWBqD+zoqlFgyTOQ3VXiVwotxmlXgUqT529f7OesGHXK3qAcxBNiu7jTfUD6Y/0sZqm5PB2GH+kb/fHGAkITXe3mM477oSQdLYIz+BhGOH0P2PYlMvbmgwaB7X1HlCiJcypAKJKFo4+GSE2QQmdrmgP6AiAvJf9BoF1zdLlMSM4UOAW0/EECV1HLWlsV6s1xKDmrFt6/fYMMErDrbcqhimWg=="]')$$) AS distrusted;
SELECT scuttlebutt.trust_key(text) = '+FTKiPRbMrss6uxyYbkYqe/ddHU=' AS trusted_again FROM pem WHERE name = 'rsa';

-- with a signing key: the id is the key's, and local writes are signed
SELECT pg_temp.write_key('regress_rsa.pem', $pem$-----BEGIN RSA PRIVATE KEY-----
MIIEpQIBAAKCAQEA5/4svd21GDWKEDaPgI3NIy0jaUM5lKYjn9wUFTAFOynXtnBh
Z3v9SGYm9PrlCnZIQ+YeWGqpAmHQHQMK/dLAzEj1LAjA/emHcZceege52ZV/jX97
O93q6B3rTJaQUf6oURkvR6yUas0aV/4UG7MwWGwfrVHV6BP+I6LJxcMet7nWwcBT
uuH+iCcbRE2P9WQH+UarymWrYoT9j16PfaCjOS9uVSm7QkUDobeJY/4d2dPm4GDa
0ZQgS8llTOhvOHQDKq6x3HU7XRkUAVaZOV/SM5ZLwMxfTiqCkCt3WjErwBTPGyYt
8yjXx1I9UoSWTIVspkVvSKXenTMv2vPtJk5akwIDAQABAoIBAHNNeHZLZXDpVzvU
qkEF+UF080cjctBnPIh87PxU2By+IKjbtQWmcc3Ue6NBuamX/TXF/yoJpQN6kuGA
fCuIXmuKDVS76xOnyDoUFkEnat7yNymgBSNNmi2QhTyVDpi6HXTlNAMHCuMEGoZG
UT8tMaeY4auWY17L5QFYLLmeTzuXbwfDXV/6dbYeG4ZqQdyBpIZJyeiqyyi3wtDl
+9066ZpEziJI6NRYK+sHY8Dv01pWk5LQDnNTuNYk8p9G1L3vJy12qSw1bBfxErRc
8/J28+fmFm+VOb1QP8RRzP1XVzVk0tyy/2HXt++G0lJRwVgqQAINsVM7rxogjJQI
NDJOTe0CgYEA+mtvf+u0KZKO2n60VNhvNOkzdug+86ReRfezLRfJSd9RZ7SzwXhH
a1bL4ExvdRtFaKya4xeWQFMFiZ1pYBAwD+A0X3/Y8yLknttKKYG0Uaqop4XW9hl2
xf0no/0yPF76X1JP8/cD4vwv8OlU36vUFwywMevUE0mH/OmyAQIvE2UCgYEA7Sme
xZTC8FE5kN3iwt3FT24qSb4ZP4SA1Cf6MT1U7Hs5KAJERaVXnkOj7PaRHOmodwwR
D+UjbgD2z/oqMoG5zA9TTHzmaNdKC9RRSkKf7yAimXIlYNLSQwk/RYoZKVYnpnRK
YDjdfxff/nHSwFCl48Yf3lbVooW5WSRwh970opcCgYEA5h1ZrYQr31Pk39U04w6s
SkPNXgQW7Q7q7oKq7NIBz1deV90OncdoYbO1z1yNw2AXDRQnlGz1ThC8cvPqhDL7
52rQ1b0G4I385hl+8dtVlwIqzx5HJYjKwy9ZgPFHe4CPtI5QGFCyCqBRcaEItC0S
zUeElasvC7YzN26Mey7FkZ0CgYEA6WneFs3bslPu2TJYfLtx90QQoLVU+hu6A5Q4
/H9Fdt2sGkFo2jbp7hzaWF0v4wngwRICNOerIBgY0gZ/w2fD6h9nN09yIdtJyCy1
uOWrrNiu1ODwAsRbJpkSSamqK/HcYknv7ZXqAa0Iys9Rwe9d5bhYIybJagQ8sIxZ
qI/5q48CgYEA2libXnsXOTLzVHQIoiErMCfxG9FD+js927ZlTjhATtVOVM9WFTgN
QHK6ne6RNWeHs9u2cj7yHBHvsDOoF1VkFPE+jdmENjGvdiT74YfS+jgTPgbfgump
etEofiAaJJWJGxgzGUqi8GiNNkt3g+1yPvR5WutaGbGlsQPcT7ABXFc=
-----END RSA PRIVATE KEY-----
$pem$);
SELECT pg_temp.write_key('regress_ed25519.pem', $pem$-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIOtjggUM/HQzY16Mi1N6u07pRlxkMKsFwA+vmLCNcDt+
-----END PRIVATE KEY-----
$pem$);
ALTER SYSTEM SET scuttlebutt.signing_key_file = 'regress_rsa.pem';
\set key_file 'regress_rsa.pem'
\i :abs_srcdir/sql/wait_for_key_file.psql
SELECT scuttlebutt.node_id() AS node_id;
SELECT scuttlebutt.node_public_key() = text AS public_key_is_the_pem FROM pem WHERE name = 'rsa';
SELECT scuttlebutt._key_id(scuttlebutt.node_public_key()) = scuttlebutt.node_id() AS id_is_key_hash;
SELECT scuttlebutt.create_model('k_kv', 'model', true);
SELECT scuttlebutt.create_model('k_ev', 'events', true);
SELECT scuttlebutt.create_model('k_val', 'value', true);
SELECT signature_algorithm FROM scuttlebutt.models WHERE name = 'k_kv';
SELECT scuttlebutt.set('k_kv', 'a', '{"n":1}') > 0 AS set;
SELECT scuttlebutt.set_many('k_kv', '{"b":2,"c":[3]}');
SELECT scuttlebutt.delete('k_kv', 'c') > 0 AS deleted;
SELECT scuttlebutt.emit('k_ev', 'hello', '"world"') > 0 AS emitted;
SELECT scuttlebutt.set_value('k_val', '42') > 0 AS value_set;
-- each holds [change, ts, node, signature], and verifies as its node's update
SELECT json_array_length(doc) AS elements, doc->>2 = scuttlebutt.node_id() AS by_node, count(*)
	FROM scuttlebutt.updates u JOIN scuttlebutt.registry r ON r.id = u.model_id
	WHERE r.name IN ('k_kv', 'k_ev', 'k_val') GROUP BY 1, 2;
SELECT scuttlebutt.create_model('k_copy', 'model', true);
SELECT bool_and(scuttlebutt.apply_update('k_copy', doc)) AS all_verify
	FROM scuttlebutt.history('k_kv') h(doc);
SELECT scuttlebutt.to_json('k_copy');
-- one altered byte and it does not
SELECT regexp_replace(pg_temp.err(format('SELECT scuttlebutt.apply_update(%L, %L)', 'k_copy',
	replace(doc::text, '"n":1', '"n":2'))), ' at [0-9.]+ ', ' at <ts> ') AS altered
	FROM scuttlebutt.history('k_kv') h(doc) WHERE doc->0->>0 = 'a';
-- a model of the other algorithm refuses this node's writes
SELECT pg_temp.err($$SELECT scuttlebutt.set('s_ed', 'k', '1')$$) AS key_of_other_algorithm;
-- unsigned models are written as before
SELECT scuttlebutt.set('u_kv', 'plain', 'true') > 0 AS set;
SELECT json_array_length(doc) FROM scuttlebutt.history('u_kv') h(doc) WHERE doc->0->>0 = 'plain';

-- an Ed25519 key: its own id, and Ed25519 signatures
ALTER SYSTEM SET scuttlebutt.signing_key_file = 'regress_ed25519.pem';
\set key_file 'regress_ed25519.pem'
\i :abs_srcdir/sql/wait_for_key_file.psql
SELECT scuttlebutt.node_id() AS node_id;
SELECT scuttlebutt.create_model('k_ed', 'model', true);
SELECT signature_algorithm FROM scuttlebutt.models WHERE name = 'k_ed';
SELECT scuttlebutt.set('k_ed', 'a', '1') > 0 AS set;
SELECT scuttlebutt.set('s_ed', 'mine', '2') > 0 AS set;
SELECT scuttlebutt.create_model('k_ed_copy', 'model', true);
SELECT bool_and(scuttlebutt.apply_update('k_ed_copy', doc)) AS all_verify
	FROM scuttlebutt.history('k_ed') h(doc);
SELECT pg_temp.err($$SELECT scuttlebutt.set('k_kv', 'k', '1')$$) AS key_of_other_algorithm;

-- import() verifies each batch of 2,000 signed updates on scuttlebutt.verify_threads
-- threads while it stores the batch before: the verdicts are the same
-- as the backend's alone, and a refused line is named in whichever batch
-- it is, before any bad line after it.  Lines: 1 the header, then updates
-- (batches: lines 2-2001, 2002-4001, 4002-5001), then "SYNC".
SELECT scuttlebutt.create_model('k_big', 'model', true);
SELECT scuttlebutt.set_many('k_big', (SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 5000) i));
CREATE TEMP TABLE big AS SELECT array_agg(line ORDER BY n) AS lines
	FROM scuttlebutt.export('k_big') WITH ORDINALITY e(line, n);
-- the lines with line n's signature swapped for line m's, or line n replaced
CREATE FUNCTION pg_temp.forge(lines text[], n int, m int) RETURNS text[] LANGUAGE sql AS $$
	SELECT lines[1:n-1] || json_build_array(lines[n]::json->0, lines[n]::json->1,
		lines[n]::json->2, lines[m]::json->3)::text || lines[n+1:] $$;
CREATE FUNCTION pg_temp.swap(lines text[], n int, line text) RETURNS text[] LANGUAGE sql AS $$
	SELECT lines[1:n-1] || line || lines[n+1:] $$;
CREATE FUNCTION pg_temp.import_err(lines text[]) RETURNS text LANGUAGE sql AS $$
	SELECT regexp_replace(pg_temp.err(format('SELECT scuttlebutt.import(%L, %L)', 'k_big_copy',
		array_to_string(lines, E'\n'))), ' at [0-9.]+ ', ' at <ts> ') $$;
SELECT scuttlebutt.create_model('k_big_copy', 'model', true);
SHOW scuttlebutt.verify_threads;
SELECT pg_temp.import_err(pg_temp.forge(lines, 3000, 3001)) AS forged_in_batch_2 FROM big;
SELECT pg_temp.import_err(pg_temp.forge(lines, 5001, 2)) AS forged_last_line FROM big;
-- refused in batch 1 while batch 2 is being verified: the batch left
-- behind does not disturb the next import
SELECT pg_temp.import_err(pg_temp.forge(lines, 1000, 1001)) AS forged_in_batch_1 FROM big;
SELECT pg_temp.import_err(pg_temp.swap(pg_temp.forge(lines, 1500, 1501), 1800, '[1,2'))
	AS forged_before_bad_line FROM big;
SELECT pg_temp.import_err(pg_temp.swap(pg_temp.forge(lines, 1800, 1801), 1500, '[1,2'))
	AS bad_line_before_forged FROM big;
SELECT count(*) AS nothing_imported FROM scuttlebutt.history('k_big_copy');
SELECT scuttlebutt.import('k_big_copy', (SELECT array_to_string(lines, E'\n') FROM big));
SELECT (SELECT scuttlebutt.to_json('k_big_copy')::text) = (SELECT scuttlebutt.to_json('k_big')::text) AS same;
-- and the same verdicts with the backend verifying alone
SET scuttlebutt.verify_threads = 0;
SELECT pg_temp.import_err(pg_temp.forge(lines, 3000, 3001)) AS forged_in_batch_2 FROM big;
SELECT scuttlebutt.drop_model('k_big_copy');
SELECT scuttlebutt.create_model('k_big_copy', 'model', true);
SELECT scuttlebutt.import('k_big_copy', (SELECT array_to_string(lines, E'\n') FROM big));
RESET scuttlebutt.verify_threads;
DROP TABLE big;

-- a key file the server cannot use is refused, and the key in use kept
ALTER SYSTEM SET scuttlebutt.signing_key_file = 'no_such_key.pem';
ALTER SYSTEM SET scuttlebutt.signing_key_file = 'postgresql.conf';
SELECT pg_temp.write_key('regress_not_a_key.pem', 'not a key');
ALTER SYSTEM SET scuttlebutt.signing_key_file = 'regress_not_a_key.pem';
SHOW scuttlebutt.signing_key_file;
SELECT pg_temp.err($$SET scuttlebutt.signing_key_file = ''$$);

ALTER SYSTEM RESET scuttlebutt.signing_key_file;
\set key_file ''
\i :abs_srcdir/sql/wait_for_key_file.psql
SELECT scuttlebutt.node_id() = (SELECT id FROM scuttlebutt.node) AS random_id_again;
SELECT scuttlebutt.drop_model(name) FROM scuttlebutt.models
	WHERE name IN ('s_kv', 's_kv2', 's_ev', 's_val', 'u_kv', 's_ed', 's_imp',
				   'k_kv', 'k_ev', 'k_val', 'k_copy', 'k_ed', 'k_ed_copy', 'k_big', 'k_big_copy')
	ORDER BY name;
SELECT count(*) FROM (SELECT scuttlebutt.distrust_key(source) FROM scuttlebutt.keys) d;
