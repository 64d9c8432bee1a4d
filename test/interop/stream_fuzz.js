'use strict';
// The unmodified reference clients around the listener's mutation fuzz
// (test/t/136_listener_fuzz.pl).
//
//   node stream_fuzz.js <connstr> <port> record <name:kind>...
//       For each model: a reference instance holding three updates of its
//       own connects with createStream({meta: name}), syncs, writes one
//       update live and waits until the database holds it.  Prints every
//       line of that traffic as {"kind":"traffic","model":...,"dir":
//       "c2s"|"s2c","line":...}: the valid input the fuzz mutates.
//
//   node stream_fuzz.js <connstr> <port> sync <name:kind>...
//       After the fuzz: a fresh reference instance of each model syncs
//       from the listener and must hold exactly what the database holds
//       (history byte for byte, to_json / events / value), every line it
//       received being one valid line (canonical where this server wrote
//       it; others' updates are relayed as received); its clock agrees with
//       the database's for every source it holds.
//
// Output as harness.js describes (checks for ScuttlebuttTest::run_interop).

const h = require('./lib/harness');
const st = require('./lib/stream');

const [connstr, portArg, mode, ...specs] = process.argv.slice(2);
const port = Number(portArg);
const db = new h.Db(connstr);
const adb = new st.AsyncDb(connstr);
const Q = st.modelQueries(db, adb);
// bounded waits: a worker that dies must fail the checks, not hang them
const WAIT_MS = 30000;
const models = specs.map((s) => {
	const [name, kind] = s.split(':');
	return { name, kind };
});

function emitTraffic(model, dir, lines) {
	for (const line of lines)
		process.stdout.write(JSON.stringify({ kind: 'traffic', model, dir, line }) + '\n');
}

async function record({ name, kind }) {
	const K = st.KINDS[kind];
	const label = `record ${name}`;
	const sb = h.newReference(kind, `FZREC-${kind}`);
	for (let i = 0; i < 3; i++) K.js(sb, `f_rec${i}`, st.VALUES[i]);
	const peer = await st.connectClient(port, sb, { meta: name }, label);
	h.ok(await st.until(() => peer.synced, WAIT_MS), `${label}: the reference client syncs`, peer.errors.join('; '));
	const ts = K.js(sb, 'f_rec_live', st.VALUES[3]);
	h.ok(await Q.pollSeen(name, sb.id, ts), `${label}: the database gets the client's live update`);
	await peer.finish(WAIT_MS);
	emitTraffic(name, 'c2s', peer.sent.join('').split('\n').filter((l) => l !== ''));
	emitTraffic(name, 's2c', peer.lines());
}

// An exception the reference throws while applying what it received
// (e.g. on a name it cannot hold) fails that model's checks, not the
// script.
let thrown = null;
process.on('uncaughtException', (e) => { thrown = e; });

async function sync({ name, kind }) {
	const label = `sync ${name} (${kind})`;
	const sb = h.newReference(kind, `JS-after-fuzz-${kind}`);
	thrown = null;
	const peer = await st.connectClient(port, sb, { meta: name }, label);
	h.ok(await st.until(() => peer.synced || thrown, WAIT_MS) && !thrown, `${label}: the reference client syncs`,
		`errors: ${peer.errors.join('; ')}; received ${peer.bytes()} bytes; ${thrown ? thrown.stack : ''}`);
	if (thrown) {
		peer.sock.destroy();
		return;
	}
	h.ok(await adb.waitForSync(name, WAIT_MS), `${label}: wait_for_sync() is true`);
	await peer.finish(WAIT_MS);
	st.checkRaw(label, peer, { relayed: true });
	const dbst = h.dbState(db, kind, name);
	const ref = h.referenceState(kind, sb);
	// what the client received, decoded as psql's output is (a byte
	// sequence that is not UTF-8 fails checkRaw above)
	const received = new TextDecoder('utf-8').decode(Buffer.concat(peer.chunks)).split('\n').filter((l) => l.startsWith('['));
	sameSet(`${label}: the client received exactly history(), byte for byte`, dbst.history, received);
	if (kind === 'model')
		sameSet(`${label}: toJSON() equals to_json()`, entries(dbst.json), entries(ref.json));
	else if (kind === 'events')
		sameSet(`${label}: the client's events equal events()`, dbst.events.map((e) => h.canon(e)), ref.events.map((e) => h.canon(e)));
	else
		h.is(h.canon(ref.value), h.canon(dbst.value), `${label}: get() equals get_value()`);
	// a source's clock entry is that of its latest update, which the
	// client holds unless a newer update from another source superseded it
	const differ = Object.keys(ref.clock).filter((s) => !(ref.clock[s] <= dbst.clock[s]));
	h.ok(differ.length === 0, `${label}: the client's clock is within clock() for every source it holds`,
		differ.slice(0, 5).map((s) => `${JSON.stringify(s.slice(0, 80))}: client ${ref.clock[s]}, database ${dbst.clock[s]}`).join('\n'));
}

// [key, canonical value] texts of an object's own entries
function entries(obj) {
	return Object.keys(obj || {}).map((k) => h.canon([k, obj[k]]));
}

// Two lists hold the same texts (as multisets); the diagnostic shows a few
// of each side's extra texts, cut short.
function sameSet(name, dbList, refList) {
	const count = (list) => {
		const m = new Map();
		for (const x of list) m.set(x, (m.get(x) || 0) + 1);
		return m;
	};
	const a = count(dbList), b = count(refList);
	const only = (x, y) => [...x.keys()].filter((k) => (y.get(k) || 0) !== x.get(k));
	const onlyDb = only(a, b), onlyRef = only(b, a);
	const cut = (l) => l.slice(0, 3).map((t) => JSON.stringify(t.slice(0, 300))).join('\n    ');
	h.ok(onlyDb.length === 0 && onlyRef.length === 0, name,
		`${dbList.length} in the database, ${refList.length} in the client; ` +
		`only in the database (${onlyDb.length}):\n    ${cut(onlyDb)}\nonly in the client (${onlyRef.length}):\n    ${cut(onlyRef)}`);
}

h.main(async () => {
	for (const m of models) {
		if (mode === 'record') await record(m);
		else if (mode === 'sync') await sync(m);
		else throw new Error(`unknown mode ${mode}`);
	}
});
