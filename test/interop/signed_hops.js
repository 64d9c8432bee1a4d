'use strict';
// Signed updates after two hops through two database servers: a signed
// JavaScript Model J1 on server A's listener and J2 on server B's, A and
// B replicating the signed model with each other (over a stream or
// libpq); every update keeps its source's signature, so J2 verifies J1's
// writes and A's SQL writes, and J1 verifies J2's and B's.
//
// Usage: node signed_hops.js <connstr A> <port A> <connstr B> <port B>
//            <model> <rsa|ed25519> <key dir>
// The key dir holds j1.key/j1.pub and j2.key/j2.pub (the JavaScript
// peers) and the public keys of every other source of the model (*.pub).

const crypto = require('crypto');
const fs = require('fs');
const h = require('./lib/harness');
const st = require('./lib/stream');
const { lit } = h;

const [connA, portA, connB, portB, name, alg, keyDir] = process.argv.slice(2);
const dbA = new h.Db(connA), dbB = new h.Db(connB);
const adbA = new st.AsyncDb(connA), adbB = new st.AsyncDb(connB);
const security = alg === 'rsa' ? require('scuttlebutt/security') : require('./lib/ed25519_security');

h.main(async () => {
	const label = `${alg} two hops`;
	const keys = {};
	for (const f of fs.readdirSync(keyDir).filter((f) => f.endsWith('.pub'))) {
		const pem = fs.readFileSync(`${keyDir}/${f}`, 'utf8');
		keys[crypto.createHash('sha1').update(pem).digest('base64')] = pem;
	}
	const make = (n) => {
		const PRIVATE = fs.readFileSync(`${keyDir}/${n}.key`, 'utf8');
		const PUBLIC = fs.readFileSync(`${keyDir}/${n}.pub`, 'utf8');
		for (const db of [dbA, dbB]) db.exec(`SELECT scuttlebutt.trust_key(${lit(PUBLIC)});`);
		const m = new h.Model(security(Object.assign({}, keys), PRIVATE, PUBLIC));
		m.unverified = [];
		m.on('unverified_data', (u) => m.unverified.push(JSON.stringify(u)));
		return m;
	};
	const j1 = make('j1'), j2 = make('j2');
	const idA = dbA.value('SELECT scuttlebutt.node_id()'), idB = dbB.value('SELECT scuttlebutt.node_id()');
	h.ok(keys[idA] !== undefined && keys[idB] !== undefined, `${label}: both servers' public keys are in the JavaScript keys map`);
	const p1 = await st.connectClient(Number(portA), j1, { meta: name }, `${label} J1`);
	const p2 = await st.connectClient(Number(portB), j2, { meta: name }, `${label} J2`);
	h.ok(await st.until(() => p1.synced && p2.synced), `${label}: J1 (on A) and J2 (on B) synced`);
	j1.set('j1', 'from J1');
	h.ok(await st.until(() => st.hasSeen(j2, j1.id, j1.sources[j1.id])), `${label}: J1's write reaches J2 through A and B`);
	j2.set('j2', 'from J2');
	h.ok(await st.until(() => st.hasSeen(j1, j2.id, j2.sources[j2.id])), `${label}: J2's write reaches J1 through B and A`);
	const tsA = Number(await adbA.value(`SELECT scuttlebutt.set(${lit(name)}, 'sql_a', '"on A"'::jsonb)`));
	const tsB = Number(await adbB.value(`SELECT scuttlebutt.set(${lit(name)}, 'sql_b', '"on B"'::jsonb)`));
	h.ok(await st.until(() => st.hasSeen(j2, idA, tsA) && st.hasSeen(j1, idB, tsB)), `${label}: A's SQL write reaches J2, B's reaches J1`);
	h.same([j1.get('j2'), j1.get('sql_b'), j2.get('j1'), j2.get('sql_a')], ['from J2', 'on B', 'from J1', 'on A'],
		`${label}: each applied what came from the other side (it verified)`);
	h.is(j1.unverified.length + j2.unverified.length, 0, `${label}: no 'unverified_data' on J1 or J2`, j1.unverified.concat(j2.unverified).join('\n'));
	// each one's own server's write too (checked above only across the hops)
	h.ok(await st.until(() => st.hasSeen(j1, idA, tsA) && st.hasSeen(j2, idB, tsB)), `${label}: A's SQL write reaches J1, B's reaches J2`);
	h.same(j1.toJSON(), j2.toJSON(), `${label}: J1 and J2 hold the same state`);
	h.same(JSON.parse(dbB.value(`SELECT scuttlebutt.to_json(${lit(name)})::text`)), j1.toJSON(), `${label}: and so does B`);
	h.ok(await p1.finish() && await p2.finish(), `${label}: closed`);
});
