'use strict';
// scuttlebutt.stringify(jsonb) against JavaScript's JSON.stringify.
//
// Every vector is a JSON text.  The server parses it into jsonb and returns
// both the jsonb's own text and scuttlebutt.stringify() of it.  The
// expected result is JSON.stringify(JSON.parse(<the jsonb's text>)): jsonb
// reorders object keys (by length, then bytes) and JSON.parse keeps that
// order for the non-index keys, so this is exactly what a JavaScript peer
// would write for the value the database holds.  Compared byte for byte.

const h = require('./lib/harness');

const db = new h.Db(process.argv[2]);
const seed = h.seedFromEnv(20240601);
const R = h.rng(seed);

const named = []; // {name, text, lenient?}
const add = (name, text, opts) => named.push(Object.assign({ name, text }, opts || {}));

// ---- numbers: notation boundaries, rounding, extremes ----------------
const numbers = [
	'0', '-0', '-0.0', '0.0000000000', '1', '-1', '1.0', '100', '1e2', '100.0000',
	'0.1', '0.2', '0.30000000000000004', '1.5', '-1.5', '12345678.9',
	'1e-7', '1E-7', '-1e-7', '1.2345e-7', '9.99e-7', '0.00000099', '0.0000001', '0.5e-6',
	'1e-6', '0.000001', '0.1e-5', '-0.000001', '0.0000012345', '0.000009999999999999999',
	'1e20', '-1e20', '100000000000000000000', '1e21', '1E+21', '1e+21', '-1e21',
	'999000000000000000000', '999999999999999999999', '999999999999999934463',
	'1000000000000000000000', '123456789012345680000', '123456789012345678901',
	'1.2345678901234567e21', '1e22', '1e100', '1e308', '1.7976931348623157e308', '-1.7976931348623157e308',
	'5e-324', '-5e-324', '4.9406564584124654e-324', '1e-323', '2.2250738585072014e-308',
	'2.225073858507201e-308', '1e-300', '123e-20',
	'9007199254740992', '9007199254740993', '-9007199254740992', '9007199254740991',
	'18446744073709551616', '4294967295', '4294967296', '2147483647', '-2147483648',
	'0.1000000000000000055511151231257827021181583404541015625',
	'3.14159265358979323846264338327950288',
	'1.00000000000000011102230246251565404236316680908203125',
	'1.00000000000000011102230246251565404236316680908203126',
	'2.4703282292062328e-324',
	'1795477184259', '1795477184259.001', '1795477184259.5',
	// the shortest digits lie exactly halfway between two doubles (round
	// half to even picks this double): 1e23 is the classic case
	'1e23', '2e23', '4e23', '5e22', '7e22', '8e23', '28788967360742390', '-29043091461062430',
];
for (const n of numbers) add(`number ${n}`, n);
add('numbers in an array', '[1e-7,1e21,-0,5e-324,0.1,1e20,999000000000000000000]');
add('numbers as object values', '{"small":1e-7,"big":1e+21,"x":123456789012345678901}');
// outside the range of a double: JavaScript reads Infinity / 0.  The
// database may write what JavaScript writes, or refuse with a data
// exception (SQLSTATE class 22); anything else is wrong.
for (const n of ['1e400', '-1e400', '1e-400', '2.4703282292062327e-324', '1' + '0'.repeat(400)])
	add(`out-of-range number ${n.length > 20 ? n.slice(0, 12) + '...(' + n.length + ' digits)' : n}`, n, { lenient: true });

// ---- strings -----------------------------------------------------------
for (let c = 1; c < 0x20; c++)
	add(`string with control U+${c.toString(16).padStart(4, '0')}`, JSON.stringify('a' + String.fromCharCode(c) + 'b'));
let allControls = '';
for (let c = 1; c < 0x20; c++) allControls += String.fromCharCode(c);
add('string with every control character', JSON.stringify(allControls));
add('string escaped as \\u00XX in upper-case hex', '"\\u001F\\u000B\\u0001"');
add('string with quote', JSON.stringify('say "hi"'));
add('string with backslash', JSON.stringify('C:\\dir\\'));
add('string with slash', JSON.stringify('a/b</script>'));
add('string with escaped slash', '"a\\/b"');
add('string with DEL', JSON.stringify('a\u007fb'));
add('string with escaped DEL', '"\\u007f"');
add('string with C1 controls', JSON.stringify('\u0080\u0085\u009f'));
add('string with U+2028 and U+2029', JSON.stringify('x\u2028y\u2029z'));
add('string with escaped U+2028', '"\\u2028"');
add('string with non-ASCII', JSON.stringify('héllo wörld ñ ß'));
add('string with CJK', JSON.stringify('中文テキスト한국어'));
add('string with emoji', JSON.stringify('emoji 😀👍🏽🇫🇷'));
add('string with escaped surrogate pair', '"\\ud83d\\ude00"');
add('string with BOM and U+FFFF', JSON.stringify('\ufeff\uffff'));
add('string with all short escapes', '"\\b\\f\\n\\r\\t\\"\\\\"');
add('empty string', '""');
add('long string', JSON.stringify('x'.repeat(10000) + '\n' + 'é'.repeat(1000)));

