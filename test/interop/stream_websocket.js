'use strict';
// An unmodified reference Model reaching the worker's listener over a
// WebSocket with the npm websocket-stream package, as a browser or Node
// app does:
//
//     const ws = websocket('ws://db:9999/?token=...', ['scuttlebutt'], opts);
//     ws.pipe(model.createStream({meta: 'users'})).pipe(ws);
//
// Usage: node stream_websocket.js <connstr> <url> <model> <expect> [<options JSON>]
//   expect = accept: initial sync both ways (the database's key reaches the
//     client, the client's key the table), then live edits both ways (an
//     SQL set() seen by the client, a client set() seen in SQL);
//     peer_status shows the connection (role/method when options name
//     them, tls when options.tls).
//   expect = refuse: the connection ends (upgrade refused, or closed after
//     it); nothing of the client reaches the table; options.closeCode /
//     options.closeReason / options.httpStatus: what the client must see;
//     options.noBytes: the worker sent no payload byte.
//   expect = oneshot: createStream({tail: false}): the client gets the
//     database's history (sent with its header), sends its own and "SYNC",
//     ends its side, and the connection closes; the client's key is in
//     the table.  Over TCP the client reads on after its end and also gets
//     the database's "SYNC" (its stream emits "sync"); websocket-stream
//     stops reading when its side ends, as a reference server's clients
//     do too (README, "One-shot syncs").
//   expect = syncend: the one-shot sync that works on every transport: a
//     tailing stream ended in its "sync" handler; at "sync" the table
//     already holds the client's key (durable sync).
//   expect = nomodel: the header names no model: the client receives one
//     JSON line with an "error", its stream emits "error", and the close
//     frame says why (1008).
// Options: protocols (array), origin, ca (file), meta (object or string;
// default the model's name; null: none), writeStream (createWriteStream
// with that meta, no sendClock: the client only receives), role, method,
// tls.

const fs = require('fs');
const net = require('net');
const websocket = require('websocket-stream');
const h = require('./lib/harness');
const st = require('./lib/stream');
const { lit } = h;

const connstr = process.argv[2];
const url = process.argv[3];
const name = process.argv[4];
const expect = process.argv[5];
const opts = process.argv[6] ? JSON.parse(process.argv[6]) : {};
const db = new h.Db(connstr);
const adb = new st.AsyncDb(connstr);
const Q = st.modelQueries(db, adb);

// tcp://host:port: the same client over plain TCP (the seed's own example)
function connectTcp(sb, streamOpts) {
	const [host, port] = url.slice('tcp://'.length).split(':');
	const sock = net.connect({ host, port: Number(port) });
	const c = { ws: sock, chunks: [], errors: [], closed: false, streamErrors: 0 };
	sock.on('error', (e) => c.errors.push(e.message));
	sock.on('data', (b) => c.chunks.push(Buffer.from(b)));
	sock.on('close', () => { c.closed = true; });
	const s = opts.writeStream ? sb.createWriteStream(streamOpts) : sb.createStream(streamOpts);
	s.on('error', () => { c.streamErrors++; sock.destroy(); });
	s.on('sync', () => { c.synced = true; });
	c.stream = s;
	sock.pipe(s).pipe(sock);
	c.text = () => Buffer.concat(c.chunks).toString('utf8');
	return c;
}

function connect(sb, streamOpts) {
	if (url.startsWith('tcp://')) return connectTcp(sb, streamOpts);
	const wsOpts = {};
	if (opts.origin) wsOpts.origin = opts.origin;
	if (opts.ca) wsOpts.ca = fs.readFileSync(opts.ca);
	const ws = websocket(url, opts.protocols || undefined, wsOpts);
	const c = {
		ws, chunks: [], errors: [], closed: false, code: undefined, reason: undefined,
		httpStatus: undefined, streamErrors: 0,
	};
	ws.socket.on('close', (code, reason) => { c.code = code; c.reason = String(reason || ''); });
	ws.socket.on('unexpected-response', (req, res) => {
		c.httpStatus = res.statusCode;
		c.closed = true;
		req.abort();
	});
	ws.socket.on('error', (e) => c.errors.push(e.message));
	ws.on('error', (e) => c.errors.push(`stream: ${e && e.message}`));
	ws.on('data', (b) => c.chunks.push(Buffer.from(b)));
	ws.on('close', () => { c.closed = true; });
	const s = opts.writeStream ? sb.createWriteStream(streamOpts) : sb.createStream(streamOpts);
	s.on('error', () => { c.streamErrors++; });
	s.on('sync', () => { c.synced = true; });
	c.stream = s;
	ws.pipe(s).pipe(ws);
	c.text = () => Buffer.concat(c.chunks).toString('utf8');
	return c;
}

