'use strict';
// The worker dialing unmodified reference servers (scuttlebutt Model,
// ReliableEventEmitter, r-value):
//
//     net.createServer(s => s.pipe(sb.createStream()).pipe(s)).listen(port)
//     SELECT scuttlebutt.add_stream_peer(model, '127.0.0.1', port)
//
// For each kind:
// - one server: initial sync both ways (the worker's header names the
//   model in meta; before its "SYNC" it sends exactly history(model, the
//   server's clock)), live both ways, remove_peer() closes the connection;
// - relay: the worker dials two reference servers on one model; they
//   converge through it, live, and neither receives an update it sent;
// - mixed: a reference client of the listener and a reference server the
//   worker dials, on one model, converge through it;
// - every line the worker sends is exactly JSON.stringify(JSON.parse(line)).
//
// Usage: node stream_server.js <connstr> <listener port> <free port> <free port>

const h = require('./lib/harness');
const st = require('./lib/stream');
const { lit } = h;

const connstr = process.argv[2];
const listenPort = Number(process.argv[3]);
const port1 = Number(process.argv[4]);
const port2 = Number(process.argv[5]);
const db = new h.Db(connstr);
const adb = new st.AsyncDb(connstr);
const V = st.VALUES;
const Q = st.modelQueries(db, adb);

let nodeId;

async function addPeer(name, port) {
	return Number(await adb.value(`SELECT scuttlebutt.add_stream_peer(${lit(name)}, '127.0.0.1', ${port})`));
}

// remove_peer(), then the reference server sees the connection closed
async function removePeer(peerId, peer) {
	await adb.exec(`SELECT scuttlebutt.remove_peer(${peerId});`);
	return peer.waitClosed();
}

function closeServer(server) {
	return new Promise((resolve) => server.close(resolve));
}

// ---------------------------------------------------------------------
// One reference server
// ---------------------------------------------------------------------

