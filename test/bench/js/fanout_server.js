'use strict';
// test/bench/js/fanout_server.js: the JavaScript baseline of fanout.sh.  A
// reference scuttlebutt Model loaded from a dump (the lines of
// scuttlebutt.export(): the same keys, values, timestamps and source as
// the database), served over TCP to every connection as the scuttlebutt
// README shows:
//
//   net.createServer(s => s.pipe(model.createStream()).pipe(s))
//
// and written to in this process, as the database is by its SQL writer.
//
//   node fanout_server.js DUMP_FILE [PORT]
//
// Prints "READY <port> <keys>" once loaded; then reads commands on stdin:
//   status                  -> {"event":"status","streams":n,"synced":n}
//                              (streams open; of those, how many emitted
//                              'sync': both "SYNC"s exchanged, so a load
//                              client spoke the protocol as the reference
//                              expects)
//   write RATE SECS KEYS    -> model.set('k' + random(1..KEYS), {v, s}) at
//                              RATE a second for SECS, in batches every
//                              10 ms (a batch behind schedule catches up
//                              by 100 ms worth at most); then
//                              {"event":"wrote","n":n,"s":secs}
const fs = require('fs');
const net = require('net');
const readline = require('readline');
const Model = require('scuttlebutt/model');

const [file, port] = process.argv.slice(2);
if (!file) {
	console.error('usage: node fanout_server.js DUMP_FILE [PORT]');
	process.exit(2);
}

const model = new Model();
model.setMaxListeners(0);
for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
	if (line === '') continue;
	const msg = JSON.parse(line);
	if (Array.isArray(msg)) model._update(msg);
}

let streams = 0;
let synced = 0;
const server = net.createServer((s) => {
	const stream = model.createStream();
	let isSynced = false;
	streams++;
	s.pipe(stream).pipe(s);
	stream.once('sync', () => { isSynced = true; synced++; });
	const gone = () => {
		if (stream.gone) return;
		stream.gone = true;
		streams--;
		if (isSynced) synced--;
		stream.destroy();
		s.destroy();
	};
	stream.on('error', gone);
	s.on('error', gone);
	s.on('close', gone);
});
server.maxConnections = 1 << 20;
server.listen({ port: Number(port) || 0, host: '127.0.0.1', backlog: 65535 }, () => {
	console.log(`READY ${server.address().port} ${Object.keys(model.store).length}`);
});

function write(rate, secs, keys) {
	const t0 = Date.now();
	let n = 0;
	const tick = () => {
		const elapsed = Date.now() - t0;
		if (elapsed >= secs * 1000) {
			console.log(JSON.stringify({ event: 'wrote', n, s: elapsed / 1000 }));
			return;
		}
		/* behind schedule (the loop was busy sending): catch up by at
		 * most 100 ms worth, so the rate achieved is what it sustains */
		const due = Math.floor(rate * elapsed / 1000);
		const until = Math.min(due, n + Math.ceil(rate / 10));
		for (; n < until; n++) {
			const k = 1 + Math.floor(Math.random() * keys);
			model.set(`k${k}`, { v: n, s: `value ${n}` });
		}
		setTimeout(tick, 10 - (elapsed % 10));
	};
	tick();
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
	const [cmd, ...args] = line.trim().split(/\s+/);
	if (cmd === 'status')
		console.log(JSON.stringify({ event: 'status', streams, synced }));
	else if (cmd === 'write')
		write(Number(args[0]), Number(args[1]), Number(args[2]));
}).on('close', () => process.exit(0));
