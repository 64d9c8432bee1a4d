'use strict';
// Many models over ONE connection, as level-scuttlebutt's clients do it
// with the npm mux-demux package:
//
//     const mx = MuxDemux();
//     mx.pipe(socket).pipe(mx);
//     const sub = mx.createStream('users');            // meta: the model
//     sub.pipe(model.createStream()).pipe(sub);
//
// Usage: node stream_mux.js <connstr> <url> <options JSON>
//   url: tcp://host:port, or ws://host:port/ (websocket-stream)
//   options.models: models the role may read and write (two at least);
//   options.denied: a model it holds nothing on (its sub-stream is refused);
//   options.bucket: models that are the parts of one scuttlebucket, each
//     part over a sub-stream of its own (as the README tells such an app).
// Checks: every allowed model syncs both ways (the database's key reaches
// the client, the client's key the table, "sync" emitted), then live edits
// both ways; peer_status shows one live sub-stream per model, all from
// one remote address; the denied model's sub-stream gets an "error" that
// says "permission denied" and nothing of it reaches its table, while the
// others keep syncing live; ending one sub-stream ends its session alone.
// A scuttlebucket's parts, each piped into its own sub-stream, sync both
// ways with their models, every key kept (not one row per part).

const net = require('net');
const MuxDemux = require('mux-demux');
const Scuttlebucket = require('scuttlebucket');
const Model = require('scuttlebutt/model');
const websocket = require('websocket-stream');
const h = require('./lib/harness');
const st = require('./lib/stream');
const { lit } = h;

const connstr = process.argv[2];
const url = process.argv[3];
const opts = process.argv[4] ? JSON.parse(process.argv[4]) : {};
const db = new h.Db(connstr);
const adb = new st.AsyncDb(connstr);
const ws = url.startsWith('ws');
const tag = ws ? 'ws' : 'tcp';

function connect() {
	if (ws) return websocket(url);
	const [host, port] = url.slice('tcp://'.length).split(':');
	return net.connect({ host, port: Number(port) });
}

async function liveRows(model) {
	return adb.rows(`SELECT remote_addr, remote_id, websocket FROM scuttlebutt.peer_status
		WHERE model = ${lit(model)} AND direction = 'in' AND state = 'live'`);
}

