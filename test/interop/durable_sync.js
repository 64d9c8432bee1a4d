'use strict';
// Durable sync: an unmodified reference Model connected to the worker's
// listener gets its "sync" event only once the database has committed
// what the client sent before its own "SYNC".
//
// While a session holds scuttlebutt.updates locked (so the worker cannot
// commit the client's updates), the client must not get "sync"; once the
// lock is gone it gets it, and then the database holds every update the
// client had (read right in the "sync" handler's turn).  Without the
// wait the worker sends its "SYNC" as soon as its own (empty) history is
// out, and the client's writes may still be lost.
//
// Usage: node durable_sync.js <connstr> <listener port>

const net = require('net');
const { spawn } = require('child_process');
const h = require('./lib/harness');
const { lit } = h;

const connstr = process.argv[2];
const port = Number(process.argv[3]);
const db = new h.Db(connstr);
const N = 2000;
const MODEL = 'durable';

function sleep(ms) {
	return new Promise((resolve) => setTimeout(resolve, ms));
}

// A psql holding scuttlebutt.updates locked until release()
function lockUpdates() {
	const psql = spawn('psql', ['-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', connstr], { stdio: ['pipe', 'pipe', 'inherit'] });
	const locked = new Promise((resolve, reject) => {
		psql.stdout.on('data', (d) => { if (String(d).includes('locked')) resolve(); });
		psql.on('exit', (code) => reject(new Error(`psql exited (${code}) before the lock was taken`)));
	});
	psql.stdin.write("BEGIN; LOCK TABLE scuttlebutt.updates IN EXCLUSIVE MODE; SELECT 'locked';\n");
	const release = () => new Promise((resolve) => {
		psql.on('exit', resolve);
		psql.stdin.end('COMMIT;\n');
	});
	return { locked, release };
}

h.main(async () => {
	db.exec(`SELECT scuttlebutt.create_model(${lit(MODEL)});`);
	const sb = h.newReference('model', 'JS-durable');
	for (let i = 0; i < N; i++) sb.set(`k${i}`, i);

	const t0 = Date.now();
	const lock = lockUpdates();
	await lock.locked;
	h.note(`locked after ${Date.now() - t0} ms`);

	let syncedAt = null;
	let countAtSync = null;
	const sock = net.connect(port, '127.0.0.1');
	const stream = sb.createStream({ meta: MODEL });
	const synced = new Promise((resolve) => stream.on('sync', () => {
		syncedAt = Date.now();
		countAtSync = Number(db.value(`SELECT count(*) FROM scuttlebutt.keys(${lit(MODEL)})`));
		resolve();
	}));
	sock.pipe(stream).pipe(sock);

	await sleep(1500);
	h.ok(syncedAt === null, 'no "sync" while the database cannot commit what the client sent',
		syncedAt === null ? '' : `"sync" came with ${countAtSync} of ${N} keys in the database`);

	const releasedAt = Date.now();
	await lock.release();
	h.note(`released after ${Date.now() - releasedAt} ms`);
	await Promise.race([synced, new Promise((resolve) => setTimeout(resolve, 30000).unref())]);
	h.note(`"sync" ${syncedAt === null ? 'not seen' : (syncedAt - releasedAt) + ' ms after the release'}`);
	h.ok(syncedAt !== null && syncedAt >= releasedAt, '"sync" comes once the lock is gone');
	h.is(countAtSync, N, 'at "sync" the database holds every update the client sent before its "SYNC"');

	// live writes after the sync still reach the database
	sb.set('after', 'sync');
	let after = '';
	for (let i = 0; i < 300 && after !== '"sync"'; i++) {
		after = db.value(`SELECT coalesce(scuttlebutt.get(${lit(MODEL)}, 'after')::text, '')`);
		if (after !== '"sync"') await sleep(100);
	}
	h.is(after, '"sync"', 'a write after the sync reaches the database');
	sock.destroy();
});
