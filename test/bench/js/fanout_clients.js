'use strict';
// test/bench/js/fanout_clients.js: many lightweight stream clients of one
// model in one process, speaking the scuttlebutt line protocol as an
// unmodified reference Model does (fanout.sh checks that against the
// reference package: each stream of its Node server must emit "sync"):
//
//   -> {"id":"<id>","clock":{},"meta":"<model>"}      header, empty clock
//   <- {"id":...,"clock":{...}}                       the server's header
//   -> "SYNC"                                         our (empty) history's end
//   <- [[key,value],ts,source] ...                    history, then live
//   <- "SYNC"                                         end of history (the
//                                                     server's waits for ours)
//
// Every connection opens at once (no pacing: the reconnect storm), each
// with its own socket.  A client that is closed, reset or sent nothing
// before "SYNC" counts as refused (with the error or "closed" as its
// reason); one still waiting at the deadline counts as stalled.  History
// lines are counted (a model sends one update per key), the first three of
// each client and one in CHECK_EVERY parsed and checked.  After
// "SYNC" every update line is a live delivery: its latency is this
// machine's clock at arrival minus the update's timestamp (the clock
// reading of the writer's set(), same machine), kept in a histogram of
// 0.1 ms buckets.  Each line's timestamp is read from its text, the
// number before the last comma; one line in CHECK_EVERY (default 1000) is
// also parsed with JSON.parse and checked to be an update of the model's
// shape with that timestamp.
//
//   node fanout_clients.js PORT MODEL N [options as env]
//     FANOUT_SYNC_KEYS   keys each client must have received at "SYNC" (0: any)
//     FANOUT_DEADLINE_MS give up waiting for syncs after this (default 120000)
//     FANOUT_ID          prefix of the clients' ids (default "F<pid>-")
//
// Protocol on stdin/stdout (one JSON object a line):
//   stdout {"event":"synced", ...}   every client synced, refused or stalled:
//     {n, synced, refused, stalled, reasons:{...}, sync_ms_max, sync_ms_p50,
//      keys_min, keys_max}
//   stdin  "reset"   forget the live latencies so far
//   stdin  "report"  stdout {"event":"report", deliveries, p50_ms, p99_ms,
//                    max_ms, elapsed_s, per_client_min, per_client_max,
//                    open, closed_live, cpu_ms, rss_kb, checked}
//   stdin  "quit"    close every socket and exit
const net = require('net');
const readline = require('readline');

if (process.argv[2] === '--merge') {
	// node fanout_clients.js --merge HIST_FILE...: p50 and p99 over all of them
	const fs = require('fs');
	const all = new Map();
	let total = 0;
	for (const f of process.argv.slice(3))
		for (const [b, c] of Object.entries(JSON.parse(fs.readFileSync(f, 'utf8')))) {
			all.set(Number(b), (all.get(Number(b)) || 0) + c);
			total += c;
		}
	const keys = [...all.keys()].sort((a, b) => a - b);
	const at = (p) => {
		const rank = Math.max(1, Math.ceil(total * p / 100));
		let acc = 0;
		for (const b of keys) {
			acc += all.get(b);
			if (acc >= rank) return ((b + 0.5) * 0.1).toFixed(1);
		}
		return 'nan';
	};
	console.log(`${total} ${at(50)} ${at(99)}`);
	process.exit(0);
}
const [portArg, modelName, nArg] = process.argv.slice(2);
if (!portArg || !modelName || !nArg) {
	console.error('usage: node fanout_clients.js PORT MODEL N');
	process.exit(2);
}
const port = Number(portArg);
const n = Number(nArg);
const syncKeys = Number(process.env.FANOUT_SYNC_KEYS || 0);
const deadlineMs = Number(process.env.FANOUT_DEADLINE_MS || 120000);
const idPrefix = process.env.FANOUT_ID || `F${process.pid}-`;
const checkEvery = Number(process.env.CHECK_EVERY || 1000);
const host = process.env.FANOUT_HOST || '127.0.0.1';

