'use strict';
// test/bench/js/sync_client.js: one initial sync of an empty, unmodified
// scuttlebutt Model from a stream server (the database's listener or
// model_server.js), timed from just before net.connect() to the stream's
// 'sync' event (both "SYNC"s exchanged: every update of the server's
// history received and applied).
//
//   node sync_client.js PORT MODEL EXPECTED_KEYS [HOST]
//
// Prints one JSON line {"ms", "connect_ms", "keys", "bytes_in", "cpu_ms"}
// (cpu_ms: this process's user + system CPU over the same interval) and exits 0
// when the Model holds EXPECTED_KEYS keys at 'sync'; exits 1 otherwise
// (wrong count, stream error, or no sync within SYNC_TIMEOUT_MS, default
// 600,000).  With SYNC_TLS_CA (a CA file), the client dials with
// tls.connect, verifying the server's certificate against it for the name
// "localhost", and the time includes the TLS handshake.
const fs = require('fs');
const net = require('net');
const tls = require('tls');
const Model = require('scuttlebutt/model');

const [port, modelName, expected, host] = process.argv.slice(2);
if (!port || !modelName || !expected) {
	console.error('usage: node sync_client.js PORT MODEL EXPECTED_KEYS [HOST]');
	process.exit(2);
}
const timeoutMs = Number(process.env.SYNC_TIMEOUT_MS) || 600000;

const ca = process.env.SYNC_TLS_CA;
const caPem = ca ? fs.readFileSync(ca) : null;
const model = new Model();
const cpu0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
const ms = () => Number(process.hrtime.bigint() - t0) / 1e6;
let connectMs = null;

const socket = ca
	? tls.connect({ port: Number(port), host: host || '127.0.0.1', servername: 'localhost', ca: caPem })
	: net.connect(Number(port), host || '127.0.0.1');
const stream = model.createStream({ meta: modelName });
socket.on(ca ? 'secureConnect' : 'connect', () => { connectMs = ms(); });
socket.pipe(stream).pipe(socket);

function fail(why) {
	console.error(`sync_client: ${why}`);
	process.exit(1);
}
const timer = setTimeout(() => fail(`no sync within ${timeoutMs} ms`), timeoutMs);
socket.on('error', (e) => fail(`socket error: ${e.message}`));
stream.on('error', () => fail('stream error'));
socket.on('close', () => fail('connection closed before sync'));

stream.once('sync', () => {
	const elapsed = ms();
	const cpu = process.cpuUsage(cpu0);
	clearTimeout(timer);
	const keys = Object.keys(model.store).length;
	socket.removeAllListeners('close');
	console.log(JSON.stringify({ ms: elapsed, connect_ms: connectMs, keys, bytes_in: socket.bytesRead, cpu_ms: (cpu.user + cpu.system) / 1000 }));
	socket.destroy();
	if (keys !== Number(expected)) fail(`holds ${keys} keys at sync, expected ${expected}`);
	process.exit(0);
});
