'use strict';
// Many unmodified reference clients at once, as many browsers reconnecting
// after a restart do: N scuttlebutt Models in one process, each
//
//     sock = net.connect(port); sock.pipe(model.createStream({meta: name})).pipe(sock)
//
// opened all together.  Each ends in one of:
//   synced   the stream's 'sync' event (both "SYNC"s), holding EXPECTED keys
//   refused  the server closed the connection before 'sync' (with the
//            socket's error, if any, as its reason)
//   waiting  neither, when asked for the outcome
//
// Usage: node many_clients.js PORT MODEL N EXPECTED ID_PREFIX
// A line "keys MS K" waits (MS at most) until every synced client holds K
// keys and prints {"event": "keys", "have": n, "of": synced}.
// Prints "CONNECTED <k>" once a second (k: TCP connections established),
// then, on a line "report" on stdin, waits until every client synced or
// was refused, at most DEADLINE_MS (the second word of the line, e.g.
// "report 4000"), and prints one JSON line (the connections stay open
// until stdin ends):
//   {"synced": [ids], "refused": {id: reason}, "waiting": {id: what},
//    "wrong_keys": {id: keys}, "sync_ms_after_report": max}
const net = require('net');
const readline = require('readline');
const Model = require('scuttlebutt/model');

const [port, modelName, nArg, expectedArg, prefix] = process.argv.slice(2);
const n = Number(nArg);
const expected = Number(expectedArg);
const clients = [];
let connected = 0;
let reportAt = null;
let deadline = null;
let stdinClosed = false;

function settled() {
	return clients.every((c) => c.state !== 'waiting');
}

function maybeReport() {
	if (reportAt === null || (!settled() && Date.now() < deadline))
		return;
	const out = { synced: [], refused: {}, waiting: {}, wrong_keys: {}, sync_ms_after_report: 0 };
	for (const c of clients) {
		if (c.state === 'synced') {
			out.synced.push(c.id);
			out.sync_ms_after_report = Math.max(out.sync_ms_after_report, Math.max(0, c.at - reportAt));
			if (c.keys !== expected)
				out.wrong_keys[c.id] = c.keys;
		} else if (c.state === 'refused')
			out.refused[c.id] = c.reason;
		else
			out.waiting[c.id] = c.connected ? 'connected, header sent, nothing back' : 'not connected';
	}
	console.log(JSON.stringify(out));
	reportAt = null;
	if (stdinClosed)
		quit();
}

function quit() {
	for (const c of clients) c.sock.destroy();
	process.exit(0);
}

for (let i = 0; i < n; i++) {
	const model = new Model(`${prefix}${i}`);
	const c = { id: model.id, state: 'waiting', connected: false, reason: null, at: null, keys: 0, model };
	const sock = net.connect(Number(port), '127.0.0.1');
	const stream = model.createStream({ meta: modelName });
	c.sock = sock;
	sock.pipe(stream).pipe(sock);
	sock.on('connect', () => { c.connected = true; connected++; });
	sock.on('error', (e) => { c.reason = e.code || e.message; });
	stream.on('error', () => sock.destroy());
	stream.once('sync', () => {
		if (c.state !== 'waiting') return;
		c.state = 'synced';
		c.at = Date.now();
		c.keys = Object.keys(model.store).length;
		maybeReport();
	});
	sock.on('close', () => {
		if (c.state !== 'waiting') return;
		c.state = 'refused';
		c.reason = c.reason || 'closed by the server';
		c.at = Date.now();
		maybeReport();
	});
	clients.push(c);
}

const ticker = setInterval(() => {
	console.log(`CONNECTED ${connected}`);
	maybeReport();
}, 1000);
ticker.unref();
readline.createInterface({ input: process.stdin }).on('line', (line) => {
	const [cmd, ms, want] = line.trim().split(/\s+/);
	if (cmd === 'keys') {
		// "keys MS K": wait (MS at most) until every synced client holds K keys
		const until = Date.now() + Number(ms);
		const check = setInterval(() => {
			const synced = clients.filter((c) => c.state === 'synced');
			const have = synced.filter((c) => Object.keys(c.model.store).length === Number(want)).length;
			if (have === synced.length || Date.now() >= until) {
				clearInterval(check);
				console.log(JSON.stringify({ event: 'keys', have, of: synced.length }));
			}
		}, 50);
		return;
	}
	if (cmd !== 'report') return;
	reportAt = Date.now();
	deadline = reportAt + Number(ms || 10000);
	const poll = setInterval(() => {
		maybeReport();
		if (reportAt === null) clearInterval(poll);
	}, 50);
	maybeReport();
}).on('close', () => {
	stdinClosed = true;
	if (reportAt === null)
		quit();
});