const now = () => performance.timeOrigin + performance.now();
const BUCKET = 0.1;
const NBUCKETS = 600000;		/* 60 s */
let hist = new Uint32Array(NBUCKETS);
let deliveries = 0;
let histMax = 0;
let windowStart = now();
let cpuStart = process.cpuUsage();
let checked = 0;
let lineNo = 0;
const clients = [];
let done = 0;
let reported = false;

function fail(why) {
	console.error(`fanout_clients: ${why}`);
	process.exit(1);
}

function checkUpdate(msg, line) {
	if (!Array.isArray(msg) || !Array.isArray(msg[0]) || typeof msg[0][0] !== 'string' ||
		typeof msg[1] !== 'number' || typeof msg[2] !== 'string')
		fail(`not an update of a key/value model: ${line.slice(0, 200)}`);
	checked++;
}

function finish(c, state, reason) {
	if (c.state !== 'waiting')
		return;
	c.state = state;
	c.reason = reason;
	c.syncMs = now() - c.t0;
	done++;
	if (done === n)
		reportSynced();
}

/* A live line, data[from, nl): [[key,value],ts,"source"] */
function onLive(c, data, from, nl) {
	const end = data.lastIndexOf(44 /* , */, nl);
	const start = data.lastIndexOf(44, end - 1);
	if (start < from)
		fail(`not an update: ${data.toString('utf8', from, nl).slice(0, 200)}`);
	const ts = Number(data.latin1Slice(start + 1, end));
	if (++lineNo % checkEvery === 0) {
		const line = data.toString('utf8', from, nl);
		const msg = JSON.parse(line);
		checkUpdate(msg, line);
		if (msg[1] !== ts)
			fail(`timestamp read ${ts}, parsed ${msg[1]}`);
	}
	const lat = now() - ts;
	let b = Math.floor(lat / BUCKET);
	if (b < 0) b = 0;
	if (b >= NBUCKETS) b = NBUCKETS - 1;
	hist[b]++;
	if (lat > histMax) histMax = lat;
	deliveries++;
	c.live++;
}

/* A history line, data[from, nl): counted; the first lines of each
 * client and one in CHECK_EVERY parsed and checked */
function onHistory(c, data, from, nl) {
	if (!c.header)
		fail('an update before the header');
	if (c.nupd < 3 || ++lineNo % checkEvery === 0) {
		const line = data.toString('utf8', from, nl);
		checkUpdate(JSON.parse(line), line);
	}
	c.nupd++;
}

function onLine(c, line) {
	let msg;
	try {
		msg = JSON.parse(line);
	} catch (e) {
		fail(`invalid JSON from the server: ${line.slice(0, 200)}`);
	}
	if (msg === 'SYNC') {
		if (!c.header)
			fail('"SYNC" before the header');
		if (syncKeys && c.nupd !== syncKeys) {
			finish(c, 'refused', `synced with ${c.nupd} updates, expected ${syncKeys}`);
			c.sock.destroy();
			return;
		}
		finish(c, 'synced');
		c.state = 'synced';
	} else if (msg && typeof msg === 'object' && !Array.isArray(msg)) {
		if (c.header || typeof msg.id !== 'string' || typeof msg.clock !== 'object')
			fail(`unexpected header: ${line.slice(0, 200)}`);
		c.header = true;
		// as the reference: on the server's header our history (none), then "SYNC"
		c.sock.write('"SYNC"\n');
	}
}

function open(i) {
	const c = { i, state: 'waiting', header: false, nupd: 0, live: 0, buf: null, t0: now() };
	clients.push(c);
	const sock = net.connect(port, host);
	c.sock = sock;
	sock.setNoDelay(true);
	sock.on('connect', () => { c.connected = true; });
	sock.write(JSON.stringify({ id: `${idPrefix}${i}`, clock: {}, meta: modelName }) + '\n');
	sock.on('data', (chunk) => {
		const data = c.buf ? Buffer.concat([c.buf, chunk]) : chunk;
		let from = 0;
		let nl;
		while ((nl = data.indexOf(10 /* \n */, from)) >= 0) {
			if (c.state === 'synced')
				onLive(c, data, from, nl);
			else if (data[from] === 91 /* [ */)
				onHistory(c, data, from, nl);
			else
				onLine(c, data.toString('utf8', from, nl));
			from = nl + 1;
		}
		c.buf = from < data.length ? Buffer.from(data.subarray(from)) : null;
	});
	sock.on('error', (e) => { c.err = e.code || e.message; });
	sock.on('close', () => {
		if (c.state === 'synced')
			c.state = 'closed_live';
		else
			finish(c, 'refused', c.err || (c.header ? 'closed after the header' : 'closed'));
	});
}

