'use strict';
// Signed models with unmodified reference clients: two signed JavaScript
// Models (RSA: the npm package's own scuttlebutt/security; Ed25519: the
// same shape on Node's crypto.sign/crypto.verify, lib/ed25519_security.js)
// connected to the database's signed model through its stream listener,
// the database's public key in their keys map:
// - a write on either JavaScript peer reaches the other verified, and a
//   write made with SQL reaches both verified (no 'unverified_data');
// - on a raw socket: updates with a signature of another value, an altered
//   value, an altered timestamp, signature "AAAA", no signature, a source
//   whose key the database does not trust, a signature by another trusted
//   key, an empty, a non-base64 and a 12,000-character signature, a
//   genuine signature moved to another source, and a correctly signed
//   update of the other algorithm are each
//   rejected (peer_status.rejected counts them, the connection stays open,
//   get() does not return them) and never reach the JavaScript peers;
// - a genuine update of the forged source with a lower timestamp than the
//   forgeries is still accepted and reaches the peers verified, and so is
//   one whose JSON text is laid out unlike JSON.stringify's (the database
//   verifies the re-serialized update);
// - values whose JSON.stringify text is easy to get wrong, signed by a
//   JavaScript peer and by the database, verify on the other side;
// - (RSA) a peer whose public key is a PKCS#1 PEM is trusted under the
//   hash of that text and verifies the whole history;
// - scuttlebutt.export() of the model loads into a signed JavaScript
//   Model's createWriteStream() without an unverified update;
// - control: an unsigned model stores what the signed one refuses.
//
// Usage: node signed_stream.js <connstr> <listener port> <rsa|ed25519> <key dir>
// The key dir holds <name>.key and <name>.pub for A, B (the connected
// peers), C (the raw socket's signer, trusted), D (not trusted), all of
// the model's algorithm, X (the other algorithm, trusted), and for RSA P
// (its public key a PKCS#1 PEM).

const crypto = require('crypto');
const fs = require('fs');
const net = require('net');
const h = require('./lib/harness');
const st = require('./lib/stream');
const { lit } = h;

const connstr = process.argv[2];
const port = Number(process.argv[3]);
const alg = process.argv[4];
const keyDir = process.argv[5];
const db = new h.Db(connstr);
const adb = new st.AsyncDb(connstr);
const Q = st.modelQueries(db, adb);

const rsaSecurity = require('scuttlebutt/security');
const edSecurity = require('./lib/ed25519_security');
const otherAlg = alg === 'rsa' ? 'ed25519' : 'rsa';
const securityFor = (a) => (a === 'rsa' ? rsaSecurity : edSecurity);

// The reference verifies with RSA-SHA1 whatever the key, and throws on a
// key of another type: such a throw, if an update of the other algorithm
// were ever relayed, ends up here instead of ending the process.
const crashes = [];
process.on('uncaughtException', (e) => crashes.push(e && e.stack ? e.stack : String(e)));

function readKey(name, a) {
	const PRIVATE = fs.readFileSync(`${keyDir}/${name}.key`, 'utf8');
	const PUBLIC = fs.readFileSync(`${keyDir}/${name}.pub`, 'utf8');
	return { name, alg: a, PRIVATE, PUBLIC, sec: securityFor(a)({}, PRIVATE, PUBLIC) };
}

// [change, ts, source] signed by key k: the reference's sign()
function signed(k, change, ts, source) {
	const u = [change, ts, source === undefined ? k.sec.createId() : source];
	return u.concat([k.sec.sign(u)]);
}

// A signed Model holding its own copy of the keys map, recording the
// updates it refused
function signedModel(k, keys) {
	const m = new h.Model(securityFor(k.alg)(keys, k.PRIVATE, k.PUBLIC));
	m.unverified = [];
	m.on('unverified_data', (u) => m.unverified.push(JSON.stringify(u)));
	return m;
}

