'use strict';
// Plumbing for the live-replication interop checks (test/interop/stream_*.js):
// reference scuttlebutt instances connected to the replication worker over
// TCP, as a client of its listener or as a server it dials, with every byte
// the worker sends captured before the reference sees it.
//
// While a stream is open the node.js event loop must keep running (the
// reference answers the worker's header, sends its history and "SYNC"), so
// the SQL here goes through an asynchronous psql (AsyncDb); harness.js's
// Db blocks the loop and is only safe while no stream is open.
//
// Nothing here sleeps to wait for convergence: waits are on a condition,
// re-checked every few milliseconds on the node side or every 50 ms with a
// query, and give up after TIMEOUT_MS (PG_TEST_TIMEOUT_DEFAULT, as the TAP
// framework's own waits do).

const net = require('net');
const { spawn } = require('child_process');
const { StringDecoder } = require('string_decoder');
const { Pool, usable } = require('./psql_session');

const TIMEOUT_MS = (Number(process.env.PG_TEST_TIMEOUT_DEFAULT) || 180) * 1000;
const PSQL_ENV = Object.assign({}, process.env, { PGCLIENTENCODING: 'UTF8', PGOPTIONS: '' });

// ---------------------------------------------------------------------
// SQL without blocking the event loop
// ---------------------------------------------------------------------

class AsyncDb {
	constructor(connstr) {
		if (!connstr) throw new Error('usage: node <script> <connection string> ...');
		this.connstr = connstr;
	}

	// Runs SQL text; resolves with {ok, out, err, status}.  Through a
	// psql session kept open (lib/psql_session.js), or a psql of its own.
	async run(sql) {
		if (usable(sql)) {
			this.pool = this.pool || new Pool(this.connstr, PSQL_ENV);
			const r = await this.pool.run(sql);
			if (r) return r;
		}
		return this.runAlone(sql);
	}

	// Runs SQL text in a psql of its own
	runAlone(sql) {
		return new Promise((resolve, reject) => {
			const p = spawn(process.env.PSQL || 'psql',
				['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', this.connstr],
				{ env: PSQL_ENV });
			const out = [], err = [];
			p.stdout.on('data', (d) => out.push(d));
			p.stderr.on('data', (d) => err.push(d));
			p.on('error', reject);
			p.on('close', (status) => resolve({
				ok: status === 0, status,
				out: Buffer.concat(out).toString('utf8'),
				err: Buffer.concat(err).toString('utf8'),
			}));
			p.stdin.end(sql);
		});
	}

	async exec(sql) {
		const r = await this.run(sql);
		if (!r.ok) throw new Error(`SQL failed (psql exit ${r.status}): ${r.err}\n--- SQL (first 2000 chars):\n${sql.slice(0, 2000)}`);
		return r.out;
	}

	// Rows of a SELECT as objects (each row travels as row_to_json text).
	async rows(select) {
		const out = await this.exec(`SELECT row_to_json(q)::text FROM (${select}) q;\n`);
		return out.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
	}

	// First column of the first row (undefined when there is no row).
	async value(select) {
		const rows = await this.rows(select);
		if (rows.length === 0) return undefined;
		return rows[0][Object.keys(rows[0])[0]];
	}

	// Re-runs a one-value query every 50 ms until test(value) holds.
	// Resolves with {ok, value} (the last value seen).
	async poll(select, test, timeoutMs) {
		const deadline = Date.now() + (timeoutMs || TIMEOUT_MS);
		let v;
		for (;;) {
			v = await this.value(select);
			if (test(v)) return { ok: true, value: v };
			if (Date.now() >= deadline) return { ok: false, value: v };
			await delay(50);
		}
	}

	// scuttlebutt.wait_for_sync(model, timeout)
	async waitForSync(model, timeoutMs) {
		const s = Math.ceil((timeoutMs || TIMEOUT_MS) / 1000);
		return (await this.value(`SELECT scuttlebutt.wait_for_sync(${lit(model)}, '${s} s')`)) === true;
	}
}

function delay(ms) {
	return new Promise((resolve) => setTimeout(resolve, ms));
}

// Re-checks pred() every 5 ms until it holds; resolves true, or false at
// the timeout.  For conditions on node-side state (a reference instance,
// captured lines), which change only when the event loop runs.
function until(pred, timeoutMs) {
	const deadline = Date.now() + (timeoutMs || TIMEOUT_MS);
	return new Promise((resolve) => {
		const check = () => {
			let v = false;
			try { v = pred(); } catch (e) { v = false; }
			if (v) return resolve(true);
			if (Date.now() >= deadline) return resolve(false);
			setTimeout(check, 5);
		};
		check();
	});
}