h.main(async () => {
	const nodeId = db.value('SELECT scuttlebutt.node_id()');
	const dbTs = Number(db.value(`SELECT scuttlebutt.set(${lit(name)}, 'from_db', '"db"')`));
	const sb = h.newReference('model', `JS-ws-${name}-${process.pid}`);
	sb.set('from_js', 'js');
	const meta = opts.meta === undefined ? name : opts.meta;
	const streamOpts = meta === null ? {} : { meta };
	if (expect === 'oneshot') streamOpts.tail = false;
	const c = connect(sb, streamOpts);

	if (expect === 'accept') {
		h.ok(await st.until(() => st.hasSeen(sb, nodeId, dbTs)),
			`${name}: initial sync: the database's key reaches the client`, c.errors.join('; '));
		h.ok(await st.until(() => c.synced), `${name}: the client's stream emits "sync"`);
		if (!opts.writeStream) {
			h.ok(await Q.pollSeen(name, sb.id, sb.sources[sb.id]),
				`${name}: initial sync: the client's key reaches the table`);
		}
		// live, both ways
		const ts2 = Number(await adb.value(`SELECT scuttlebutt.set(${lit(name)}, 'live_db', '"sql"')`));
		h.ok(await st.until(() => st.hasSeen(sb, nodeId, ts2) && sb.get('live_db') === 'sql'),
			`${name}: live: an SQL set() is seen by the client`);
		if (!opts.writeStream) {
			sb.set('live_js', 'node');
			h.ok(await adb.poll(`SELECT scuttlebutt.get(${lit(name)}, 'live_js')::text`,
				(v) => v === '"node"').then((r) => r.ok),
			`${name}: live: the client's set() is seen in SQL`);
		}
		const rows = await adb.rows(`SELECT role, method, tls, websocket FROM scuttlebutt.peer_status
			WHERE model = ${lit(name)} AND direction = 'in' AND state = 'live'`);
		h.is(rows.length, 1, `${name}: peer_status shows the live connection`);
		if (rows.length === 1 && opts.role)
			h.is(`${rows[0].role}/${rows[0].method}`, `${opts.role}/${opts.method}`,
				`${name}: peer_status shows the role and method`);
		if (rows.length === 1)
			h.is(rows[0].websocket, !url.startsWith('tcp://'), `${name}: peer_status shows websocket = ${!url.startsWith('tcp://')}`);
		if (rows.length === 1 && opts.tls !== undefined)
			h.is(rows[0].tls, opts.tls, `${name}: peer_status shows tls = ${opts.tls}`);
		c.ws.end();
		h.ok(await st.until(() => c.closed), `${name}: the connection closes cleanly`);
		if (!url.startsWith('tcp://')) {
			await st.until(() => c.code !== undefined);
			h.is(c.code, 1000, `${name}: the worker answered our close with 1000`);
		}
	} else if (expect === 'oneshot') {
		h.ok(await st.until(() => c.closed), `${name}: tail: false: the connection closes`, c.errors.join('; '));
		h.ok(st.hasSeen(sb, nodeId, dbTs), `${name}: tail: false: the database's key reached the client`);
		h.ok(await Q.pollSeen(name, sb.id, sb.sources[sb.id]), `${name}: tail: false: the client's key reaches the table`);
		if (url.startsWith('tcp://'))
			h.ok(c.synced, `${name}: tail: false: over TCP the client's stream emitted "sync" before the close`);
	} else if (expect === 'syncend') {
		let heldAtSync;
		c.stream.on('sync', () => {
			heldAtSync = db.value(`SELECT (scuttlebutt.clock(${lit(name)})::jsonb ->> ${lit(sb.id)})::float8`);
			c.ws.end();
		});
		h.ok(await st.until(() => c.synced), `${name}: the client's stream emits "sync"`);
		h.ok(st.hasSeen(sb, nodeId, dbTs), `${name}: the database's key reached the client`);
		h.is(Number(heldAtSync), sb.sources[sb.id], `${name}: at "sync" the table holds the client's key`);
		h.ok(await st.until(() => c.closed), `${name}: ended at "sync", the connection closes`);
		if (!url.startsWith('tcp://')) {
			await st.until(() => c.code !== undefined);
			h.is(c.code, 1000, `${name}: the worker answered the close with 1000`);
		}
	} else if (expect === 'refuse') {
		h.ok(await st.until(() => c.closed), `${name}: the connection ends`, c.errors.join('; '));
		if (opts.httpStatus !== undefined)
			h.is(c.httpStatus, opts.httpStatus, `${name}: the upgrade is refused with HTTP ${opts.httpStatus}`);
		if (opts.closeCode !== undefined)
			h.is(c.code, opts.closeCode, `${name}: the close frame has code ${opts.closeCode}`);
		if (opts.closeReason !== undefined)
			h.is(c.reason, opts.closeReason, `${name}: the close frame's reason`);
		if (opts.noBytes)
			h.is(c.text(), '', `${name}: the worker sent nothing (no header)`);
		const held = db.value(`SELECT (scuttlebutt.clock(${lit(name)})::jsonb ? ${lit(sb.id)})::int`);
		h.is(String(held), '0', `${name}: nothing of the client reached the table (no clock entry of its source)`);
	} else if (expect === 'nomodel') {
		h.ok(await st.until(() => c.closed), `${name}: the connection ends`, c.errors.join('; '));
		const lines = c.text().split('\n').filter((l) => l !== '');
		h.is(lines.length, 1, `${name}: the client received one line`);
		let err;
		try { err = JSON.parse(lines[0]).error; } catch (e) { err = undefined; }
		h.ok(typeof err === 'string' && /no model named/.test(err) && /default_model/.test(err),
			`${name}: the line is a JSON "error" naming the reason and the setting`, lines[0]);
		h.ok(c.streamErrors > 0, `${name}: the reference's stream emitted "error" (a header without a clock)`);
		if (!url.startsWith('tcp://')) {
			h.is(c.code, 1008, `${name}: the close frame has code 1008 (policy violation)`);
			h.ok(/no model named/.test(c.reason || ''), `${name}: the close frame's reason says no model was named`, c.reason);
		}
	}
});
