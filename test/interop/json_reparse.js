'use strict';
// JsAppendReparsed (src/jscanon.c) against Node's JSON.stringify(JSON.parse(text)).
//
//     node test/interop/json_reparse.js <jscanon_cli> [N]
//
// A signature covers JSON.stringify of the update as JSON.parse read it,
// not the bytes a peer sent, so the database must compute those bytes from
// any layout of the same value.  This generates N (default 20000) random
// JSON texts in hostile layouts (seeded by SB_TEST_SEED when set), feeds
// them to test/fuzz/jscanon_cli (NUL-separated, so that texts may hold line
// feeds) and compares each output line byte for byte with what Node writes:
//   - whitespace (space, tab, CR, LF) anywhere between tokens;
//   - strings: raw characters or escapes of every kind (\uXXXX in either
//     case, surrogate pairs, "\/", short escapes), control characters,
//     DEL, U+2028, non-BMP characters;
//   - numbers in many spellings (1E2 1e+2 1.50 -0 0.0 1e-7 5e-324 ...,
//     beyond a double: 1e400 reads as Infinity and is written null);
//   - objects with repeated keys (also spelled differently: "a" and
//     "\u0061"), array-index keys in any order ("10", "2", "4294967294")
//     and keys that look like indexes but are not ("01", "4294967295",
//     "-0"), "__proto__", deep nesting, empty containers.
//
// Text that JSON.parse accepts but PostgreSQL's parser refuses is never
// generated at random: "\u0000" (PostgreSQL text cannot hold NUL) and
// escapes of lone surrogates (not Unicode).  Such text cannot be stored,
// and the wire parser refuses it before a signature is checked, so the
// fixed cases below expect INVALID for it; likewise for text neither
// accepts.  Exits 1 with the first mismatches, 0 when all agree.

const { spawnSync } = require('child_process');

const cli = process.argv[2];
const count = parseInt(process.argv[3] || '20000', 10);
if (!cli) {
	process.stderr.write('usage: json_reparse.js <jscanon_cli> [N]\n');
	process.exit(2);
}

// mulberry32: small, seedable, the same sequence on every platform
const { rng } = require('./lib/harness');
const seed = process.env.SB_TEST_SEED ? parseInt(process.env.SB_TEST_SEED, 10) : 20261206;
const R = rng(seed);
const int = (n) => Math.floor(R() * n);
const pick = (a) => a[int(a.length)];
const chance = (p) => R() < p;

// ---- layout ---------------------------------------------------------------

function ws() {
	if (chance(0.6)) return '';
	let s = '';
	for (let i = 1 + int(3); i > 0; i--) s += pick([' ', ' ', '\t', '\r', '\n']);
	return s;
}

// ---- strings --------------------------------------------------------------

const hex4 = (c) => {
	const h = c.toString(16).padStart(4, '0');
	return '\\u' + (chance(0.5) ? h : h.toUpperCase());
};

// one code point of a string literal, in a random spelling
function spellChar(cp) {
	const short = { 0x22: '\\"', 0x5c: '\\\\', 0x2f: '\\/', 0x08: '\\b', 0x0c: '\\f', 0x0a: '\\n', 0x0d: '\\r', 0x09: '\\t' };
	if (cp > 0xffff) {
		if (chance(0.5)) return String.fromCodePoint(cp);
		const hi = 0xd800 + ((cp - 0x10000) >> 10);
		const lo = 0xdc00 + ((cp - 0x10000) & 0x3ff);
		return hex4(hi) + hex4(lo);
	}
	const mustEscape = cp < 0x20 || cp === 0x22 || cp === 0x5c;
	if (short[cp] && (mustEscape || chance(0.5))) return short[cp];
	if (mustEscape || chance(0.2)) return hex4(cp);
	return String.fromCodePoint(cp);
}