// Resolves once the millisecond of timestamp ts is over.  The reference
// clock counts whole milliseconds, plus k/(k+1000) for the k-th repeat
// within one (monotonic-timestamp); ours counts microseconds.  So a
// reference write made after a database write, but in the same
// millisecond, can take the lower timestamp, and for a value or a key it
// is then the database's that stays.  A test that needs the later write
// to be the later update waits for this between the two.
function pastMillisecond(ts) {
	if (!Number.isFinite(ts)) throw new Error(`pastMillisecond: ${ts} is not a timestamp`);
	return until(() => Date.now() > ts);
}

function lit(s) {
	if (s === null || s === undefined) return 'NULL';
	return "'" + String(s).replace(/'/g, "''") + "'";
}

// ---------------------------------------------------------------------
// A reference stream on a socket, with the bytes received captured
// ---------------------------------------------------------------------

// Wires a socket to a reference stream the way `sock.pipe(s).pipe(sock)`
// does, except that the socket's bytes are (1) captured raw, before the
// reference sees them, and (2) decoded as UTF-8 across chunk boundaries
// (the reference's serializer turns each Buffer chunk into a string on
// its own, which would mangle a character split between two reads).
class Peer {
	constructor(sock, stream, label) {
		this.sock = sock;
		this.stream = stream;
		this.label = label;
		this.chunks = [];
		this.sent = [];
		this.errors = [];
		this.synced = false;
		this.closed = false;
		this.header = undefined;
		const dec = new StringDecoder('utf8');
		sock.on('data', (buf) => {
			this.chunks.push(buf);
			const s = dec.write(buf);
			if (s !== '') stream.write(s);
		});
		sock.on('end', () => {
			const s = dec.end();
			if (s !== '') stream.write(s);
			stream.end();
		});
		sock.on('error', (e) => this.errors.push(`socket: ${e.message}`));
		sock.on('close', () => { this.closed = true; });
		stream.on('error', (e) => this.errors.push(`stream: ${e && e.message ? e.message : String(e)}`));
		stream.on('synced', () => { this.synced = true; });
		stream.on('header', (hdr) => { this.header = hdr; });
		stream.on('data', (line) => this.sent.push(String(line)));
		stream.pipe(sock);
	}

	// Everything received so far, as text (strict UTF-8: a byte sequence
	// that is not UTF-8 throws).
	text() {
		return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(this.chunks));
	}

	bytes() {
		return this.chunks.reduce((n, b) => n + b.length, 0);
	}

	// The complete lines received so far (without their "\n").
	lines() {
		const parts = this.text().split('\n');
		parts.pop();
		return parts;
	}

	// Bytes after the last "\n" (a line still incomplete).
	partial() {
		const parts = this.text().split('\n');
		return parts[parts.length - 1];
	}

	// The received lines that parse to updates (arrays), as
	// {line, update}.
	updates() {
		const out = [];
		for (const line of this.lines()) {
			let v;
			try { v = JSON.parse(line); } catch (e) { continue; }
			if (Array.isArray(v)) out.push({ line, update: v });
		}
		return out;
	}

	// The update lines the reference wrote to the socket so far.
	sentUpdates() {
		return this.sent.join('').split('\n').filter((l) => l.startsWith('['));
	}

	// Ends our side and resolves once the other side has closed too, so
	// that every byte it sent before closing has been captured.
	finish(timeoutMs) {
		if (!this.closed) this.sock.end();
		return until(() => this.closed, timeoutMs);
	}

	// Resolves once the socket is closed (by the other side).
	waitClosed(timeoutMs) {
		return until(() => this.closed, timeoutMs);
	}
}

// A reference client of the worker's listener.  Resolves with the Peer
// once the TCP connection is up.
function connectClient(port, sb, streamOpts, label) {
	return new Promise((resolve, reject) => {
		const sock = net.connect({ port, host: '127.0.0.1' });
		let peer = null;
		sock.once('connect', () => {
			peer = new Peer(sock, sb.createStream(streamOpts || {}), label);
			resolve(peer);
		});
		sock.once('error', (e) => { if (!peer) reject(e); });
	});
}

// A reference server the worker dials:
//     net.createServer(s => s.pipe(sb.createStream(opts)).pipe(s))
// with every accepted connection kept as a Peer in server.peers.
function startServer(port, sb, streamOpts, label) {
	return new Promise((resolve, reject) => {
		const peers = [];
		const server = net.createServer((sock) => {
			peers.push(new Peer(sock, sb.createStream(Object.assign({}, streamOpts || {})), `${label}#${peers.length + 1}`));
		});
		server.peers = peers;
		server.once('error', reject);
		server.listen(port, '127.0.0.1', () => resolve(server));
	});
}

