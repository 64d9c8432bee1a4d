'use strict';
// Shared plumbing for the interop checks.
//
// Each script in test/interop/ is started by a TAP test (test/t/*.pl) as
//     node test/interop/<script>.js '<libpq connection string>'
// talks to the server with psql (no node driver needed), uses the
// unmodified npm packages as the oracle, and prints one JSON object per
// line on stdout:
//     {"kind":"is","name":...,"got":...,"expected":...}
//     {"kind":"ok","name":...,"pass":true|false,"diag":...}
//     {"kind":"note","text":...}
//     {"kind":"done","checks":N}
// test/lib/ScuttlebuttTest.pm turns each into a TAP assertion, so prove
// counts them.  A script that dies before "done" fails its TAP test.

const { spawnSync } = require('child_process');
const { SyncPool, usable } = require('./psql_session');

// ---------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------

let checks = 0;

function emit(obj) {
	process.stdout.write(JSON.stringify(obj) + '\n');
}

// Strings compared byte for byte (the values are JS strings; both sides
// come from UTF-8 text, so code unit equality is byte equality).
function is(got, expected, name) {
	checks++;
	emit({ kind: 'is', name, got: got === undefined ? null : got, expected: expected === undefined ? null : expected });
	return got === expected;
}

function ok(pass, name, diag) {
	checks++;
	emit({ kind: 'ok', name, pass: !!pass, diag: diag === undefined ? '' : String(diag) });
	return !!pass;
}

// Structural equality of two JSON values, reported as canonical text
// (object keys sorted) so that a failure shows a readable diff.
function same(got, expected, name) {
	return is(canon(got), canon(expected), name);
}

function note(text) {
	emit({ kind: 'note', text: String(text) });
}

function done() {
	emit({ kind: 'done', checks });
}

// Runs an async main, reporting an unexpected exception as a failed check
// (and then still printing "done" so that the other checks count).
function main(fn) {
	Promise.resolve()
		.then(fn)
		.catch((err) => {
			ok(false, 'script ran to completion', err && err.stack ? err.stack : String(err));
		})
		.then(() => done());
}

// ---------------------------------------------------------------------
// JSON helpers
// ---------------------------------------------------------------------

// JSON text with object keys sorted (by JS code unit order), recursively.
function canon(v) {
	return JSON.stringify(sortKeys(v));
}

function sortKeys(v) {
	if (Array.isArray(v)) return v.map(sortKeys);
	if (v && typeof v === 'object') {
		const o = {};
		for (const k of Object.keys(v).sort()) {
			// keep "__proto__" an own property
			Object.defineProperty(o, k, { value: sortKeys(v[k]), enumerable: true, writable: true, configurable: true });
		}
		// index-like keys are reordered by the engine anyway; wrap in an
		// array of pairs so that the text shows the sorted order
		return { __sorted: Object.keys(o).sort().map((k) => [k, o[k]]) };
	}
	return v;
}

// Updates sorted the way the reference sorts history: timestamp, then source.
function sortUpdates(list) {
	return list.slice().sort((a, b) => a[1] - b[1] || (a[2] > b[2] ? 1 : a[2] < b[2] ? -1 : 0));
}

// Checks that, per source, updates appear in strictly increasing timestamp
// order; returns a description of the first violation, or null.
function perSourceOrderViolation(updates) {
	const last = {};
	for (const u of updates) {
		const src = u[2];
		if (Object.prototype.hasOwnProperty.call(last, src) && !(u[1] > last[src]))
			return `source ${JSON.stringify(src)}: ${u[1]} after ${last[src]}`;
		last[src] = u[1];
	}
	return null;
}

// ---------------------------------------------------------------------
// Seeded pseudo-random numbers (mulberry32), so failures can be replayed
// with SB_TEST_SEED=<seed>.
// ---------------------------------------------------------------------

function rng(seed) {
	let a = seed >>> 0;
	const next = () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
	next.int = (n) => Math.floor(next() * n);
	next.pick = (arr) => arr[next.int(arr.length)];
	return next;
}

