'use strict';
// The demo's JavaScript peer: an unmodified scuttlebutt Model connects to a
// database's scuttlebutt listener (meta names the model), writes a key of
// its own, and waits until a key written elsewhere ("from_b") arrives live.
const Model = require('scuttlebutt/model');
const net = require('net');

const [host, port] = [process.argv[2], Number(process.argv[3])];
const js = new Model('JSPEER');
const socket = net.connect(port, host);
const stream = js.createStream({ meta: 'users' });
socket.pipe(stream).pipe(socket);
stream.on('error', (e) => { console.error('stream error', e); process.exit(1); });

stream.on('sync', () => {
	console.log('  JS peer synced with the database: ' + JSON.stringify(js.toJSON()));
	js.set('dave', { name: 'Dave', from: 'node.js' });
	console.log('  JS peer wrote dave; waiting for a write made on server B');
	process.stdout.write('READY\n');
});
js.on('update', (change, ts, source) => {
	if (change[0] === 'from_b') {
		console.log(`  JS peer received live: ${JSON.stringify(change)} (source ${source})`);
		console.log('  JS peer holds: ' + JSON.stringify(js.toJSON()));
		setTimeout(() => process.exit(0), 100);
	}
});
setTimeout(() => { console.error('JS peer: timed out'); process.exit(1); }, 20000);