async function oneServer(kind) {
	const K = st.KINDS[kind];
	const name = `dial_${kind}`;
	const label = `${kind} server`;
	db.exec(`SELECT scuttlebutt.create_model(${lit(name)}, ${lit(kind)});`);
	for (let i = 0; i < 3; i++) db.value(K.sql(name, `db${i}`, V[i]));
	db.exec(`SELECT scuttlebutt.apply_update(${lit(name)}, ${lit(JSON.stringify([K.change('third', V[3]), Date.now() - 60000, 'THIRD-NODE']))});`);
	const sb = h.newReference(kind, `JS-server-${kind}`);
	for (let i = 0; i < 3; i++) K.js(sb, `js${i}`, V[4 + i]);
	if (kind === 'model') {
		await st.pastMillisecond(Number(db.value(K.sql(name, 'shared1', 'from the database, loses'))));
		K.js(sb, 'shared1', 'from the server, wins');
		K.js(sb, 'shared2', 'from the server, loses');
		db.value(K.sql(name, 'shared2', 'from the database, wins'));
		db.value(K.sql(name, 'db-last', V[7]));
	}
	const clockBefore = Q.clock(name);
	const expectedInitial = Q.history(name, sb.sources);
	const applied = st.recordUpdates(sb);

	const server = await st.startServer(port1, sb, {}, label);
	const peerId = await addPeer(name, port1);
	h.ok(await st.until(() => server.peers.length > 0 && server.peers[0].synced),
		`${label}: the worker connects and the reference stream emits "synced"`);
	const peer = server.peers[0];
	h.ok(await adb.waitForSync(name), `${label}: wait_for_sync() is true`);

	let shape = st.streamShape(peer.lines());
	h.is(shape.header && shape.header.id, nodeId, `${label}: the header's id is node_id()`);
	h.is(shape.header && shape.header.meta, name, `${label}: the header's meta names the model`);
	h.same(shape.header && shape.header.clock, clockBefore, `${label}: the header's clock is the model's clock`);
	// The server sends its header as soon as it is connected, and its
	// history as soon as it has ours, so its updates can be applied here
	// before our history goes out: an update of ours they supersede need
	// not be sent.  What is sent is history(model, server's clock) less
	// such superseded updates.
	const heldNow = new Set(Q.history(name, {}));
	const sent = new Set(shape.beforeSync);
	h.is(shape.beforeSync.filter((l) => !expectedInitial.includes(l)).join('\n'), '',
		`${label}: before its "SYNC" the worker sends nothing but history(model, server's clock)`);
	h.is(expectedInitial.filter((l) => !sent.has(l) && heldNow.has(l)).join('\n'), '',
		`${label}: before its "SYNC" the worker sends all of history(model, server's clock) it still holds`);
	Q.compare(`${label}, after the initial sync`, kind, name, sb);
	const status = await adb.rows(`SELECT peer_id, direction, transport, state, remote_id FROM scuttlebutt.peer_status WHERE model = ${lit(name)}`);
	h.same(status, [{ peer_id: peerId, direction: 'out', transport: 'stream', state: 'live', remote_id: sb.id }],
		`${label}: peer_status shows one outgoing stream, live, to the server's id`);

	// live: database to server
	const expectedLive = [];
	for (const [i, v] of [[0, V[1]], [1, V[3]]]) {
		const ts = Number(await adb.value(K.sql(name, `live_db${i}`, v)));
		h.ok(await st.until(() => st.hasSeen(sb, nodeId, ts)), `${label}: live SQL write ${i + 1} reaches the server`);
		const got = applied.find((u) => u[2] === nodeId && u[1] === ts);
		h.same(got && got[0], JSON.parse(JSON.stringify(K.change(`live_db${i}`, v))),
			`${label}: live SQL write ${i + 1} arrives with its value`);
		expectedLive.push(...Q.history(name, clockBefore).filter((l) => {
			const u = JSON.parse(l);
			return u[2] === nodeId && u[1] === ts;
		}));
	}
	// live: server to database
	for (const [i, v] of [[0, V[2]], [1, V[0]]]) {
		const ts = K.js(sb, `live_js${i}`, v);
		h.ok(await Q.pollSeen(name, sb.id, ts), `${label}: live server write ${i + 1} reaches the table`);
	}
	h.ok(await adb.waitForSync(name), `${label}: wait_for_sync() is true after the live writes`);
	Q.compare(`${label}, after live writes`, kind, name, sb);
	h.is(await Q.rejected(name), 0, `${label}: nothing the reference sent (echoes included) counted as rejected`);

	h.ok(await removePeer(peerId, peer), `${label}: remove_peer() closes the connection`);
	await closeServer(server);
	h.is(server.peers.length, 1, `${label}: the worker connected once`);
	const gone = await adb.poll(`SELECT count(*) FROM scuttlebutt.peer_status WHERE model = ${lit(name)}`, (v) => Number(v) === 0);
	h.ok(gone.ok, `${label}: peer_status drops the removed peer`, `rows: ${gone.value}`);
	shape = st.checkRaw(label, peer) || st.streamShape(peer.lines());
	h.is(shape.afterSync.join('\n'), expectedLive.join('\n'),
		`${label}: after its "SYNC" the worker sends exactly the live SQL writes, in order, as stored`);
	h.is(st.fromSource(peer.lines(), sb.id).length, 0, `${label}: the server's own updates are never sent back`);
}

// ---------------------------------------------------------------------
// The worker dials two reference servers on one model
// ---------------------------------------------------------------------