// ---------------------------------------------------------------------
// What the checks look at
// ---------------------------------------------------------------------

// Records every update a reference instance applies (the '_update' event
// fires for local and remote updates alike, with [change, ts, source]).
function recordUpdates(sb) {
	const seen = [];
	sb.on('_update', (u) => seen.push(u));
	return seen;
}

// Whether a reference instance has applied an update from `source` at
// timestamp `ts` (its clock has reached it).
function hasSeen(sb, source, ts) {
	return Object.prototype.hasOwnProperty.call(sb.sources, source) && sb.sources[source] >= ts;
}

// Lines that are not exactly what JSON.stringify writes for their value,
// as descriptions (empty when every line is).
// relayed: updates may come from elsewhere, relayed as they were received
// (their text may be signed), so only the header and "SYNC" lines must be
// canonical.
function nonCanonicalLines(lines, relayed) {
	const bad = [];
	lines.forEach((line, i) => {
		let v;
		try {
			v = JSON.parse(line);
		} catch (e) {
			bad.push(`line ${i + 1} is not JSON: ${JSON.stringify(line.slice(0, 200))}`);
			return;
		}
		if (relayed && Array.isArray(v)) return;
		const again = JSON.stringify(v);
		if (again !== line) bad.push(`line ${i + 1}: got ${JSON.stringify(line.slice(0, 200))}, JSON.stringify writes ${JSON.stringify(again.slice(0, 200))}`);
	});
	return bad;
}

// The structure of what a peer received: [header, ...history, "SYNC",
// ...live].  Returns {header, beforeSync (update lines), syncs (count),
// afterSync (update lines), other (lines that are none of these)}.
function streamShape(lines) {
	const shape = { header: undefined, headers: 0, beforeSync: [], afterSync: [], syncs: 0, other: [], firstIsHeader: false };
	lines.forEach((line, i) => {
		let v;
		try { v = JSON.parse(line); } catch (e) { shape.other.push(line); return; }
		if (Array.isArray(v)) (shape.syncs === 0 ? shape.beforeSync : shape.afterSync).push(line);
		else if (v && typeof v === 'object') {
			shape.headers++;
			if (i === 0) { shape.firstIsHeader = true; shape.header = v; }
		} else if (v === 'SYNC') shape.syncs++;
		else shape.other.push(line);
	});
	return shape;
}

// Lines present more than once.
function duplicates(lines) {
	const seen = new Set(), dup = [];
	for (const l of lines) {
		if (seen.has(l)) dup.push(l);
		seen.add(l);
	}
	return dup;
}

// Multiset equality of two lists of lines, as sorted text.
function sortedText(lines) {
	return lines.slice().sort().join('\n');
}


// ---------------------------------------------------------------------
// The three model kinds, written from SQL and from the reference
// ---------------------------------------------------------------------

// Values whose JSON text is easy to get wrong: index-like keys, number
// notation boundaries, escapes, non-ASCII, nesting.  (Nothing PostgreSQL
// cannot hold: no \u0000, no lone surrogates.)
const VALUES = [
	{ b: 1, 10: 2, 1: 3, a: 4, 4294967295: 5, 4294967294: 6, '01': 7 },
	[0.000001, 999000000000000000000, 9.99e-7, 1e21, 1e-7, 123456789012345680000, 0.1 + 0.2, -1.5e-300, 5e-324],
	'quote" backslash\\ nl\n tab\t ctl\u0001\u001f del\u007f seps\u2028\u2029 é 😀 / <>&',
	{ nested: { z: [{}, [], [null]], '': '', é: 'ü', 'a b': -0 } },
	1795477184259.001,
	null,
	true,
	[],
];

// Per kind: a write from SQL (returns the SQL text; its one value is the
// update's timestamp), the same write through the reference (returns the
// timestamp), and a "change" for an update made up for apply_update().
const KINDS = {
	model: {
		sql: (name, key, v) => `SELECT scuttlebutt.set(${lit(name)}, ${lit(key)}, ${lit(JSON.stringify(v))}::jsonb)`,
		js: (sb, key, v) => { sb.set(key, v); return sb.sources[sb.id]; },
		change: (key, v) => [key, v],
	},
	events: {
		sql: (name, key, v) => `SELECT scuttlebutt.emit(${lit(name)}, ${lit(key)}, ${lit(JSON.stringify(v))}::jsonb)`,
		js: (sb, key, v) => { sb.emit(key, v); return sb.sources[sb.id]; },
		change: (key, v) => [key, v],
	},
	value: {
		sql: (name, key, v) => `SELECT scuttlebutt.set_value(${lit(name)}, ${lit(JSON.stringify(v))}::jsonb)`,
		js: (sb, key, v) => { sb.set(v); return sb.sources[sb.id]; },
		change: (key, v) => v,
	},
};

