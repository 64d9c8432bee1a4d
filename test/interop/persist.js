'use strict';
// Persistence format against the reference (scuttlebutt 5.6.15, r-value):
//
// export: models written through the SQL API (local writes and updates
//   from other sources through apply_update) are exported with
//   scuttlebutt.export(); every line must be JSON.stringify's own text,
//   updates received must come out exactly as received, and the export
//   fed to a reference createWriteStream() must give the reference the
//   state the database holds.
//
// import: reference instances with varied data are dumped with their own
//   createReadStream(); scuttlebutt.import() must take the dump, the
//   database must then hold what the reference holds, and a second import
//   must apply nothing.

const h = require('./lib/harness');
const { lit } = h;

const db = new h.Db(process.argv[2]);
const R = h.rng(h.seedFromEnv(7));

// Values exercising the JSON text rules.
const VALUES = [
	0, -1, 1.5, 0.1, 1e-7, 0.000001, 1e20, 1e21, 123456789012345680000, 5e-324, 1.7976931348623157e308,
	9007199254740993, 'plain', '', 'quote " backslash \\ slash /', 'controls \u0001\u001f\n\t\b\f\r',
	'DEL \u007f U+2028 \u2028 é 中文 😀', true, false, null, [], {}, [1, [2, [3, []]]],
	{ b: 1, 10: 2, 1: 3, a: 4, 4294967295: 5, 4294967294: 6, '01': 7 },
	{ nested: { deeper: { list: [1e21, 1e-7, { '2': 'two', '1': 'one', z: null }] } }, 'ключ': 'значение' },
];
const KEYS = ['a', 'b', 'key with space', 'é', '😀', '10', '1', '0', '01', 'k"q', 'k\\b', 'line\nbreak', ''];

const PEERS = ['PEERA', 'PEERB'];

function fixedUpdateTexts(kind, base) {
	// JS-canonical update texts from two other sources, with properties a
	// jsonb round trip would lose (key insertion order, exponent
	// notation): the database must keep and re-send the text exactly.
	const t = [];
	let ts = base;
	for (let i = 0; i < 6; i++) {
		ts += 1 + (i % 2 ? 0.001 : 0.5);
		const src = PEERS[i % 2];
		const v = { zeta: i, alpha: [1e21, 1e-7, 'é\u2028'], 2: 'two', 1: { y: 1, x: 2 } };
		let change;
		if (kind === 'model') change = ['remote ' + KEYS[i % KEYS.length], v];
		else if (kind === 'events') change = ['remote ' + i, v];
		else change = v;
		t.push(JSON.stringify([change, ts, src]));
	}
	return t;
}