function pct(p) {
	let total = 0;
	for (let b = 0; b < NBUCKETS; b++) total += hist[b];
	if (total === 0) return null;
	const rank = Math.max(1, Math.ceil(total * p / 100));
	let acc = 0;
	for (let b = 0; b < NBUCKETS; b++) {
		acc += hist[b];
		if (acc >= rank) return (b + 0.5) * BUCKET;
	}
	return null;
}

function reportSynced() {
	if (reported) return;
	reported = true;
	clearTimeout(deadline);
	const reasons = {};
	let synced = 0, refused = 0, stalled = 0, closedAfterSync = 0;
	const times = [];
	let kmin = Infinity, kmax = 0;
	for (const c of clients) {
		if (c.state === 'synced') {
			synced++;
			times.push(c.syncMs);
			kmin = Math.min(kmin, c.nupd);
			kmax = Math.max(kmax, c.nupd);
		} else if (c.state === 'closed_live') {
			closedAfterSync++;
		} else if (c.state === 'refused') {
			refused++;
			reasons[c.reason] = (reasons[c.reason] || 0) + 1;
		} else if (c.state === 'waiting') {
			stalled++;
			const r = c.header ? 'header received, no SYNC'
				: c.connected ? 'connected, header sent, nothing received' : 'not connected';
			reasons[r] = (reasons[r] || 0) + 1;
		}
	}
	times.sort((a, b) => a - b);
	console.log(JSON.stringify({
		event: 'synced', n, synced, refused, stalled, closed_after_sync: closedAfterSync, reasons,
		sync_ms_max: times.length ? times[times.length - 1] : null,
		sync_ms_p50: times.length ? times[Math.ceil(times.length / 2) - 1] : null,
		keys_min: synced ? kmin : null, keys_max: kmax,
		stalled_ids: clients.filter((c) => c.state === 'waiting').slice(0, 20).map((c) => `${idPrefix}${c.i}`),
	}));
}

const deadline = setTimeout(reportSynced, deadlineMs);
for (let i = 0; i < n; i++)
	open(i);

readline.createInterface({ input: process.stdin }).on('line', (cmd) => {
	cmd = cmd.trim();
	if (cmd === 'reset') {
		hist = new Uint32Array(NBUCKETS);
		deliveries = 0;
		histMax = 0;
		windowStart = now();
		cpuStart = process.cpuUsage();
		for (const c of clients) c.live = 0;
		console.log(JSON.stringify({ event: 'reset' }));
	} else if (cmd.startsWith('report')) {
		const file = cmd.split(/\s+/)[1];
		if (file) {
			const nz = {};
			for (let b = 0; b < NBUCKETS; b++) if (hist[b]) nz[b] = hist[b];
			require('fs').writeFileSync(file, JSON.stringify(nz));
		}
		const cpu = process.cpuUsage(cpuStart);
		let pmin = Infinity, pmax = 0, openCount = 0, closedLive = 0;
		for (const c of clients) {
			if (c.state === 'synced') {
				openCount++;
				pmin = Math.min(pmin, c.live);
				pmax = Math.max(pmax, c.live);
			} else if (c.state === 'closed_live')
				closedLive++;
		}
		console.log(JSON.stringify({
			event: 'report', deliveries, p50_ms: pct(50), p99_ms: pct(99), max_ms: histMax,
			elapsed_s: (now() - windowStart) / 1000,
			per_client_min: openCount ? pmin : null, per_client_max: pmax,
			open: openCount, closed_live: closedLive,
			cpu_ms: (cpu.user + cpu.system) / 1000,
			rss_kb: Math.round(process.memoryUsage().rss / 1024), checked,
		}));
	} else if (cmd === 'quit') {
		for (const c of clients) c.sock.destroy();
		process.exit(0);
	}
});
