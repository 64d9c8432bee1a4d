'use strict';
// Unmodified reference clients over TLS: the listener has
// scuttlebutt.ssl = on, and a client dials it with Node's tls.connect
// instead of net.connect, piping createStream() exactly as before:
//
//     sock = tls.connect({port, ca, servername}); sock.pipe(sb.createStream({meta: name})).pipe(sock)
//
// - a client that verifies the server against the test CA syncs both ways,
//   live both ways, and peer_status shows its connection with tls = true;
// - a client presenting a certificate of the CA the listener trusts syncs;
// - a client presenting a certificate of another CA is refused;
// - a client trusting another CA refuses the server itself;
// - a plain TCP client gets no scuttlebutt line: the worker closes it.
//
// Usage: node stream_tls.js <connstr> <listener port> <dir holding ca.crt,
//        other-ca.crt, alice.crt/.key, mallory.crt/.key>

const fs = require('fs');
const net = require('net');
const path = require('path');
const tls = require('tls');
const h = require('./lib/harness');
const st = require('./lib/stream');
const { lit } = h;

const connstr = process.argv[2];
const port = Number(process.argv[3]);
const dir = process.argv[4];
const db = new h.Db(connstr);
const adb = new st.AsyncDb(connstr);
const Q = st.modelQueries(db, adb);
const V = st.VALUES;
const file = (name) => fs.readFileSync(path.join(dir, name));

// tls.connect, resolved once the handshake is done (rejected if it fails)
function tlsConnect(opts) {
	return new Promise((resolve, reject) => {
		const sock = tls.connect(Object.assign({ port, host: '127.0.0.1', servername: 'localhost' }, opts));
		sock.once('secureConnect', () => resolve(sock));
		sock.once('error', reject);
	});
}

async function tlsRow(sb) {
	return adb.value(`SELECT tls::text FROM scuttlebutt.peer_status WHERE direction = 'in' AND remote_id = ${lit(sb.id)}`);
}

// The reference, piped as its README shows, over TLS
async function plainPipe() {
	const name = 'tls_pipe';
	const label = 'client verifying the server';
	db.exec(`SELECT scuttlebutt.create_model(${lit(name)});`);
	for (let i = 0; i < 3; i++) db.value(st.KINDS.model.sql(name, `db${i}`, V[i]));
	const sb = h.newReference('model', 'JS-tls-pipe');
	for (let i = 0; i < 3; i++) sb.set(`js${i}`, V[3 + i]);

	const sock = await tlsConnect({ ca: file('ca.crt') });
	h.ok(sock.authorized, `${label}: the server's certificate verifies against the test CA`);
	const stream = sb.createStream({ meta: name });
	let synced = false;
	stream.on('synced', () => { synced = true; });
	sock.pipe(stream).pipe(sock);
	h.ok(await st.until(() => synced), `${label}: the reference stream emits "synced"`);
	h.ok(await adb.waitForSync(name), `${label}: wait_for_sync() is true`);
	Q.compare(label, 'model', name, sb);
	h.is(await tlsRow(sb), 'true', `${label}: peer_status shows the connection with tls = true`);

	const before = Q.clock(name);
	await adb.exec(st.KINDS.model.sql(name, 'live_db', V[6]));
	const made = Q.history(name, before);
	h.ok(await st.until(() => made.every((l) => st.hasSeen(sb, JSON.parse(l)[2], JSON.parse(l)[1]))),
		`${label}: a live SQL write reaches the client`);
	sb.set('live_js', V[7]);
	const ts = sb.sources[sb.id];
	h.ok(await Q.pollSeen(name, sb.id, ts), `${label}: a live client write reaches the table`);
	h.ok(await adb.waitForSync(name), `${label}: wait_for_sync() is true after the live writes`);
	Q.compare(`${label}, after live writes`, 'model', name, sb);
	let closed = false;
	sock.on('close', () => { closed = true; });
	sock.end();
	h.ok(await st.until(() => closed), `${label}: the worker closes its side when the client ends`);
}