// A raw TCP client of the listener: header, then lines
function rawClient(name) {
	return new Promise((resolve, reject) => {
		const sock = net.connect({ port, host: '127.0.0.1' });
		const raw = { sock, text: '', closed: false, lines: () => raw.text.split('\n').slice(0, -1) };
		sock.setEncoding('utf8');
		sock.on('data', (d) => { raw.text += d; });
		sock.on('close', () => { raw.closed = true; });
		sock.on('error', () => {});
		sock.once('connect', () => {
			sock.write(JSON.stringify({ id: `RAW-${alg}`, clock: {}, meta: name }) + '\n');
			resolve(raw);
		});
		sock.once('error', reject);
	});
}

h.main(async () => {
	if (!(port > 0) || !['rsa', 'ed25519'].includes(alg)) throw new Error('usage: node signed_stream.js <connstr> <port> <rsa|ed25519> <key dir>');
	const label = `${alg}`;
	const name = `signed_${alg}`;

	const A = readKey('A', alg), B = readKey('B', alg), C = readKey('C', alg), D = readKey('D', alg);
	const X = readKey('X', otherAlg);

	// the database's identity, as a JavaScript peer computes it
	const nodeId = db.value('SELECT scuttlebutt.node_id()');
	const nodePem = db.value('SELECT scuttlebutt.node_public_key()');
	h.is(nodeId, crypto.createHash('sha1').update(nodePem).digest('base64'), `${label}: node_id() is createId() of node_public_key()`);

	// every peer trusts the database, A, B, C and X (X only to show that
	// the database never relays X's updates: the RSA reference throws on
	// an Ed25519 key)
	const keys = {};
	keys[nodeId] = nodePem;
	for (const k of [A, B, C, X]) {
		keys[k.sec.createId()] = k.PUBLIC;
		h.is(db.value(`SELECT scuttlebutt.trust_key(${lit(k.PUBLIC)})`), k.sec.createId(),
			`${label}: trust_key(${k.name}) returns createId() of its public PEM`);
	}
	const [cId, dId, xId] = [C, D, X].map((k) => k.sec.createId());

	db.exec(`SELECT scuttlebutt.create_model(${lit(name)}, 'model', true);`);
	const row = db.rows(`SELECT signed, signature_algorithm FROM scuttlebutt.models WHERE name = ${lit(name)}`)[0] || {};
	h.same([row.signed, row.signature_algorithm], [true, alg === 'rsa' ? 'rsa-sha1' : 'ed25519'],
		`${label}: models shows the model signed, with the node key's algorithm`);

	// a SQL write before anyone connects
	const ts0 = Number(db.value(`SELECT scuttlebutt.set(${lit(name)}, 'db0', '{"from":"sql"}'::jsonb)`));

	const mA = signedModel(A, Object.assign({}, keys));
	const mB = signedModel(B, Object.assign({}, keys));
	mA.set('a0', { from: 'A' });
	const pa = await st.connectClient(port, mA, { meta: name }, `${label} A`);
	h.ok(await st.until(() => pa.synced), `${label}: A synced`);
	h.ok(st.hasSeen(mA, nodeId, ts0) && mA.get('db0') !== undefined, `${label}: the SQL write made before A connected reached A verified`);
	h.ok(await Q.pollSeen(name, mA.id, mA.sources[mA.id]), `${label}: A's write reaches the table`);
	mB.set('b0', { from: 'B' });
	const pb = await st.connectClient(port, mB, { meta: name }, `${label} B`);
	h.ok(await st.until(() => pb.synced && st.hasSeen(mA, mB.id, mB.sources[mB.id])), `${label}: B synced, B's write made before connecting reaches A`);
	h.ok(mB.get('a0') !== undefined && mB.get('db0') !== undefined, `${label}: A's and the SQL write reached B`);

	// live, both ways, and from SQL
	mA.set('a1', [1, 'live from A']);
	h.ok(await st.until(() => st.hasSeen(mB, mA.id, mA.sources[mA.id])), `${label}: A's live write reaches B`);
	mB.set('b1', 'live from B é');
	h.ok(await st.until(() => st.hasSeen(mA, mB.id, mB.sources[mB.id])), `${label}: B's live write reaches A`);
	const ts1 = Number(await adb.value(`SELECT scuttlebutt.set(${lit(name)}, 'db1', '[1.5, "sql"]'::jsonb)`));
	h.ok(await st.until(() => st.hasSeen(mA, nodeId, ts1) && st.hasSeen(mB, nodeId, ts1)), `${label}: a live SQL write reaches A and B`);
	h.same([mA.get('db1'), mB.get('db1')], [[1.5, 'sql'], [1.5, 'sql']], `${label}: A and B applied the SQL write (it verified)`);
	h.is(mA.unverified.length + mB.unverified.length, 0, `${label}: no update failed verification on A or B`,
		mA.unverified.concat(mB.unverified).join('\n'));
	let held = Q.history(name, {});
	h.ok(held.length === 6 && held.every((l) => JSON.parse(l).length === 4), `${label}: the table holds 6 updates, each signed`, held.join('\n'));

	// values whose JSON.stringify text is easy to get wrong (index-like
	// keys, number notation, escapes, non-ASCII, -0): the signature covers
	// JSON.stringify's exact bytes, so the database must verify A's and
	// sign its own over the same text as JavaScript writes
	const V = st.VALUES;
	V.forEach((v, i) => mA.set(`hostile_a${i}`, v));
	h.ok(await st.until(() => st.hasSeen(mB, mA.id, mA.sources[mA.id])), `${label}: hostile values: A's ${V.length} writes reach B`);
	h.ok(await Q.pollSeen(name, mA.id, mA.sources[mA.id]), `${label}: hostile values: and the table`);
	h.is(V.filter((v, i) => db.value(`SELECT count(*) FROM scuttlebutt.history(${lit(name)}) h WHERE h->0->>0 = ${lit(`hostile_a${i}`)}`) !== 1).length, 0,
		`${label}: hostile values: the database verified and stored each of A's`);
	let tsV = 0;
	for (let i = 0; i < V.length; i++)
		tsV = Number(await adb.value(`SELECT scuttlebutt.set(${lit(name)}, ${lit(`hostile_db${i}`)}, ${lit(JSON.stringify(V[i]))}::jsonb)`));
	h.ok(await st.until(() => st.hasSeen(mA, nodeId, tsV) && st.hasSeen(mB, nodeId, tsV)), `${label}: hostile values: the SQL writes reach A and B`);
	h.same(V.map((v, i) => mB.get(`hostile_db${i}`)), V.map((v, i) => mA.get(`hostile_db${i}`)), `${label}: hostile values: A and B hold the same SQL-written values`);
	h.is(V.filter((v, i) => mA.get(`hostile_db${i}`) === undefined).length, 0, `${label}: hostile values: A verified every SQL-written value`);
	h.is(mA.unverified.length + mB.unverified.length, 0, `${label}: hostile values: no update failed verification`,
		mA.unverified.concat(mB.unverified).join('\n'));
	held = Q.history(name, {});
	const heldCount = held.length;
	h.is(heldCount, 6 + 2 * V.length, `${label}: the table holds ${6 + 2 * V.length} updates`);

	// ------------------------------------------------------------------
	// A raw socket sends forgeries
	// ------------------------------------------------------------------
	const raw = await rawClient(name);
	raw.sock.write('"SYNC"\n');  // no history: the database's "SYNC" waits for ours
	h.ok(await st.until(() => raw.lines().includes('"SYNC"')), `${label}: raw socket: the database sent its history and "SYNC"`);
	const base = Date.now() + 20000;     // within max_clock_skew
	const forgedTs = base + 10000;
	const forgeries = [];
	{
		// a valid signature of another value
		const g = signed(C, ['f_value', 'genuine'], forgedTs + 1);
		forgeries.push(['signature of another value', [['f_value', 'forged'], g[1], g[2], g[3]]]);
		// a genuine update with its value altered in depth
		const a = signed(C, ['f_altered', { amount: 10 }], forgedTs + 2);
		forgeries.push(['altered value', [['f_altered', { amount: 1000 }], a[1], a[2], a[3]]]);
		// a genuine update with its timestamp altered
		const t = signed(C, ['f_ts', 'x'], forgedTs + 3);
		forgeries.push(['altered timestamp', [t[0], forgedTs + 4, t[2], t[3]]]);
		forgeries.push(['signature "AAAA"', [['f_aaaa', 1], forgedTs + 5, cId, 'AAAA']]);
		forgeries.push(['no signature', [['f_unsigned', 1], forgedTs + 6, cId]]);
		forgeries.push(['empty signature', [['f_empty', 1], forgedTs + 10, cId, '']]);
		forgeries.push(['signature not base64', [['f_notb64', 1], forgedTs + 11, cId, '!!!!']]);
		forgeries.push(['a 12,000-character signature', [['f_long', 1], forgedTs + 12, cId, signed(C, ['f_long', 1], forgedTs + 12)[3].repeat(40).slice(0, 12000)]]);
		forgeries.push(['the signature of a genuine update, moved to another source', [['f_moved', 1], forgedTs + 13, dId, signed(C, ['f_moved', 1], forgedTs + 13)[3]]]);
		forgeries.push(['a source whose key is not trusted', signed(D, ['f_unknown', 1], forgedTs + 7)]);
		forgeries.push(['signed by another trusted key (A\'s) for source C', signed(A, ['f_otherkey', 1], forgedTs + 8, cId)]);
		forgeries.push([`correctly signed with a trusted ${otherAlg} key`, signed(X, ['f_mixed', 1], forgedTs + 9)]);
	}
	const rejectedBefore = await Q.rejected(name);
	h.is(rejectedBefore, 0, `${label}: nothing rejected before the forgeries`);
	let n = 0;
	for (const [what, u] of forgeries) {
		raw.sock.write(JSON.stringify(u) + '\n');
		n++;
		const r = await adb.poll(`SELECT coalesce(sum(rejected), 0) FROM scuttlebutt.peer_status WHERE model = ${lit(name)}`,
			(v) => Number(v) >= n);
		h.ok(r.ok && Number(r.value) === n, `${label}: rejected: ${what} (peer_status.rejected = ${n})`, `rejected = ${r.value}`);
	}
	const clockAfter = Q.clock(name);
	h.ok(!(cId in clockAfter) && !(dId in clockAfter) && !(xId in clockAfter), `${label}: no rejected update moved the clock`, JSON.stringify(clockAfter));
	const fkeys = ['f_value', 'f_altered', 'f_ts', 'f_aaaa', 'f_unsigned', 'f_unknown', 'f_otherkey', 'f_mixed', 'f_empty', 'f_notb64', 'f_long', 'f_moved'];
	h.is(db.value(`SELECT count(*) FROM unnest(ARRAY[${fkeys.map(lit).join(',')}]) k WHERE scuttlebutt.get(${lit(name)}, k) IS NOT NULL`), 0,
		`${label}: get() returns none of the forged values`);
	h.is(Q.history(name, {}).length, heldCount, `${label}: the table holds no forged update`);
	h.ok(!raw.closed, `${label}: the raw connection stays open after the rejections`);

	// a genuine update of C, LOWER timestamp than every forgery, on the
	// same connection
	const genuine = signed(C, ['c_genuine', { from: 'C', n: 1 }], base);
	raw.sock.write(JSON.stringify(genuine) + '\n');
	h.ok(await Q.pollSeen(name, cId, base), `${label}: a genuine update of C with a lower timestamp than the forgeries is accepted`);
	h.same(JSON.parse(db.value(`SELECT scuttlebutt.get(${lit(name)}, 'c_genuine')::text`)), { from: 'C', n: 1 }, `${label}: get() returns it`);
	h.ok(await st.until(() => st.hasSeen(mA, cId, base) && st.hasSeen(mB, cId, base)), `${label}: it reaches A and B`);
	h.same([mA.get('c_genuine'), mB.get('c_genuine')], [{ from: 'C', n: 1 }, { from: 'C', n: 1 }], `${label}: A and B applied it (it verified)`);

	// the same kind of update laid out unlike JSON.stringify: spaces, a
	// \u escape, 1.50; signed over JSON.stringify of its value
	const ncTs = base + 1;
	const nc = signed(C, ['c_layout', 1.5], ncTs);
	const ncText = `[ [ "c_l\\u0061yout" , 1.50 ] ,  ${ncTs} , ${JSON.stringify(cId)} ,\t${JSON.stringify(nc[3])} ]`;
	h.is(JSON.stringify(JSON.parse(ncText)), JSON.stringify(nc), `${label}: (the laid-out text parses to the signed update)`);
	raw.sock.write(ncText + '\n');
	h.ok(await Q.pollSeen(name, cId, ncTs), `${label}: an update laid out unlike JSON.stringify, signed over JSON.stringify of its value, is accepted`);
	// (jsonb keeps the numeric's scale: 1.50)
	h.same(JSON.parse(db.value(`SELECT scuttlebutt.get(${lit(name)}, 'c_layout')::text`)), 1.5, `${label}: get() returns its value`);
	h.ok(await st.until(() => st.hasSeen(mA, cId, ncTs) && st.hasSeen(mB, cId, ncTs)), `${label}: it reaches A and B`);
	h.same([mA.get('c_layout'), mB.get('c_layout')], [1.5, 1.5], `${label}: A and B applied it (it verified)`);

	// a write after all that still flows both ways
	mB.set('b2', 'after the forgeries');
	h.ok(await st.until(() => st.hasSeen(mA, mB.id, mB.sources[mB.id])), `${label}: B's next write still reaches A`);
	h.ok(await adb.waitForSync(name), `${label}: wait_for_sync() is true`);
	h.is(await Q.rejected(name), forgeries.length, `${label}: peer_status.rejected counts exactly the ${forgeries.length} forgeries`);

	// what A and B received from the database: none of the forgeries
	const fromDb = (p) => p.updates().map((x) => x.update);
	for (const [nm, p, m] of [['A', pa, mA], ['B', pb, mB]]) {
		const got = fromDb(p);
		const bad = got.filter((u) => u[2] === dId || u[2] === xId || (u[2] === cId && u[1] !== base && u[1] !== ncTs));
		h.is(bad.length, 0, `${label}: ${nm} received none of the rejected updates`, bad.map((u) => JSON.stringify(u)).join('\n'));
		h.is(got.filter((u) => u[2] === cId).length, 2, `${label}: ${nm} received C's two genuine updates`);
		h.is(m.unverified.length, 0, `${label}: ${nm} emitted no 'unverified_data'`, m.unverified.join('\n'));
	}
	h.is(crashes.length, 0, `${label}: the reference never threw while verifying`, crashes.join('\n'));
	h.same(mA.toJSON(), mB.toJSON(), `${label}: A and B hold the same state`);
	h.same(JSON.parse(db.value(`SELECT scuttlebutt.to_json(${lit(name)})::text`)), mA.toJSON(), `${label}: the database holds A's state`);
	h.same(Q.clock(name), Object.assign({}, mA.sources), `${label}: the database's clock is A's`);
	// signatures byte for byte: every update A holds is in the table with
	// the same signature (the table's text re-serialized)
	h.is(st.sortedText(Q.history(name, {}).map((l) => JSON.stringify(JSON.parse(l)))),
		st.sortedText(mA.history({}).map((u) => JSON.stringify(u))), `${label}: the table holds A's history, signatures included`);

	raw.sock.end();
	h.ok(await pa.finish() && await pb.finish(), `${label}: A and B closed`);
	st.checkRaw(`${label} A`, pa, { relayed: true });
	st.checkRaw(`${label} B`, pb, { relayed: true });

	// RSA: a peer whose public key is the PKCS#1 PEM ("BEGIN RSA PUBLIC
	// KEY", as "openssl rsa -RSAPublicKey_out" writes it): its id is the
	// hash of that text, on both sides
	if (alg === 'rsa') {
		const P = readKey('P', alg);
		h.ok(P.PUBLIC.startsWith('-----BEGIN RSA PUBLIC KEY-----\n'), `${label}: PKCS#1: (P's public key is a PKCS#1 PEM)`);
		h.is(db.value(`SELECT scuttlebutt.trust_key(${lit(P.PUBLIC)})`), P.sec.createId(), `${label}: PKCS#1: trust_key() returns createId()`);
		keys[P.sec.createId()] = P.PUBLIC;     // (for the export's Model below too)
		const mP = signedModel(P, Object.assign({}, keys));
		mP.set('p0', 'from a PKCS#1 key');
		const pp = await st.connectClient(port, mP, { meta: name }, `${label} P`);
		h.ok(await st.until(() => pp.synced), `${label}: PKCS#1: P synced`);
		h.ok(await Q.pollSeen(name, mP.id, mP.sources[mP.id]), `${label}: PKCS#1: P's signed write is accepted`);
		h.same(mP.toJSON(), JSON.parse(db.value(`SELECT scuttlebutt.to_json(${lit(name)})::text`)), `${label}: PKCS#1: P verified the whole history`);
		h.is(mP.unverified.length, 0, `${label}: PKCS#1: no 'unverified_data' on P`, mP.unverified.join('\n'));
		h.ok(await pp.finish(), `${label}: PKCS#1: P closed`);
	}

	// ------------------------------------------------------------------
	// export into a signed JavaScript Model's createWriteStream()
	// ------------------------------------------------------------------
	const lines = db.rows(`SELECT e AS line FROM scuttlebutt.export(${lit(name)}) e`).map((r) => r.line);
	const nHeld = Q.history(name, {}).length;
	h.ok(lines.length === nHeld + 2 && nHeld >= heldCount + 3, `${label}: export: header, ${nHeld} updates, "SYNC"`, `${lines.length} lines`);
	const F = signedModel(D, Object.assign({}, keys));
	const errors = await h.loadIntoReference(F, lines.join('\n') + '\n');
	h.is(errors.join('; '), '', `${label}: export: the write stream raised no error`);
	h.is(F.unverified.length, 0, `${label}: export: no update failed verification in a signed JavaScript Model`, F.unverified.join('\n'));
	h.same(F.toJSON(), JSON.parse(db.value(`SELECT scuttlebutt.to_json(${lit(name)})::text`)), `${label}: export: the loaded Model equals to_json()`);
	h.same(Object.assign({}, F.sources), Q.clock(name), `${label}: export: its clock is the model's`);
	// the same export, one signature altered: the Model refuses that update
	const tampered = lines.map((l) => {
		let u;
		try { u = JSON.parse(l); } catch (e) { return l; }
		if (Array.isArray(u) && u[0][0] === 'db1') { u[0][1] = 'tampered'; return JSON.stringify(u); }
		return l;
	});
	const G = signedModel(D, Object.assign({}, keys));
	await h.loadIntoReference(G, tampered.join('\n') + '\n');
	h.is(G.unverified.length, 1, `${label}: export: (an export with one altered value is refused by the same Model: the check can fail)`);

	// control: an unsigned model stores the same kind of update as
	// received, signature "AAAA" and all (so the rejections above are the
	// signed model's doing)
	const uname = `unsigned_${alg}`;
	db.exec(`SELECT scuttlebutt.create_model(${lit(uname)});`);
	const raw2 = await rawClient(uname);
	raw2.sock.write('"SYNC"\n');
	h.ok(await st.until(() => raw2.lines().includes('"SYNC"')), `${label}: unsigned model: the raw socket got "SYNC"`);
	const aaaa = JSON.stringify([['f_aaaa', 1], base + 200, cId, 'AAAA']);
	raw2.sock.write(aaaa + '\n');
	h.ok(await Q.pollSeen(uname, cId, base + 200), `${label}: unsigned model: an update signed "AAAA" is stored, not verified`);
	h.same(Q.history(uname, {}), [aaaa], `${label}: unsigned model: as received, signature included`);
	raw2.sock.end();
});