// ---------------------------------------------------------------------
// Checks shared by the scripts (reported through harness.js)
// ---------------------------------------------------------------------

// What every stream the worker writes must look like: only complete
// lines, each exactly what JSON.stringify writes for its value, strict
// UTF-8, one header first, `syncs` "SYNC" lines, nothing but updates
// otherwise, per source in increasing timestamp order; and no socket or
// stream error on our side.
function checkRaw(label, peer, opts) {
	const h = require('./harness');
	const o = Object.assign({ syncs: 1 }, opts || {});
	let text;
	try {
		text = peer.text();
	} catch (e) {
		h.ok(false, `${label}: the bytes received are UTF-8`, e.message);
		return;
	}
	h.ok(true, `${label}: the bytes received are UTF-8`);
	h.is(peer.partial(), '', `${label}: every line received ends with "\\n"`);
	const lines = peer.lines();
	const bad = nonCanonicalLines(lines, o.relayed);
	h.ok(lines.length > 0 && bad.length === 0,
		o.relayed
			? `${label}: each of the ${lines.length} lines received is JSON, the header and "SYNC" exactly as JSON.stringify writes them`
			: `${label}: each of the ${lines.length} lines received is exactly JSON.stringify(JSON.parse(line))`,
		bad.slice(0, 5).join('\n') || (lines.length === 0 ? 'no line received' : ''));
	const shape = streamShape(lines);
	h.ok(shape.firstIsHeader && shape.headers === 1, `${label}: one header, the first line`,
		`first line: ${JSON.stringify((lines[0] || '').slice(0, 200))}, headers: ${shape.headers}`);
	h.ok(shape.header && typeof shape.header.id === 'string' && shape.header.clock && typeof shape.header.clock === 'object',
		`${label}: the header has an id and a clock`, JSON.stringify(shape.header));
	const allowed = [].concat(o.syncs);
	h.ok(allowed.includes(shape.syncs), `${label}: "SYNC" lines received: ${allowed.join(' or ')}`, `got ${shape.syncs}`);
	h.is(shape.other.length, 0, `${label}: no line other than header, updates and "SYNC"`);
	const all = shape.beforeSync.concat(shape.afterSync).map((l) => JSON.parse(l));
	const v = h.perSourceOrderViolation(all);
	h.ok(v === null, `${label}: updates arrive in increasing timestamp order per source`, v);
	h.is(peer.errors.join('; '), '', `${label}: no socket or stream error`);
	return shape;
}

// Updates among `lines` made by `source`.
function fromSource(lines, source) {
	return lines.filter((l) => {
		try { return JSON.parse(l)[2] === source; } catch (e) { return false; }
	});
}

// Queries on one model, for the checks.  db: harness.js's Db (blocking:
// only for reads that do not need the event loop), adb: an AsyncDb.
function modelQueries(db, adb) {
	const h = require('./harness');
	const q = {
		clock: (name) => JSON.parse(db.value(`SELECT scuttlebutt.clock(${lit(name)})::text`)),
		// history(model, clock) as wire lines
		history: (name, clock) => db.rows(`SELECT h::text AS line FROM scuttlebutt.history(${lit(name)}, ${lit(JSON.stringify(clock || {}))}::jsonb) h`)
			.map((r) => r.line),
		// true once the model's clock has reached ts for source
		pollSeen: async (name, source, ts) => (await adb.poll(`SELECT scuttlebutt.clock(${lit(name)})::text`,
			(v) => v !== undefined && (JSON.parse(v)[source] || 0) >= ts)).ok,
		rejected: async (name) => Number(await adb.value(
			`SELECT coalesce(sum(rejected), 0) FROM scuttlebutt.peer_status WHERE model = ${lit(name)}`)),
		// The database's state of a model against a reference instance's;
		// the clocks too, except for a value, which holds one update (the
		// clock entry of a superseded source is legitimately missing on a
		// side that never saw the superseded update).
		compare: (label, kind, name, sb) => {
			const dbst = h.dbState(db, kind, name);
			const ref = h.referenceState(kind, sb);
			h.compareStates(label, kind, dbst, ref);
			if (kind !== 'value')
				h.same(dbst.clock, ref.clock, `${label}: clock() equals the reference's clock`);
		},
	};
	return q;
}

module.exports = {
	modelQueries, checkRaw, fromSource, VALUES, KINDS, TIMEOUT_MS, AsyncDb, delay, until, pastMillisecond, lit, Peer, connectClient, startServer,
	recordUpdates, hasSeen, nonCanonicalLines, streamShape, duplicates, sortedText,
};