function seedFromEnv(defaultSeed) {
	const s = process.env.SB_TEST_SEED;
	return s !== undefined && s !== '' ? Number(s) >>> 0 : defaultSeed;
}

// ---------------------------------------------------------------------
// Talking to the server through psql
// ---------------------------------------------------------------------

class Db {
	constructor(connstr) {
		if (!connstr) throw new Error('usage: node <script> <connection string>');
		this.connstr = connstr;
	}

	// Runs SQL text; returns {ok, out, err}.  Through a psql session kept
	// open (lib/psql_session.js), or a psql of its own.
	run(sql) {
		const env = Object.assign({}, process.env, { PGCLIENTENCODING: 'UTF8', PGOPTIONS: '' });
		if (usable(sql)) {
			this.pool = this.pool || new SyncPool(this.connstr, env);
			const s = this.pool.run(sql);
			if (s) return s;
		}
		const r = spawnSync(process.env.PSQL || 'psql',
			['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', this.connstr],
			{
				input: sql,
				encoding: 'utf8',
				maxBuffer: 1 << 30,
				env,
			});
		if (r.error) throw r.error;
		return { ok: r.status === 0, out: r.stdout, err: r.stderr, status: r.status };
	}

	// Runs SQL text and throws with psql's stderr if it fails.
	exec(sql) {
		const r = this.run(sql);
		if (!r.ok) throw new Error(`SQL failed (psql exit ${r.status}): ${r.err}\n--- SQL (first 2000 chars):\n${sql.slice(0, 2000)}`);
		return r.out;
	}

	// Rows of a SELECT as objects.  Each row travels as row_to_json text:
	// text columns come back exactly (PostgreSQL escapes every control
	// character, so a row is always one output line).  Cast json/jsonb
	// columns to text in the query to get their exact text.
	rows(select) {
		const out = this.exec(`SELECT row_to_json(q)::text FROM (${select}) q;\n`);
		return out.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
	}

	// Like rows(), but returns {ok, rows, err} instead of throwing.
	tryRows(select) {
		const r = this.run(`SELECT row_to_json(q)::text FROM (${select}) q;\n`);
		if (!r.ok) return { ok: false, rows: [], err: r.err };
		return { ok: true, rows: r.out.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l)), err: r.err };
	}

	// First column of the first row.
	value(select) {
		const rows = this.rows(select);
		if (rows.length === 0) return undefined;
		return rows[0][Object.keys(rows[0])[0]];
	}
}