// A client certificate of the CA scuttlebutt.ssl_ca_file names
async function clientCertificate() {
	const name = 'tls_cert';
	const label = 'client presenting a certificate';
	db.exec(`SELECT scuttlebutt.create_model(${lit(name)});`);
	db.value(st.KINDS.model.sql(name, 'db', V[0]));
	const sb = h.newReference('model', 'JS-tls-cert');
	sb.set('js', V[1]);
	const sock = await tlsConnect({ ca: file('ca.crt'), cert: file('alice.crt'), key: file('alice.key') });
	const peer = new st.Peer(sock, sb.createStream({ meta: name }), label);
	h.ok(await st.until(() => peer.synced), `${label}: synced`);
	h.ok(await adb.waitForSync(name), `${label}: wait_for_sync() is true`);
	Q.compare(label, 'model', name, sb);
	h.is(await tlsRow(sb), 'true', `${label}: tls = true`);
	h.ok(await peer.finish(), `${label}: closed`);
	st.checkRaw(label, peer);
}

// Megabytes each way over TLS: the worker's reads stop at a budget per
// turn of its loop, and what TLS has decrypted but not handed out must not
// wait for the socket to become readable again
async function bulk() {
	const name = 'tls_bulk';
	const label = 'megabytes each way over TLS';
	const KEYS = 8000;
	db.exec(`SELECT scuttlebutt.create_model(${lit(name)});`);
	db.exec(`SELECT scuttlebutt.set_many(${lit(name)}, (SELECT jsonb_object_agg('db' || i, repeat('d', 300) || i) FROM generate_series(1, ${KEYS}) i));`);
	const sb = h.newReference('model', 'JS-tls-bulk');
	for (let i = 0; i < KEYS; i++) sb.set(`js${i}`, 'j'.repeat(300) + i);
	const sock = await tlsConnect({ ca: file('ca.crt') });
	const peer = new st.Peer(sock, sb.createStream({ meta: name }), label);
	h.ok(await st.until(() => peer.synced), `${label}: synced`);
	h.ok(await Q.pollSeen(name, sb.id, sb.sources[sb.id]), `${label}: the client's ${KEYS} updates reach the table`);
	h.ok(await adb.waitForSync(name), `${label}: wait_for_sync() is true`);
	Q.compare(label, 'model', name, sb);
	h.is(Number(await adb.value(`SELECT count(*) FROM scuttlebutt.history(${lit(name)})`)), 2 * KEYS, `${label}: the table holds both sides' updates`);
	h.ok(await peer.finish(), `${label}: closed`);
	st.checkRaw(label, peer);
}

// A client certificate of another CA: the worker's handshake fails
async function untrustedClientCertificate() {
	const name = 'tls_cert';
	const label = 'client presenting a certificate of another CA';
	const sb = h.newReference('model', 'JS-tls-mallory');
	let sock;
	try {
		sock = await tlsConnect({ ca: file('ca.crt'), cert: file('mallory.crt'), key: file('mallory.key') });
	} catch (e) {
		h.ok(true, `${label}: refused during the handshake (${e.code || e.message})`);
		return;
	}
	// TLS 1.3: the client's handshake ends before the server has checked
	// its certificate; the server's alert then ends the connection
	const peer = new st.Peer(sock, sb.createStream({ meta: name }), label);
	h.ok(await peer.waitClosed(), `${label}: the worker closes the connection`);
	h.ok(!peer.synced && peer.lines().length === 0, `${label}: and sends no scuttlebutt line`, peer.lines().join('\n'));
}

// The client trusts another CA: Node refuses the server
async function wrongCa() {
	const label = 'client trusting another CA';
	let err = null;
	try {
		const sock = await tlsConnect({ ca: file('other-ca.crt') });
		sock.destroy();
	} catch (e) {
		err = e;
	}
	h.ok(err !== null, `${label}: the handshake fails`, err ? '' : 'it succeeded');
}

// A plain TCP client on the TLS listener: it is closed, never answered
async function plainClient() {
	const name = 'tls_pipe';
	const label = 'plain TCP client on the TLS listener';
	const sb = h.newReference('model', 'JS-plain');
	const sock = await new Promise((resolve, reject) => {
		const s = net.connect({ port, host: '127.0.0.1' });
		s.once('connect', () => resolve(s));
		s.once('error', reject);
	});
	const peer = new st.Peer(sock, sb.createStream({ meta: name }), label);
	h.ok(await peer.waitClosed(), `${label}: the worker closes the connection`);
	h.ok(!peer.synced && peer.header === undefined, `${label}: no scuttlebutt header came back`);
	h.ok(peer.lines().length === 0, `${label}: no line at all came back`, peer.lines().join('\n'));
}

h.main(async () => {
	if (!(port > 0) || !dir) throw new Error('usage: node stream_tls.js <connstr> <listener port> <cert dir>');
	await plainPipe();
	await clientCertificate();
	await bulk();
	await untrustedClientCertificate();
	await wrongCa();
	await plainClient();
});
