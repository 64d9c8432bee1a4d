'use strict';
// test/bench/js/model_server.js: the JavaScript baseline server.  A
// reference scuttlebutt Model loaded from a dump (the lines of
// scuttlebutt.export(): header, updates, "SYNC"), so it holds exactly the
// updates the database holds (same keys, values, timestamps and source),
// served to every connection as the scuttlebutt README shows:
//
//   net.createServer(s => s.pipe(model.createStream()).pipe(s))
//
//   node model_server.js DUMP_FILE [PORT]
//
// Listens on 127.0.0.1 (PORT, default: any free port) and prints
// "READY <port> <keys>" once loaded.
const fs = require('fs');
const net = require('net');
const Model = require('scuttlebutt/model');

const [file, port] = process.argv.slice(2);
if (!file) {
	console.error('usage: node model_server.js DUMP_FILE [PORT]');
	process.exit(2);
}

const model = new Model();
for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
	if (line === '') continue;
	const msg = JSON.parse(line);
	if (Array.isArray(msg)) model._update(msg);
}

const server = net.createServer((s) => {
	const stream = model.createStream();
	s.pipe(stream).pipe(s);
	stream.on('error', () => s.destroy());
	s.on('error', () => s.destroy());
});
server.listen(Number(port) || 0, '127.0.0.1', () => {
	console.log(`READY ${server.address().port} ${Object.keys(model.store).length}`);
});
