'use strict';
// test/soak/js_churn.js: JavaScript peers that connect and disconnect
// continually, for the soak test (soak.sh).
//
// SLOTS unmodified scuttlebutt Models (ids JSSOAK-<slot>, kept across
// connections, as a browser keeps its id and state when it reconnects)
// each loop: dial the next server's listener (round robin over the
// servers given), wait for "sync", write one key of its own, stay
// connected HOLD_MIN..HOLD_MAX ms receiving live updates, end the
// connection, wait a moment, and dial again.  Every SLOTS-th cycle the
// connection is instead destroyed abruptly (a reset, not an orderly end).
//
// The counters, per server, are written as JSON to the output file after
// every change and once more at exit: connects attempted, synced (the
// server's "SYNC" arrived), ended (closed by us with end()), reset (closed
// by us with destroy()), errors (socket errors, or closed before sync by
// the other side), open (connections currently open).
//
// On SIGTERM every slot stops once its current connection is closed, and
// it exits.  With SOAK_JS_MODE=final it instead makes one client per
// server that syncs from scratch and writes its state (toJSON()) to
// <out>.final.<server>.json.
//
// Usage: [SOAK_JS_MODE=final] node js_churn.js <out.json> <model> <name:port>...

const Model = require('scuttlebutt/model');
const net = require('net');
const fs = require('fs');

const out = process.argv[2];
const modelName = process.argv[3];
const servers = process.argv.slice(4).map((s) => {
	const [name, port] = s.split(':');
	return { name, port: Number(port) };
});
const SLOTS = Number(process.env.SOAK_JS_SLOTS || 6);
const HOLD_MIN = Number(process.env.SOAK_JS_HOLD_MIN_MS || 500);
const HOLD_MAX = Number(process.env.SOAK_JS_HOLD_MAX_MS || 4000);
const PAUSE_MS = Number(process.env.SOAK_JS_PAUSE_MS || 300);
const SYNC_TIMEOUT_MS = 30000;

const counts = {};
for (const s of servers)
	counts[s.name] = { connects: 0, synced: 0, ended: 0, reset: 0, errors: 0, open: 0, writes: 0 };
let stopping = false;

function save() {
	fs.writeFileSync(out + '.tmp', JSON.stringify(counts));
	fs.renameSync(out + '.tmp', out);
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

// One connection of a slot's model to server s; resolves when closed.
function oneConnection(model, s, cycle, slot) {
	return new Promise((resolve) => {
		const c = counts[s.name];
		const socket = net.connect(s.port, '127.0.0.1');
		const stream = model.createStream({ meta: modelName });
		let synced = false, done = false, holdTimer = null;
		c.connects++; c.open++; save();
		const finish = (how) => {
			if (done) return;
			done = true;
			clearTimeout(holdTimer); clearTimeout(syncTimer);
			c.open--;
			c[how]++;
			save();
			resolve();
		};
		const syncTimer = setTimeout(() => { socket.destroy(); finish('errors'); }, SYNC_TIMEOUT_MS);
		socket.on('error', () => { socket.destroy(); finish('errors'); });
		socket.on('close', () => finish(synced ? 'ended' : 'errors'));
		stream.on('error', () => { socket.destroy(); finish('errors'); });
		socket.pipe(stream).pipe(socket);
		stream.on('sync', () => {
			synced = true;
			clearTimeout(syncTimer);
			c.synced++;
			model.set(`js${slot}`, { cycle, at: s.name });
			c.writes++;
			save();
			const hold = stopping ? 0 : HOLD_MIN + Math.floor(Math.random() * (HOLD_MAX - HOLD_MIN));
			holdTimer = setTimeout(() => {
				if (cycle % SLOTS === slot) {
					// an abrupt close: the server sees a reset or EOF
					// without the stream's end
					socket.destroy();
					finish('reset');
				} else {
					// an orderly end: our side ends; the server's
					// end follows
					socket.end();
					setTimeout(() => { socket.destroy(); finish('ended'); }, 5000);
				}
			}, hold);
		});
	});
}

async function slotLoop(slot) {
	const model = new Model(`JSSOAK-${slot}`);
	let cycle = 0;
	await sleep(slot * 150);
	while (!stopping) {
		const s = servers[(slot + cycle) % servers.length];
		await oneConnection(model, s, cycle, slot);
		cycle++;
		if (!stopping) await sleep(PAUSE_MS + Math.floor(Math.random() * PAUSE_MS));
	}
}

// A fresh client syncs from server s; resolves with its toJSON().
function finalState(s) {
	return new Promise((resolve, reject) => {
		const model = new Model(`JSSOAK-final-${s.name}`);
		const socket = net.connect(s.port, '127.0.0.1');
		const stream = model.createStream({ meta: modelName });
		const t = setTimeout(() => reject(new Error(`no sync from ${s.name}`)), SYNC_TIMEOUT_MS);
		socket.on('error', reject);
		socket.pipe(stream).pipe(socket);
		stream.on('sync', () => {
			clearTimeout(t);
			const state = model.toJSON();
			socket.end();
			socket.on('close', () => resolve(state));
		});
	});
}

async function main() {
	if (process.env.SOAK_JS_MODE === 'final') {
		for (const s of servers) {
			const state = await finalState(s);
			fs.writeFileSync(`${out}.final.${s.name}.json`, JSON.stringify(state));
		}
		process.exit(0);
	}
	save();
	const loops = [];
	for (let i = 0; i < SLOTS; i++) loops.push(slotLoop(i));
	process.on('SIGTERM', () => { stopping = true; });
	await Promise.all(loops);
	save();
	process.exit(0);
}

main().catch((e) => { console.error(e); process.exit(1); });