async function twoServers(kind) {
	const K = st.KINDS[kind];
	const name = `dial_relay_${kind}`;
	const label = `${kind} relay between two servers`;
	db.exec(`SELECT scuttlebutt.create_model(${lit(name)}, ${lit(kind)});`);
	// the servers' writes come later (for a value: B's supersedes ours)
	await st.pastMillisecond(Number(db.value(K.sql(name, 'db', V[0]))));
	const A = h.newReference(kind, `JS-S1-${kind}`);
	const B = h.newReference(kind, `JS-S2-${kind}`);
	K.js(A, 'a0', V[1]);
	K.js(A, 'a1', V[2]);
	K.js(B, 'b0', V[3]);
	K.js(B, 'b1', V[4]);
	const sa = await st.startServer(port1, A, {}, `${label} S1`);
	const sbv = await st.startServer(port2, B, {}, `${label} S2`);
	const id1 = await addPeer(name, port1);
	const id2 = await addPeer(name, port2);
	h.ok(await st.until(() => sa.peers.length > 0 && sa.peers[0].synced && sbv.peers.length > 0 && sbv.peers[0].synced),
		`${label}: the worker connects to both, both synced`);
	const pa = sa.peers[0], pb = sbv.peers[0];
	h.ok(await adb.waitForSync(name), `${label}: wait_for_sync() is true`);
	// (a value keeps only its latest update: B's, written last)
	h.ok(await st.until(() => st.hasSeen(A, B.id, B.sources[B.id]) && (kind === 'value' || st.hasSeen(B, A.id, A.sources[A.id]))),
		`${label}: each server's history reaches the other through the worker`);

	const tsA = K.js(A, 'from_a', V[5]);
	h.ok(await st.until(() => st.hasSeen(B, A.id, tsA)), `${label}: a live write on S1 reaches S2`);
	const tsB = K.js(B, 'from_b', V[6]);
	h.ok(await st.until(() => st.hasSeen(A, B.id, tsB)), `${label}: a live write on S2 reaches S1`);
	h.ok(await Q.pollSeen(name, A.id, tsA) && await Q.pollSeen(name, B.id, tsB), `${label}: both live writes are in the table`);
	h.ok(await adb.waitForSync(name), `${label}: wait_for_sync() is true after the live writes`);
	Q.compare(`${label}, S1`, kind, name, A);
	Q.compare(`${label}, S2`, kind, name, B);
	h.is(await Q.rejected(name), 0, `${label}: nothing the servers sent (echoes included) counted as rejected`);
	const final = Q.history(name, {});

	h.ok(await removePeer(id1, pa) && await removePeer(id2, pb), `${label}: remove_peer() closes both connections`);
	await closeServer(sa);
	await closeServer(sbv);
	st.checkRaw(`${label} S1`, pa);
	st.checkRaw(`${label} S2`, pb);
	const updA = pa.updates().map((x) => x.line), updB = pb.updates().map((x) => x.line);
	h.is(st.fromSource(updA, A.id).length, 0, `${label}: S1 receives none of its own updates`);
	h.is(st.fromSource(updB, B.id).length, 0, `${label}: S2 receives none of its own updates`);
	h.is(st.duplicates(updA).length + st.duplicates(updB).length, 0, `${label}: no update is received twice`);
	if (kind !== 'value') {
		// distinct keys and every event kept: nothing is superseded, so
		// each server receives every update the others made, once
		h.is(st.sortedText(updA), st.sortedText(final.filter((l) => JSON.parse(l)[2] !== A.id)),
			`${label}: S1 receives exactly the updates of the others, byte for byte`);
		h.is(st.sortedText(updB), st.sortedText(final.filter((l) => JSON.parse(l)[2] !== B.id)),
			`${label}: S2 receives exactly the updates of the others, byte for byte`);
	}
}

// ---------------------------------------------------------------------
// A reference client of the listener and a reference server the worker
// dials, on one model
// ---------------------------------------------------------------------

async function mixed(kind) {
	const K = st.KINDS[kind];
	const name = `mixed_${kind}`;
	const label = `${kind} client and server`;
	db.exec(`SELECT scuttlebutt.create_model(${lit(name)}, ${lit(kind)});`);
	const C = h.newReference(kind, `JS-C-${kind}`);
	const S = h.newReference(kind, `JS-S-${kind}`);
	K.js(C, 'c0', V[0]);
	K.js(S, 's0', V[1]);
	const server = await st.startServer(port1, S, {}, `${label} S`);
	const peerId = await addPeer(name, port1);
	const pc = await st.connectClient(listenPort, C, { meta: name }, `${label} C`);
	h.ok(await st.until(() => pc.synced && server.peers.length > 0 && server.peers[0].synced),
		`${label}: both synced`);
	const ps = server.peers[0];
	// (a value keeps only its latest update: the server's, written last)
	h.ok(await st.until(() => st.hasSeen(C, S.id, S.sources[S.id]) && (kind === 'value' || st.hasSeen(S, C.id, C.sources[C.id]))),
		`${label}: the client's and the server's histories cross the worker`);
	const tsC = K.js(C, 'from_c', V[2]);
	h.ok(await st.until(() => st.hasSeen(S, C.id, tsC)), `${label}: a live write on the client reaches the server`);
	const tsS = K.js(S, 'from_s', V[3]);
	h.ok(await st.until(() => st.hasSeen(C, S.id, tsS)), `${label}: a live write on the server reaches the client`);
	h.ok(await Q.pollSeen(name, C.id, tsC) && await Q.pollSeen(name, S.id, tsS), `${label}: both live writes are in the table`);
	h.ok(await adb.waitForSync(name), `${label}: wait_for_sync() is true`);
	Q.compare(`${label}, client`, kind, name, C);
	Q.compare(`${label}, server`, kind, name, S);
	h.ok(await pc.finish() && await removePeer(peerId, ps), `${label}: both connections closed`);
	await closeServer(server);
	st.checkRaw(`${label} C`, pc);
	st.checkRaw(`${label} S`, ps);
	h.is(st.fromSource(pc.lines(), C.id).length + st.fromSource(ps.lines(), S.id).length, 0,
		`${label}: neither receives its own updates`);
}

