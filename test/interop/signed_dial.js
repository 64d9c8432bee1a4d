'use strict';
// Signed models on the connections the database dials (add_stream_peer):
// - a signed JavaScript Model server (RSA: the npm package's
//   scuttlebutt/security; Ed25519: lib/ed25519_security.js) that the
//   database dials receives the database's SQL writes verified, and its
//   own writes reach the table;
// - a raw TCP server the database also dials for the same model answers
//   with forged updates (another value's signature, "AAAA", no signature,
//   an untrusted source) and then a genuine update with a lower timestamp:
//   the forgeries are counted in that peer's peer_status.rejected and never
//   reach the JavaScript server, the genuine update does, verified.
//
// Usage: node signed_dial.js <connstr> <rsa|ed25519> <key dir>
// The key dir holds <name>.key and <name>.pub for S (the JavaScript
// server), C (the raw server's signer, trusted) and D (not trusted).

const crypto = require('crypto');
const fs = require('fs');
const net = require('net');
const h = require('./lib/harness');
const st = require('./lib/stream');
const { lit } = h;

const connstr = process.argv[2];
const alg = process.argv[3];
const keyDir = process.argv[4];
const db = new h.Db(connstr);
const adb = new st.AsyncDb(connstr);
const Q = st.modelQueries(db, adb);
const security = alg === 'rsa' ? require('scuttlebutt/security') : require('./lib/ed25519_security');

function readKey(name) {
	const PRIVATE = fs.readFileSync(`${keyDir}/${name}.key`, 'utf8');
	const PUBLIC = fs.readFileSync(`${keyDir}/${name}.pub`, 'utf8');
	return { name, PRIVATE, PUBLIC, sec: security({}, PRIVATE, PUBLIC) };
}

function signed(k, change, ts) {
	const u = [change, ts, k.sec.createId()];
	return u.concat([k.sec.sign(u)]);
}

// A free port on 127.0.0.1 (a listening server is what the database dials)
function listen(server) {
	return new Promise((resolve, reject) => {
		server.once('error', reject);
		server.listen(0, '127.0.0.1', () => resolve(server.address().port));
	});
}

h.main(async () => {
	if (!['rsa', 'ed25519'].includes(alg)) throw new Error('usage: node signed_dial.js <connstr> <rsa|ed25519> <key dir>');
	const label = `${alg} dialed`;
	const name = `signed_dial_${alg}`;
	const S = readKey('S'), C = readKey('C'), D = readKey('D');
	const nodeId = db.value('SELECT scuttlebutt.node_id()');
	const keys = {};
	keys[nodeId] = db.value('SELECT scuttlebutt.node_public_key()');
	for (const k of [S, C]) {
		keys[k.sec.createId()] = k.PUBLIC;
		db.exec(`SELECT scuttlebutt.trust_key(${lit(k.PUBLIC)});`);
	}
	const [cId, dId] = [C, D].map((k) => k.sec.createId());
	db.exec(`SELECT scuttlebutt.create_model(${lit(name)}, 'model', true);`);
	const ts0 = Number(db.value(`SELECT scuttlebutt.set(${lit(name)}, 'db0', '"sql"'::jsonb)`));

	// the signed JavaScript server
	const mS = new h.Model(security(keys, S.PRIVATE, S.PUBLIC));
	const unverified = [];
	mS.on('unverified_data', (u) => unverified.push(JSON.stringify(u)));
	mS.set('s0', { from: 'S' });
	const server = await st.startServer(0, mS, {}, `${label} S`);
	const sPort = server.address().port;
	const sPeer = Number(await adb.value(`SELECT scuttlebutt.add_stream_peer(${lit(name)}, '127.0.0.1', ${sPort})`));
	h.ok(await st.until(() => st.hasSeen(mS, nodeId, ts0)), `${label}: the database dials the signed JavaScript server; its SQL write reaches it`);
	h.ok(await Q.pollSeen(name, mS.id, mS.sources[mS.id]), `${label}: the server's signed write reaches the table`);
	const ts1 = Number(await adb.value(`SELECT scuttlebutt.set(${lit(name)}, 'db1', '[1.50]'::jsonb)`));
	h.ok(await st.until(() => st.hasSeen(mS, nodeId, ts1)), `${label}: a live SQL write reaches it`);
	h.same(mS.get('db1'), [1.5], `${label}: and it verified`);

	// the raw server answering with forgeries
	const base = Date.now() + 20000;
	const forged = [];
	{
		const g = signed(C, ['f_value', 'genuine'], base + 100);
		forged.push([['f_value', 'forged'], g[1], g[2], g[3]]);
		forged.push([['f_aaaa', 1], base + 101, cId, 'AAAA']);
		forged.push([['f_unsigned', 1], base + 102, cId]);
		forged.push(signed(D, ['f_unknown', 1], base + 103));
	}
	const genuine = signed(C, ['c_genuine', 'from C'], base);
	const rawSockets = [];
	const raw = net.createServer((sock) => {
		rawSockets.push(sock);
		sock.on('error', () => {});
		sock.write(JSON.stringify({ id: `RAW-SERVER-${alg}`, clock: {} }) + '\n');
		for (const u of forged) sock.write(JSON.stringify(u) + '\n');
		sock.write('"SYNC"\n');
		sock.write(JSON.stringify(genuine) + '\n');
	});
	const rPort = await listen(raw);
	const rawPeer = Number(await adb.value(`SELECT scuttlebutt.add_stream_peer(${lit(name)}, '127.0.0.1', ${rPort})`));
	h.ok(await Q.pollSeen(name, cId, base), `${label}: the genuine update the raw server sent after its forgeries is accepted`);
	const r = await adb.poll(`SELECT rejected FROM scuttlebutt.peer_status WHERE peer_id = ${rawPeer}`, (v) => Number(v) >= forged.length);
	h.is(Number(r.value), forged.length, `${label}: the raw server's peer row counts its ${forged.length} forgeries as rejected`);
	h.is(db.value(`SELECT count(*) FROM unnest(ARRAY['f_value','f_aaaa','f_unsigned','f_unknown']) k WHERE scuttlebutt.get(${lit(name)}, k) IS NOT NULL`), 0,
		`${label}: get() returns none of the forged values`);
	h.ok(!(dId in Q.clock(name)), `${label}: the untrusted source is not in the clock`);
	h.ok(await st.until(() => st.hasSeen(mS, cId, base)), `${label}: the genuine update reaches the JavaScript server`);
	h.is(mS.get('c_genuine'), 'from C', `${label}: which applied it (it verified)`);
	h.ok(await adb.waitForSync(name), `${label}: wait_for_sync() is true`);

	const got = server.peers.flatMap((p) => p.updates().map((x) => x.update));
	const bad = got.filter((u) => u[2] === dId || (u[2] === cId && u[1] !== base));
	h.is(bad.length, 0, `${label}: the JavaScript server received none of the forgeries`, bad.map((u) => JSON.stringify(u)).join('\n'));
	h.is(unverified.length, 0, `${label}: no 'unverified_data' on the JavaScript server`, unverified.join('\n'));
	h.same(mS.toJSON(), JSON.parse(db.value(`SELECT scuttlebutt.to_json(${lit(name)})::text`)), `${label}: the server and the database hold the same state`);

	await adb.exec(`SELECT scuttlebutt.remove_peer(${sPeer}); SELECT scuttlebutt.remove_peer(${rawPeer});`);
	for (const s of rawSockets) s.destroy();
	raw.close();
	for (const p of server.peers) p.sock.destroy();
	server.close();
});