// ---- object keys: index-like keys first -----------------------------------
add('index-like keys (protocol example)', '{"b":1,"10":2,"1":3,"a":4,"4294967295":5,"4294967294":6,"01":7}');
add('index-like keys (edge cases)',
	'{"0":0,"-0":1,"00":2,"-1":3,"1.5":4,"1e3":5," 1":6,"1 ":7,"+1":8,"4294967296":9,"4294967295":10,' +
	'"4294967294":11,"9007199254740993":12,"2":13,"10":14,"":15,"a":16,"0x1":17,"١":18}');
add('index-like keys in nested objects', '{"x":{"3":1,"2":2,"b":3,"a":4},"1":[{"20":1,"3":2}]}');
add('keys needing escapes', JSON.stringify({ 'a\nb': 1, '\u0001': 2, '"': 3, '\\': 4, 'é': 5, '😀': 6, '\u2028': 7 }));
add('key __proto__', '{"__proto__":1,"a":2}');
add('duplicate keys', '{"a":1,"a":2,"b":3}');
add('many keys', JSON.stringify(Object.fromEntries(Array.from({ length: 200 }, (_, i) => [i % 3 ? 'k' + i : String(i * 7), i]))));

// ---- structure -----------------------------------------------------------
for (const t of ['[]', '{}', '[[]]', '[{}]', '{"a":[],"b":{}}', '[[],[[]],{}]', 'true', 'false', 'null', '[null]',
	'[true,false,null]', '{"a":null}'])
	add(`structure ${t}`, t);
add('nested arrays, depth 500', '['.repeat(500) + '1' + ']'.repeat(500));
add('nested objects, depth 500', '{"a":'.repeat(500) + '[]' + '}'.repeat(500));
add('alternating nesting, depth 300', '[{"1":'.repeat(150) + '"x"' + '}]'.repeat(150));
add('whitespace in input', ' { "a" : [ 1 , 2 ] ,\n\t"b" : { } } ');

// ---- random values -------------------------------------------------------
const charPool = ['a', 'b', 'z', '0', '9', ' ', '"', '\\', '/', '\n', '\t', '\u0001', '\u001f', '\u007f', 'é',
	'\u2028', '中', '😀', '\ufffd', '{', ':'];
function randString() {
	let s = '';
	const n = R.int(8);
	for (let i = 0; i < n; i++) s += R.pick(charPool);
	return s;
}
function randDouble() {
	switch (R.int(5)) {
		case 0: { // any finite double, from random bits
			const b = new DataView(new ArrayBuffer(8));
			for (;;) {
				b.setUint32(0, (R() * 4294967296) >>> 0);
				b.setUint32(4, (R() * 4294967296) >>> 0);
				const x = b.getFloat64(0);
				if (Number.isFinite(x)) return x;
			}
		}
		case 1: return (R() - 0.5) * Math.pow(10, R.int(40) - 20);
		case 2: return Math.round((R() - 0.5) * Math.pow(10, R.int(25)));
		case 3: return Number((R() * 1000).toFixed(R.int(6)));
		default: return Math.pow(10, R.int(60) - 30) * (1 + R.int(9));
	}
}
function randKey() {
	switch (R.int(4)) {
		case 0: return String(R.int(20));
		case 1: return R.pick(['4294967294', '4294967295', '01', '-1', '1.0', '']);
		default: return randString();
	}
}
function randValue(depth) {
	const t = depth > 4 ? R.int(4) : R.int(6);
	switch (t) {
		case 0: return randDouble();
		case 1: return randString();
		case 2: return R.pick([true, false, null]);
		case 3: return R.int(1000);
		case 4: return Array.from({ length: R.int(5) }, () => randValue(depth + 1));
		default: {
			const o = {};
			const n = R.int(6);
			for (let i = 0; i < n; i++) o[randKey()] = randValue(depth + 1);
			return o;
		}
	}
}
const randomValues = Array.from({ length: 400 }, () => JSON.stringify(randValue(0)));
const randomDoubles = Array.from({ length: 4000 }, () => JSON.stringify(randDouble()));