async function exportCase(kind) {
	const name = `export_${kind}`;
	const m = lit(name);
	db.exec(`SELECT scuttlebutt.create_model(${m}, ${lit(kind)});`);
	const nodeId = db.value('SELECT scuttlebutt.node_id()');

	// local writes through the SQL API
	const stmts = [];
	if (kind === 'model') {
		KEYS.forEach((k, i) => stmts.push(`SELECT scuttlebutt.set(${m}, ${lit(k)}, ${lit(JSON.stringify(VALUES[i % VALUES.length]))}::jsonb);`));
		VALUES.forEach((v, i) => stmts.push(`SELECT scuttlebutt.set(${m}, ${lit('v' + i)}, ${lit(JSON.stringify(v))}::jsonb);`));
		stmts.push(`SELECT scuttlebutt.set_many(${m}, '{"many 1": 1, "many 2": {"x": [1e21, 0.000001]}, "10": "ten", "é": null}');`);
		stmts.push(`SELECT scuttlebutt.set(${m}, 'a', '"overwritten"');`);
		stmts.push(`SELECT scuttlebutt.delete(${m}, 'b');`);
		stmts.push(`SELECT scuttlebutt.set(${m}, 'v3', 'null');`);
	} else if (kind === 'events') {
		VALUES.forEach((v, i) => stmts.push(`SELECT scuttlebutt.emit(${m}, ${lit(KEYS[i % KEYS.length] || 'ev')}, ${lit(JSON.stringify(v))}::jsonb);`));
	} else {
		VALUES.forEach((v) => stmts.push(`SELECT scuttlebutt.set_value(${m}, ${lit(JSON.stringify(v))}::jsonb);`));
	}
	db.exec(stmts.join('\n'));

	// updates from other sources, newer than the local ones
	const base = Number(JSON.parse(db.value(`SELECT scuttlebutt.clock(${m})::text`))[nodeId]);
	const remote = fixedUpdateTexts(kind, base + 1000);
	const applied = db.rows(remote.map((u) => `SELECT scuttlebutt.apply_update(${m}, ${lit(u)}::json) AS r`).join(' UNION ALL '));
	h.is(applied.map((r) => r.r).join(','), remote.map(() => true).join(','), `${kind}: apply_update accepts new updates from other sources`);

	const lines = db.rows(`SELECT e AS line FROM scuttlebutt.export(${m}) e`).map((r) => r.line);
	h.ok(lines.length >= 3, `${kind}: export has a header, updates and SYNC`, `${lines.length} lines`);

	// every line is JSON.stringify's own text
	const bad = lines.filter((l) => { try { return JSON.stringify(JSON.parse(l)) !== l; } catch (e) { return true; } });
	h.ok(bad.length === 0, `${kind}: every exported line re-serializes byte-identically with JSON.stringify`,
		bad.slice(0, 5).map((l) => `line ${l.slice(0, 300)}\n  JS: ${(() => { try { return JSON.stringify(JSON.parse(l)).slice(0, 300); } catch (e) { return e.message; } })()}`).join('\n'));

	const header = JSON.parse(lines[0]);
	h.is(header.id, nodeId, `${kind}: export header carries the node id`);
	h.same(header.clock, JSON.parse(db.value(`SELECT scuttlebutt.clock(${m})::text`)), `${kind}: export header carries the model's clock`);
	h.is(lines[lines.length - 1], '"SYNC"', `${kind}: export ends with "SYNC"`);
	const updates = lines.slice(1, -1);
	h.ok(updates.every((l) => Array.isArray(JSON.parse(l))), `${kind}: lines between header and SYNC are updates`, '');
	const v = h.perSourceOrderViolation(updates.map((l) => JSON.parse(l)));
	h.ok(v === null, `${kind}: exported updates are in increasing timestamp order per source`, v);

	// received updates are re-sent exactly as received (the ones still held)
	const held = new Set(updates);
	const expectHeld = kind === 'value' ? remote.slice(-1) : remote;
	const missing = expectHeld.filter((u) => !held.has(u));
	h.ok(missing.length === 0, `${kind}: updates received through apply_update are exported byte for byte`,
		`not found verbatim:\n${missing.join('\n')}\nexport:\n${updates.join('\n').slice(0, 3000)}`);

	// the reference loads the export, in odd-sized chunks
	const text = lines.join('\n') + '\n';
	const cuts = Array.from({ length: 20 }, () => R.int(text.length));
	const ref = h.newReference(kind, 'REFERENCE');
	const errors = await h.loadIntoReference(ref, text, cuts);
	h.is(errors.join('; '), '', `${kind}: the reference's createWriteStream() reads the export without error`);
	const refState = h.referenceState(kind, ref);
	const dbSt = h.dbState(db, kind, name);
	h.compareStates(`${kind}: export loaded into the reference`, kind, dbSt, refState);

	// the reference's clock: the newest held update per source, which the
	// database's clock must agree with
	const newest = {};
	for (const u of updates.map((l) => JSON.parse(l))) newest[u[2]] = Math.max(newest[u[2]] || 0, u[1]);
	h.same(refState.clock, newest, `${kind}: the reference's clock after loading is the newest update per source`);
	const disagree = Object.keys(newest).filter((s) => dbSt.clock[s] < newest[s]);
	h.ok(disagree.length === 0, `${kind}: the database clock covers every exported update`, disagree.join(','));

	// values written through SQL read back the same in JavaScript
	if (kind === 'model') {
		const bad2 = [];
		VALUES.forEach((val, i) => {
			const got = ref.get('v' + i);
			const exp = i === 3 ? null : val;
			if (h.canon(got === undefined ? null : got) !== h.canon(exp)) bad2.push(`v${i}: got ${JSON.stringify(got)}, expected ${JSON.stringify(exp)}`);
		});
		h.ok(bad2.length === 0, 'model: the reference reads every value set() wrote', bad2.join('\n'));
		h.is(ref.get('a'), 'overwritten', 'model: the reference sees the overwritten value');
		h.is(ref.get('b'), null, 'model: the reference sees the deleted key as null');
	} else if (kind === 'events') {
		const got = h.sortUpdates(ref.history({})).filter((u) => u[2] === nodeId).map((u) => u[0][1]);
		h.same(got, VALUES, 'events: the reference reads every emitted value, in order');
	}
}

