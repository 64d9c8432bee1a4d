'use strict';
// The JavaScript peers of the mesh test (test/t/160_fault_mesh.pl).  Each
// peer is an unmodified scuttlebutt Model ("kv"), ReliableEventEmitter
// ("ev") and r-value ("val"), all with the peer's id as their source, each
// connected by its own TCP stream to one server's listener (through the
// test's fault proxy), reconnecting whenever its connection ends.  Until
// told to stop, every peer writes at random (a key of kv, an event, the
// value) and appends each write, with the timestamp it took, to
// <log dir>/<id>.log, one JSON object per line.
//
// Usage: node mesh_peers.js <seed> <log dir> <id>:<port> [<id>:<port> ...]
// Commands on stdin, one per line, each answered by one JSON line:
//   stop    stop writing: {"stopped":{"<id>":<writes>,...}}
//   state   {"state":{"<id>":{"kv":toJSON(),"ev":[[event,data,ts,source],...],
//           "val":get(),"clock":{"kv":sources,...},"live":<connections up>}}}

const fs = require('fs');
const net = require('net');
const readline = require('readline');
const Model = require('scuttlebutt/model');
const Events = require('scuttlebutt/events');
const Value = require('r-value');
// mulberry32, seeded: a seed gives the same writes
const { rng } = require('./lib/harness');

const [seedArg, logDir, ...specs] = process.argv.slice(2);

const rand = rng(Number(seedArg) || 1);

const KEYS = 20;
let writing = true;
const peers = specs.map((spec) => {
	const [id, port] = spec.split(':');
	return {
		id,
		port: Number(port),
		models: { kv: new Model(id), ev: new Events(id), val: new Value(id) },
		live: {},
		n: 0,
		log: fs.openSync(`${logDir}/${id}.log`, 'a'),
	};
});

// Keeps one stream of model <name> of peer <p> connected
function connect(p, name) {
	const model = p.models[name];
	const socket = net.connect(p.port, '127.0.0.1');
	const stream = model.createStream({ meta: name });
	let ended = false;
	const again = () => {
		if (ended) return;
		ended = true;
		p.live[name] = false;
		socket.destroy();
		stream.destroy && stream.destroy();
		setTimeout(() => connect(p, name), 100 + Math.floor(rand() * 200));
	};
	socket.on('error', again);
	socket.on('close', again);
	stream.on('error', again);
	stream.on('end', again);
	stream.on('sync', () => { p.live[name] = true; });
	socket.pipe(stream).pipe(socket);
}

// One random write of peer <p>, logged with its timestamp
function write(p) {
	const n = ++p.n;
	const v = { w: p.id, n };
	const r = rand();
	let rec;
	if (r < 0.5) {
		const key = 'k' + Math.floor(rand() * KEYS);
		p.models.kv.set(key, v);
		rec = { m: 'kv', k: key, v, ts: p.models.kv.sources[p.id] };
	} else if (r < 0.8) {
		p.models.ev.emit('e', v);
		rec = { m: 'ev', k: 'e', v, ts: p.models.ev.sources[p.id] };
	} else {
		p.models.val.set(v);
		rec = { m: 'val', v, ts: p.models.val.sources[p.id] };
	}
	rec.src = p.id;
	rec.at = Date.now();
	fs.writeSync(p.log, JSON.stringify(rec) + '\n');
}

function tick() {
	if (!writing) return;
	for (const p of peers)
		if (rand() < 0.5) write(p);
	setTimeout(tick, 100 + Math.floor(rand() * 200));
}

function events(ev) {
	return ev.history({}).map((u) => [u[0][0], u[0][1] === undefined ? null : u[0][1], u[1], u[2]]);
}

function state() {
	const out = {};
	for (const p of peers) {
		const m = p.models;
		out[p.id] = {
			kv: m.kv.toJSON(),
			ev: events(m.ev),
			val: m.val.get(),
			clock: { kv: m.kv.sources, ev: m.ev.sources, val: m.val.sources },
			live: Object.values(p.live).filter((x) => x).length,
		};
	}
	return out;
}

for (const p of peers)
	for (const name of Object.keys(p.models))
		connect(p, name);
setTimeout(tick, 200);

readline.createInterface({ input: process.stdin }).on('line', (line) => {
	const cmd = line.trim();
	if (cmd === 'stop') {
		writing = false;
		const counts = {};
		for (const p of peers) {
			counts[p.id] = p.n;
			fs.fsyncSync(p.log);
		}
		process.stdout.write(JSON.stringify({ stopped: counts }) + '\n');
	} else if (cmd === 'state') {
		process.stdout.write(JSON.stringify({ state: state() }) + '\n');
	}
}).on('close', () => process.exit(0));