const charPool = [
	() => 0x61 + int(26), () => 0x41 + int(26), () => 0x30 + int(10), () => 0x20,
	() => pick([0x22, 0x5c, 0x2f]),
	() => 1 + int(0x1f), // control characters (never U+0000)
	() => 0x7f, () => pick([0x2028, 0x2029, 0xfeff, 0xfffd, 0xffff]),
	() => 0x80 + int(0x780), () => 0x800 + int(0xd000), () => 0xe000 + int(0x2000),
	() => 0x10000 + int(0x100000), () => pick([0x1f600, 0x10ffff, 0x10000]),
];

function randomString() {
	const n = chance(0.2) ? 0 : int(12);
	let s = '';
	for (let i = 0; i < n; i++) s += String.fromCodePoint(pick(charPool)());
	return s;
}

// a string value as a literal: every code point spelled at random
function spellString(s) {
	let out = '"';
	for (const ch of s) out += spellChar(ch.codePointAt(0));
	return out + '"';
}

// ---- numbers --------------------------------------------------------------

const numberSpellings = [
	'0', '-0', '0.0', '-0.0', '0e0', '0E+5', '-0e-5', '1', '-1', '1.0', '1.50', '1E2', '1e2', '1e+2', '1e-2',
	'100', '100.000', '1e007', '1e-7', '1E-7', '1e-6', '0.000001', '0.0000001', '1e20', '1e21', '1e+21',
	'123456789012345680000', '123456789012345678901', '999999999999999999999', '1e23', '9007199254740993',
	'5e-324', '-5e-324', '2.4703282292062328e-324', '2.4703282292062327e-324', '1.7976931348623157e308',
	'-1.7976931348623157e308', '1.7976931348623158e308', '1e400', '-1e400', '1e-400', '4294967295',
	'4294967294', '1795477184259', '1795477184259.000', '0.1', '0.30000000000000004', '3.141592653589793238462643',
];

function digits(n) {
	let s = '';
	for (let i = 0; i < n; i++) s += String(int(10));
	return s;
}

function randomNumber() {
	switch (int(6)) {
		case 0:
			return pick(numberSpellings);
		case 1: {
			// an integer, up to 25 digits, no leading zero
			const n = 1 + int(25);
			return (chance(0.3) ? '-' : '') + (n === 1 ? String(int(10)) : String(1 + int(9)) + digits(n - 1));
		}
		case 2: {
			// a decimal, maybe with trailing zeros
			const ip = chance(0.4) ? '0' : String(1 + int(9)) + digits(int(8));
			return (chance(0.3) ? '-' : '') + ip + '.' + digits(1 + int(12)) + (chance(0.3) ? '000' : '');
		}
		case 3: {
			// exponent forms
			const mant = String(1 + int(9)) + (chance(0.5) ? '.' + digits(1 + int(17)) : '');
			const sign = pick(['', '+', '-']);
			const e = String(int(chance(0.9) ? 330 : 1000));
			return (chance(0.3) ? '-' : '') + mant + pick(['e', 'E']) + sign + (chance(0.2) ? '00' : '') + e;
		}
		case 4: {
			// a random double in JavaScript's own spellings
			const v = (R() - 0.5) * Math.pow(10, int(60) - 30);
			return pick([v.toString(), v.toExponential(int(20)), v.toPrecision(1 + int(21)), Math.fround(v).toString()]);
		}
		default: {
			// a double from random bits (subnormals, huge, anything finite)
			const b = new DataView(new ArrayBuffer(8));
			b.setUint32(0, int(4294967296));
			b.setUint32(4, int(4294967296));
			const v = b.getFloat64(0);
			return Number.isFinite(v) ? v.toString() : '2.5';
		}
	}
}

// ---- keys -----------------------------------------------------------------

const keyPool = [
	'0', '1', '2', '3', '10', '2', '01', '00', '-0', '-1', '1.0', '1e2', '4294967295', '4294967294', '4294967296',
	'4294967293', '9007199254740993', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'a', 'b', 'c',
	'A', '', ' ', 'key', 'é', '\u2028', '😀', 'a b', '"', '\\',
];

function randomKey() {
	if (chance(0.15)) return randomString();
	if (chance(0.1)) return String(int(chance(0.5) ? 30 : 4294967296));
	return pick(keyPool);
}

// ---- values ---------------------------------------------------------------