// Whether a value holds an object with two keys or more (whose order
// jsonb may change).
function hasMultiKeyObject(v) {
	if (Array.isArray(v)) return v.some(hasMultiKeyObject);
	if (v && typeof v === 'object') {
		const keys = Object.keys(v);
		return keys.length > 1 || keys.some((k) => hasMultiKeyObject(v[k]));
	}
	return false;
}

// ---------------------------------------------------------------------------

h.main(async () => {
	h.note(`random vectors use seed ${seed} (set SB_TEST_SEED to change)`);
	db.exec(`
CREATE OR REPLACE FUNCTION public.t_stringify_vector(t text, OUT jb text, OUT res text, OUT err text)
LANGUAGE plpgsql AS $f$
DECLARE v jsonb;
BEGIN
	BEGIN
		v := t::jsonb;
	EXCEPTION WHEN others THEN
		err := 'jsonb input: ' || SQLSTATE || ' ' || SQLERRM;
		RETURN;
	END;
	jb := v::text;
	BEGIN
		res := scuttlebutt.stringify(v);
	EXCEPTION WHEN others THEN
		err := SQLSTATE || ' ' || SQLERRM;
	END;
END
$f$;
`);
	const all = named.map((v) => v.text).concat(randomValues, randomDoubles);
	const values = all.map((t, i) => `(${i},${h.lit(t)})`).join(',\n');
	const rows = db.rows(`SELECT v.id, (public.t_stringify_vector(v.t)).* FROM (VALUES ${values}) v(id, t) ORDER BY v.id`);
	h.is(rows.length, all.length, 'one result per vector');

	const expectedFor = (row) => (row.jb === null ? undefined : JSON.stringify(JSON.parse(row.jb)));

	named.forEach((v, i) => {
		const row = rows[i];
		if (row.jb === null) {
			h.ok(false, `stringify: ${v.name}`, `jsonb could not hold the vector: ${row.err}`);
			return;
		}
		const expected = expectedFor(row);
		if (v.lenient) {
			const pass = row.res === expected || (row.res === null && /^22/.test(row.err || ''));
			h.ok(pass, `stringify: ${v.name} (JavaScript's text or a data exception)`,
				`input ${v.text.slice(0, 60)}; expected ${JSON.stringify(expected)} or an SQLSTATE 22xxx error; ` +
				`got ${row.res === null ? 'error ' + row.err : JSON.stringify(row.res)}`);
			return;
		}
		if (row.res === null) {
			h.ok(false, `stringify: ${v.name}`, `input ${v.text.slice(0, 200)}: error ${row.err}; expected ${expected.slice(0, 200)}`);
			return;
		}
		h.is(row.res, expected, `stringify: ${v.name}`);
		// when no object has two keys (so no reordering can happen), the
		// result must also equal JavaScript's text for the original input
		if (!hasMultiKeyObject(JSON.parse(v.text)))
			h.is(row.res, JSON.stringify(JSON.parse(v.text)), `stringify: ${v.name} (same as JSON.stringify of the input)`);
	});

	// random structures and random doubles: one check per group, listing
	// the first mismatches
	const group = (label, from, count, texts) => {
		const bad = [];
		for (let i = 0; i < count; i++) {
			const row = rows[from + i];
			const expected = expectedFor(row);
			if (row.res !== expected || row.res === null || row.res === undefined)
				bad.push(`input ${texts[i].slice(0, 120)}\n    expected ${String(expected).slice(0, 120)}\n    got      ${row.res === null ? 'error ' + row.err : String(row.res).slice(0, 120)}`);
		}
		h.ok(bad.length === 0, `stringify: ${count} ${label} match JSON.stringify (${bad.length} mismatches)`, bad.slice(0, 15).join('\n'));
	};
	group('random JSON values', named.length, randomValues.length, randomValues);
	group('random doubles', named.length + randomValues.length, randomDoubles.length, randomDoubles);

	// the result must be a fixed point: stringify(stringify(x)::jsonb) = stringify(x)
	const fixed = db.rows(`SELECT count(*) FILTER (WHERE scuttlebutt.stringify(scuttlebutt.stringify(v.t::jsonb)::jsonb) <> scuttlebutt.stringify(v.t::jsonb)) AS bad
		FROM (VALUES ${randomValues.map((t) => `(${h.lit(t)})`).join(',')}) v(t)`);
	h.is(fixed[0].bad, 0, 'stringify is idempotent on its own output');

	// STRICT: NULL in, NULL out
	h.is(db.value('SELECT scuttlebutt.stringify(NULL) IS NULL AS n'), true, 'stringify(NULL) is NULL');
});