// A reference instance with varied data: local updates plus updates
// from other sources through _update (how it applies remote updates).
function buildReference(kind) {
	const sb = h.newReference(kind, 'JSNODE');
	const remote = (change, ts, src) => sb._update([change, ts, src]);
	let t = 1795477184259;
	if (kind === 'model') {
		KEYS.forEach((k, i) => sb.set(k, VALUES[i % VALUES.length]));
		VALUES.forEach((v, i) => sb.set('v' + i, v));
		sb.set('a', { overwritten: true });
		sb.set('b', null);
		for (let i = 0; i < 8; i++) remote(['r' + (i % 5), { i, 'é': [1e21, 1e-7] }], t += 1.001, PEERS[i % 2]);
		remote(['a', 'older than the local write, ignored'], 1000, 'OLDPEER');
	} else if (kind === 'events') {
		VALUES.forEach((v, i) => sb.emit('ev' + (i % 3), v));
		sb.emit('emoji 😀', { '1': 1, b: 2, a: 3 });
		sb.emit('no data'); // the change is ["no data"]: one element
		for (let i = 0; i < 8; i++) remote(['remote', { i, text: 'U+2028 \u2028' }], t += 0.5, PEERS[i % 2]);
	} else {
		VALUES.forEach((v) => sb.set(v));
		remote({ from: 'peer', n: 1e21 }, Date.now() + 30000, 'PEERA'); // newest (within max_clock_skew): held
		remote({ from: 'peer', n: 2 }, 1000, 'PEERB'); // older: not held
	}
	return sb;
}

async function importCase(kind) {
	const name = `import_${kind}`;
	const m = lit(name);
	const orig = buildReference(kind);
	const dump = await h.dumpReference(orig);
	const dumpLines = dump.split('\n').filter((l) => l !== '');
	const updates = dumpLines.filter((l) => Array.isArray(JSON.parse(l)));

	// what the reference itself makes of its dump
	const reloaded = h.newReference(kind, 'RELOADED');
	h.is((await h.loadIntoReference(reloaded, dump)).join('; '), '', `${kind}: the reference reads its own dump`);
	const refState = h.referenceState(kind, reloaded);
	h.same(refState.history, h.referenceState(kind, orig).history, `${kind}: (oracle sanity) reloading the dump keeps the history`);

	db.exec(`SELECT scuttlebutt.create_model(${m}, ${lit(kind)});`);
	const n1 = db.value(`SELECT scuttlebutt.import(${m}, ${lit(dump)}) AS n`);
	h.is(Number(n1), updates.length, `${kind}: import applies every update of the reference's dump`);

	const st = h.dbState(db, kind, name);
	h.compareStates(`${kind}: reference dump imported`, kind, st, refState);
	h.same(st.clock, refState.clock, `${kind}: clock after import equals the reference's clock after reading the dump`);
	const held = new Set(st.history);
	const missing = updates.filter((u) => !held.has(u));
	h.ok(missing.length === 0, `${kind}: imported updates are held byte for byte`, missing.join('\n'));

	// the export of the imported model, read back by the reference
	const lines = db.rows(`SELECT e AS line FROM scuttlebutt.export(${m}) e`).map((r) => r.line);
	const again = h.newReference(kind, 'AGAIN');
	await h.loadIntoReference(again, lines.join('\n') + '\n');
	h.same(h.referenceState(kind, again).history, refState.history, `${kind}: export after import round-trips to the reference`);

	// importing again changes nothing
	const n2 = db.value(`SELECT scuttlebutt.import(${m}, ${lit(dump)}) AS n`);
	h.is(Number(n2), 0, `${kind}: importing the same dump again applies nothing`);
	h.same(h.normState(h.dbState(db, kind, name)), h.normState(st), `${kind}: state unchanged by the second import`);

	// the dump without its final newline is the same data (the reference
	// also parses a last unterminated line)
	const name2 = `import_${kind}_noeol`;
	db.exec(`SELECT scuttlebutt.create_model(${lit(name2)}, ${lit(kind)});`);
	const n3 = db.value(`SELECT scuttlebutt.import(${lit(name2)}, ${lit(dump.replace(/\n$/, ''))}) AS n`);
	h.is(Number(n3), updates.length, `${kind}: import of a dump without its final newline`);
}

h.main(async () => {
	for (const kind of ['model', 'events', 'value']) {
		await exportCase(kind);
		await importCase(kind);
	}
});