// A SQL string literal (standard_conforming_strings is on).
function lit(s) {
	if (s === null || s === undefined) return 'NULL';
	s = String(s);
	if (s.indexOf('\u0000') >= 0) throw new Error('NUL cannot be sent in SQL text');
	return "'" + s.replace(/'/g, "''") + "'";
}

// ---------------------------------------------------------------------
// The reference implementation
// ---------------------------------------------------------------------

const Model = require('scuttlebutt/model');
const Events = require('scuttlebutt/events');
const Value = require('r-value');

function newReference(kind, id) {
	switch (kind) {
		case 'model': return new Model(id);
		case 'events': return new Events(id);
		case 'value': return new Value(id);
		default: throw new Error('unknown kind ' + kind);
	}
}

// Feeds persistence-format text to a reference instance through its own
// createWriteStream(), split into chunks at the given offsets (framing
// must not depend on chunk boundaries).  Resolves with the errors the
// stream emitted.
function loadIntoReference(sb, text, splitAt) {
	return new Promise((resolve) => {
		const errors = [];
		const ws = sb.createWriteStream();
		ws.on('error', (e) => errors.push(e && e.message ? e.message : String(e)));
		let pos = 0;
		for (const cut of (splitAt || []).slice().sort((a, b) => a - b)) {
			if (cut > pos && cut < text.length) {
				ws.write(text.slice(pos, cut));
				pos = cut;
			}
		}
		ws.write(text.slice(pos));
		ws.end();
		setImmediate(() => resolve(errors));
	});
}

// The reference's own persistence dump: createReadStream({tail: false}).
function dumpReference(sb) {
	return new Promise((resolve, reject) => {
		let text = '';
		const rs = sb.createReadStream({ tail: false });
		rs.on('data', (d) => { text += d; });
		rs.on('error', reject);
		rs.on('end', () => resolve(text));
	});
}

// The state of a reference instance as plain JSON, for comparisons.
function referenceState(kind, sb) {
	const history = sb.history({}).map((u) => JSON.stringify(u.slice(0, 3)));
	const clock = Object.assign({}, sb.sources);
	const st = { history, clock };
	if (kind === 'model') {
		st.json = sb.toJSON();
		st.keys = sb.keys().slice().sort(cmpBytes);
	} else if (kind === 'events') {
		st.events = sortUpdates(sb.history({})).map((u) => [u[0][0], u[0][1] === undefined ? null : u[0][1], u[1], u[2]]);
	} else {
		st.value = sb.get();
	}
	return st;
}

// The state of a model in the database, in the same shape.
function dbState(db, kind, name) {
	const m = lit(name);
	const history = db.rows(`SELECT h::text AS line FROM scuttlebutt.history(${m}) h`).map((r) => r.line);
	const clock = JSON.parse(db.value(`SELECT scuttlebutt.clock(${m})::text`));
	const st = { history, clock };
	if (kind === 'model') {
		st.json = JSON.parse(db.value(`SELECT scuttlebutt.to_json(${m})::text`));
		st.keys = db.rows(`SELECT k FROM scuttlebutt.keys(${m}) k`).map((r) => r.k).sort(cmpBytes);
	} else if (kind === 'events') {
		st.events = db.rows(`SELECT event, data::text AS data, ts, source FROM scuttlebutt.events(${m})`)
			.map((r) => [r.event, r.data === null ? null : JSON.parse(r.data), r.ts, r.source]);
	} else {
		const v = db.value(`SELECT scuttlebutt.get_value(${m})::text`);
		st.value = v === null || v === undefined ? null : JSON.parse(v);
	}
	return st;
}

// A state with its history in the reference's order (timestamp, source):
// history() only promises increasing timestamps per source.
function normState(st) {
	const o = Object.assign({}, st);
	o.history = sortUpdates(st.history.map((l) => [l, ...JSON.parse(l).slice(1, 3)])).map((x) => x[0]);
	return o;
}

// Compares a database model with a reference instance holding the same
// data.  `label` prefixes the check names.
function compareStates(label, kind, db, ref) {
	// history: the same updates, byte for byte (compared after the
	// reference's sort, since only the order per source is specified)
	const byRefOrder = (lines) => sortUpdates(lines.map((l) => [l, ...JSON.parse(l).slice(1, 3)])).map((x) => x[0]).join('\n');
	const dbLines = db.history;
	is(byRefOrder(dbLines), byRefOrder(ref.history), `${label}: history holds the same updates, byte for byte`);
	const v = perSourceOrderViolation(dbLines.map((l) => JSON.parse(l)));
	ok(v === null, `${label}: history is in increasing timestamp order per source`, v);
	if (kind === 'model') {
		same(db.json, ref.json, `${label}: to_json() equals the reference's toJSON()`);
		is(JSON.stringify(db.keys), JSON.stringify(ref.keys), `${label}: keys() equals the reference's keys()`);
	} else if (kind === 'events') {
		same(db.events, ref.events, `${label}: events() equals the reference's history`);
	} else {
		same(db.value, ref.value, `${label}: get_value() equals the reference's get()`);
	}
}

// Byte order of UTF-8 (what COLLATE "C" sorts by): compare by code point.
function cmpBytes(a, b) {
	const A = Array.from(a), B = Array.from(b);
	for (let i = 0; i < Math.min(A.length, B.length); i++) {
		const x = A[i].codePointAt(0), y = B[i].codePointAt(0);
		if (x !== y) return x - y;
	}
	return A.length - B.length;
}

module.exports = {
	is, ok, same, note, done, main, canon, sortUpdates, perSourceOrderViolation,
	rng, seedFromEnv, Db, lit, Model, Events, Value, newReference,
	loadIntoReference, dumpReference, referenceState, dbState, normState, compareStates, cmpBytes,
};