function value(depth) {
	const leaf = depth >= 20 || chance(depth === 0 ? 0.1 : 0.3 + depth * 0.1);
	if (!leaf) {
		if (chance(0.05)) return deep(depth);
		return chance(0.5) ? array(depth) : object(depth);
	}
	switch (int(8)) {
		case 0: return pick(['null', 'true', 'false']);
		case 1: case 2: case 3: return randomNumber();
		default: return spellString(randomString());
	}
}

function array(depth) {
	const n = chance(0.15) ? 0 : int(6);
	if (n === 0) return '[' + ws() + ']';
	const items = [];
	for (let i = 0; i < n; i++) items.push(ws() + value(depth + 1) + ws());
	return '[' + items.join(',') + ']';
}

function object(depth) {
	// now and then a large one (past the size where repeats are found by sorting)
	const n = chance(0.15) ? 0 : chance(0.05) ? 17 + int(40) : int(8);
	if (n === 0) return '{' + ws() + '}';
	const keys = [];
	const members = [];
	for (let i = 0; i < n; i++) {
		// repeat an earlier key now and then: same value, another spelling
		const k = keys.length > 0 && chance(0.25) ? pick(keys) : randomKey();
		keys.push(k);
		members.push(ws() + spellString(k) + ws() + ':' + ws() + value(depth + 1) + ws());
	}
	return '{' + members.join(',') + '}';
}

// a chain of about 20 levels, arrays and objects mixed
function deep(depth) {
	const levels = 10 + int(15);
	let open = '';
	let close = '';
	for (let i = 0; i < levels; i++) {
		if (chance(0.5)) {
			open += '[' + ws();
			close = ws() + ']' + close;
		} else {
			const k = randomKey();
			open += '{' + spellString(k) + ':' + ws();
			close = ws() + (chance(0.3) ? ',' + spellString(k) + ':' + randomNumber() : '') + '}' + close;
		}
	}
	return open + value(depth + levels + 20) + close;
}

// an update as a peer sends it: [change, ts, source(, signature)]
function update() {
	const change = chance(0.7)
		? '[' + ws() + spellString(randomString()) + ws() + ',' + ws() + value(2) + ws() + ']'
		: value(1);
	const parts = [change, randomNumber(), spellString(randomString())];
	if (chance(0.3)) parts.push(spellString('c2lnbmF0dXJl'));
	return '[' + parts.map((p) => ws() + p + ws()).join(',') + ']';
}

// ---- fixed cases ----------------------------------------------------------

// JSON.parse accepts these, PostgreSQL's parser refuses them (documented above)
const refusedByPostgres = [
	'"\\u0000"', '["a\\u0000b"]', '{"\\u0000":1}', '"\\ud800"', '"\\udc00"', '"\\ud800x"', '"\\ude00\\ud83d"',
	'["\\uD800\\u0041"]', '{"k":"\\udfff"}',
];
// neither accepts these
const invalid = [
	'', ' ', '[', ']', '{', '[1,]', '{"a":1,}', '[1 2]', '{"a" 1}', '{a:1}', "{'a':1}", "'a'", '01', '-01', '+1', '.5',
	'1.', '1.e5', '1e', '1e+', '-', '--1', '0x10', 'NaN', 'Infinity', '-Infinity', 'undefined', 'tru', 'nul',
	'truex', 'True', '"abc', '"a\tb"', '"a\nb"', '"\\x41"', '"\\u12"', '"\\u12G4"', '"\\a"', '[1]x', '1 2',
	'[1]]', '{"a":1}}', '/* c */1', '1 // c', '\ufeff1', '\u00a01', '[\u000b1]', '[\f1]', '"\u0001"',
	'[1,,2]', '[,1]', '{,}', '{"a"}', '{"a":}', '{:1}', '{1:1}', '{"a":1 "b":2}', '\u2028[1]',
];
// exact expectations, independent of this Node (a sanity check of the oracle too)
const known = [
	['{"b":1,"10":2,"1":3,"a":4,"4294967295":5,"4294967294":6,"01":7}',
		'{"1":3,"10":2,"4294967294":6,"b":1,"a":4,"4294967295":5,"01":7}'],
	['{"a":1,"b":2,"a":3}', '{"a":3,"b":2}'],
	['{"\\u0061":1,"b":2,"a":3,"2":4,"1":5,"2":6}', '{"1":5,"2":6,"a":3,"b":2}'],
	['[1E2,1e+2,1.50,-0,0.0,1e-7,123456789012345680000,5e-324,1.7976931348623157e308,1e21,1e400]',
		'[100,100,1.5,0,0,1e-7,123456789012345680000,5e-324,1.7976931348623157e+308,1e+21,null]'],
	['"\\u0041\\/\\ud83d\\ude00\\u001f\\u007f\\u2028"', '"A/😀\\u001f\u007f\u2028"'],
	[' \t\r\n[ \t\r\n{ \t\r\n"__proto__" \t\r\n: \t\r\n[ ] \t\r\n} \t\r\n] \t\r\n', '[{"__proto__":[]}]'],
];