h.main(async () => {
	const nodeId = db.value('SELECT scuttlebutt.node_id()');
	const conn = connect();
	const connErrors = [];
	let connClosed = false;
	conn.on('error', (e) => connErrors.push(e.message));
	conn.on('close', () => { connClosed = true; });
	const mx = MuxDemux();
	mx.on('error', (e) => connErrors.push(`mux: ${e.message}`));
	mx.pipe(conn).pipe(mx);

	// one reference Model per model, each over a sub-stream named after it
	const peers = {};
	for (const name of opts.models.concat([opts.denied])) {
		const dbTs = Number(db.value(`SELECT scuttlebutt.set(${lit(name)}, 'from_db', '"db"')`));
		const sb = h.newReference('model', `JS-mux-${tag}-${name}-${process.pid}`);
		sb.set('from_js', name);
		const sub = mx.createStream(name);
		const es = sb.createStream();
		const p = { name, sb, sub, es, dbTs, errors: [], synced: false, ended: false };
		sub.on('error', (e) => p.errors.push(e.message));
		sub.on('end', () => { p.ended = true; });
		es.on('sync', () => { p.synced = true; });
		sub.pipe(es).pipe(sub);
		peers[name] = p;
	}

	for (const name of opts.models) {
		const p = peers[name];
		h.ok(await st.until(() => st.hasSeen(p.sb, nodeId, p.dbTs)),
			`${tag} ${name}: initial sync: the database's key reaches the client`,
			p.errors.concat(connErrors).join('; '));
		h.ok(await st.until(() => p.synced), `${tag} ${name}: the client's stream emits "sync"`);
		h.ok((await adb.poll(`SELECT scuttlebutt.get(${lit(name)}, 'from_js')::text`,
			(v) => v === JSON.stringify(name))).ok,
		`${tag} ${name}: initial sync: the client's key reaches the table`);
	}

	// the denied model's sub-stream alone is refused, with the reason
	const d = peers[opts.denied];
	h.ok(await st.until(() => d.errors.length > 0),
		`${tag} ${opts.denied}: the sub-stream for a model the role holds nothing on gets "error"`);
	h.is(d.errors.join('; '), `permission denied on model "${opts.denied}"`,
		`${tag} ${opts.denied}: the error says "permission denied" and names the model, nothing more`);
	h.ok(await st.until(() => d.ended), `${tag} ${opts.denied}: the refused sub-stream ends`);
	h.is(String(db.value(`SELECT (scuttlebutt.clock(${lit(opts.denied)})::jsonb ? ${lit(d.sb.id)})::int`)), '0',
		`${tag} ${opts.denied}: nothing of the refused sub-stream reached its table`);
	h.ok(!d.sb.get('from_db'), `${tag} ${opts.denied}: nothing of its table reached the client`);

	// the others go on: live edits both ways, after the refusal
	for (const name of opts.models) {
		const p = peers[name];
		const ts2 = Number(await adb.value(`SELECT scuttlebutt.set(${lit(name)}, 'live_db', '"sql ${name}"')`));
		h.ok(await st.until(() => st.hasSeen(p.sb, nodeId, ts2) && p.sb.get('live_db') === `sql ${name}`),
			`${tag} ${name}: live: an SQL set() is seen by the client`);
		p.sb.set('live_js', `node ${name}`);
		h.ok((await adb.poll(`SELECT scuttlebutt.get(${lit(name)}, 'live_js')::text`,
			(v) => v === JSON.stringify(`node ${name}`))).ok,
		`${tag} ${name}: live: the client's set() is seen in SQL`);
		h.is(p.errors.length, 0, `${tag} ${name}: its sub-stream saw no error`, p.errors.join('; '));
	}

	// a scuttlebucket: each part a model of its own, over its own sub-stream
	if (opts.bucket) {
		const bucket = new Scuttlebucket(`JS-bucket-${tag}-${process.pid}`);
		const parts = {};
		for (const part of opts.bucket) {
			const dbTs = Number(db.value(`SELECT scuttlebutt.set(${lit(part)}, 'from_db', '"db"')`));
			bucket.add(part, new Model());
			const m = bucket.get(part);
			m.set('k1', `${part} one`);
			m.set('k2', `${part} two`);
			const sub = mx.createStream(part);
			sub.pipe(m.createStream()).pipe(sub);
			parts[part] = { m, dbTs };
		}
		for (const part of opts.bucket) {
			const { m, dbTs } = parts[part];
			h.ok(await st.until(() => st.hasSeen(m, nodeId, dbTs) && bucket.toJSON()[part].from_db === 'db'),
				`${tag} bucket part ${part}: the database's key reaches the part`);
			h.ok((await adb.poll(`SELECT string_agg(k || '=' || scuttlebutt.get(${lit(part)}, k)::text, ',' ORDER BY k)
				FROM scuttlebutt.keys(${lit(part)}) k WHERE k LIKE 'k%'`,
			(v) => v === `k1="${part} one",k2="${part} two"`)).ok,
			`${tag} bucket part ${part}: both of the part's keys reach its model (a row each)`);
			m.set('k3', 'live');
			h.ok((await adb.poll(`SELECT scuttlebutt.get(${lit(part)}, 'k3')::text`, (v) => v === '"live"')).ok,
				`${tag} bucket part ${part}: live: the part's set() is seen in SQL`);
		}
	}

	// one connection: every live sub-stream comes from the same address
	const addrs = new Set();
	for (const name of opts.models) {
		const rows = await liveRows(name);
		h.is(rows.length, 1, `${tag} ${name}: peer_status shows its sub-stream live`);
		for (const r of rows) {
			addrs.add(r.remote_addr);
			h.is(r.websocket, ws, `${tag} ${name}: peer_status shows websocket = ${ws}`);
		}
	}
	h.is(addrs.size, 1, `${tag}: all the sub-streams are on one connection (one remote address and port)`);
	h.is((await liveRows(opts.denied)).length, 0, `${tag} ${opts.denied}: no session for the refused sub-stream`);

	// ending one sub-stream ends its session alone
	const [first, second] = opts.models;
	peers[first].es.end();
	h.ok((await adb.poll(`SELECT count(*) FROM scuttlebutt.peer_status
		WHERE model = ${lit(first)} AND direction = 'in'`, (v) => Number(v) === 0)).ok,
	`${tag} ${first}: ending its sub-stream ends its session`);
	const ts3 = Number(await adb.value(`SELECT scuttlebutt.set(${lit(second)}, 'after_end', '1')`));
	h.ok(await st.until(() => st.hasSeen(peers[second].sb, nodeId, ts3)),
		`${tag} ${second}: still live after another sub-stream ended`);

	conn.end();
	h.ok(await st.until(() => connClosed), `${tag}: the connection closes`, connErrors.join('; '));
	h.ok((await adb.poll(`SELECT count(*) FROM scuttlebutt.peer_status
		WHERE model = ${lit(second)} AND direction = 'in'`, (v) => Number(v) === 0)).ok,
	`${tag}: once the connection closes, its sub-streams' sessions end`);
});