// ---------------------------------------------------------------------
// The server closes the connection: the worker dials again and resumes
// ---------------------------------------------------------------------

async function reconnect(kind) {
	const K = st.KINDS[kind];
	const name = `reconnect_${kind}`;
	const label = `${kind} server that closes the connection`;
	db.exec(`SELECT scuttlebutt.create_model(${lit(name)}, ${lit(kind)});`);
	db.value(K.sql(name, 'db', V[0]));
	const sb = h.newReference(kind, `JS-reconnect-${kind}`);
	K.js(sb, 'js', V[1]);
	const server = await st.startServer(port1, sb, {}, label);
	const peerId = await addPeer(name, port1);
	h.ok(await st.until(() => server.peers.length > 0 && server.peers[0].synced), `${label}: first connection synced`);
	h.ok(await adb.waitForSync(name), `${label}: wait_for_sync() is true`);
	const first = server.peers[0];
	const clockAtClose = Object.assign({}, sb.sources);

	// the server ends the connection; both sides write while it is down
	h.ok(await first.finish(), `${label}: the worker closes its side when the server ends`);
	// (the SQL write last: for a value it is then the one that stays)
	const tsJs = K.js(sb, 'while_down_js', V[3]);
	const tsDb = Number(await adb.value(K.sql(name, 'while_down_db', V[2])));
	const dbLine = Q.history(name, clockAtClose).filter((l) => JSON.parse(l)[1] === tsDb);

	h.ok(await st.until(() => server.peers.length > 1 && server.peers[1].synced), `${label}: the worker dials again, synced`);
	const second = server.peers[1];
	h.ok(await st.until(() => st.hasSeen(sb, nodeId, tsDb)), `${label}: the SQL write made while down reaches the server`);
	h.ok(await Q.pollSeen(name, sb.id, tsJs), `${label}: the server's write made while down reaches the table`);
	h.ok(await adb.waitForSync(name), `${label}: wait_for_sync() is true again`);
	Q.compare(label, kind, name, sb);
	const status = await adb.rows(`SELECT peer_id, state FROM scuttlebutt.peer_status WHERE model = ${lit(name)}`);
	h.same(status, [{ peer_id: peerId, state: 'live' }], `${label}: peer_status shows the peer live again`);

	h.ok(await removePeer(peerId, second), `${label}: remove_peer() closes the connection`);
	await closeServer(server);
	h.is(server.peers.length, 2, `${label}: the worker connected twice`);
	st.checkRaw(`${label}, first connection`, first);
	st.checkRaw(`${label}, second connection`, second);
	// the second connection resumes: only what the server lacked
	const got = second.updates().map((x) => x.line);
	h.is(st.sortedText(got), st.sortedText(dbLine),
		`${label}: the second connection sends only what the server lacked (the write made while down)`);
}

h.main(async () => {
	if (!(listenPort > 0 && port1 > 0 && port2 > 0))
		throw new Error('usage: node stream_server.js <connstr> <listener port> <free port> <free port>');
	nodeId = db.value('SELECT scuttlebutt.node_id()');
	for (const kind of ['model', 'events', 'value']) {
		await oneServer(kind);
		await twoServers(kind);
		await mixed(kind);
		await reconnect(kind);
	}
});