// ---- run ------------------------------------------------------------------

const texts = [];
const expected = [];
const kinds = [];
for (const t of refusedByPostgres) {
	JSON.parse(t); // Node does accept it
	texts.push(t);
	expected.push('INVALID');
	kinds.push('refused by PostgreSQL');
}
for (const t of invalid) {
	let parsed = true;
	try {
		JSON.parse(t);
	} catch (e) {
		parsed = false;
	}
	if (parsed) throw new Error(`fixed invalid case is valid for JSON.parse: ${JSON.stringify(t)}`);
	texts.push(t);
	expected.push('INVALID');
	kinds.push('invalid');
}
for (const [t, e] of known) {
	const node = JSON.stringify(JSON.parse(t));
	if (node !== e) throw new Error(`Node writes ${node} for ${t}, not ${e}`);
	texts.push(t);
	expected.push(e);
	kinds.push('known');
}
for (let i = 0; i < count; i++) {
	const t = chance(0.5) ? update() : value(0);
	const text = ws() + t + ws();
	texts.push(text);
	expected.push(JSON.stringify(JSON.parse(text)));
	kinds.push('random');
}

// records end in NUL: a JSON text holds no raw NUL, except the invalid ones
for (const t of texts)
	if (t.includes('\0')) throw new Error('a text holds NUL');
const input = Buffer.concat(texts.map((t) => Buffer.from(t + '\0', 'utf8')));
const run = spawnSync(cli, ['-z'], { input, maxBuffer: 1 << 30 });
if (run.error) throw run.error;
if (run.status !== 0) {
	process.stderr.write(`${cli} exited with ${run.status} (${run.signal || 'no signal'})\n${run.stderr}\n`);
	process.exit(1);
}

const lines = [];
{
	const out = run.stdout;
	let start = 0;
	for (let i = 0; i < out.length; i++)
		if (out[i] === 0x0a) {
			lines.push(out.subarray(start, i));
			start = i + 1;
		}
	if (start !== out.length) lines.push(out.subarray(start));
}

let mismatches = 0;
const counts = {};
for (let i = 0; i < texts.length; i++) {
	const want = Buffer.from(expected[i], 'utf8');
	const got = lines[i];
	counts[kinds[i]] = (counts[kinds[i]] || 0) + 1;
	if (got !== undefined && got.equals(want)) continue;
	if (++mismatches <= 5)
		process.stdout.write(`MISMATCH (${kinds[i]}) #${i}\n  text:     ${JSON.stringify(texts[i])}\n` +
			`  expected: ${expected[i]}\n  got:      ${got === undefined ? '(no line)' : got.toString('utf8')}\n`);
}
if (lines.length !== texts.length)
	process.stdout.write(`${lines.length} output lines for ${texts.length} texts\n`);
const summary = Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(', ');
if (mismatches > 0 || lines.length !== texts.length) {
	process.stdout.write(`FAILED: ${mismatches} of ${texts.length} texts differ (seed ${seed}; ${summary})\n`);
	process.exit(1);
}
process.stdout.write(`compared ${texts.length} texts byte for byte, all equal (seed ${seed}; ${summary})\n`);
