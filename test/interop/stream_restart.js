'use strict';
// A peer added with add_stream_peer() survives a restart of the server:
// the worker dials the reference server again as soon as it is back, and
// replication goes on both ways with nothing lost.
//
// Usage: node stream_restart.js <connstr> <free port> <data directory> <server log file>
// (restarts the server with pg_ctl -D <data directory> -l <log file> -w -m fast restart)

const { spawn } = require('child_process');
const h = require('./lib/harness');
const st = require('./lib/stream');
const { lit } = h;

const connstr = process.argv[2];
const port = Number(process.argv[3]);
const datadir = process.argv[4];
const logfile = process.argv[5];
const db = new h.Db(connstr);
const adb = new st.AsyncDb(connstr);
const V = st.VALUES;
const Q = st.modelQueries(db, adb);

// What a correct worker needs to dial again once the server accepts
// connections: reading its peers (milliseconds); reconnect_min is 50 ms.
const REDIAL_MS = 5000;

function pgCtlRestart() {
	return new Promise((resolve, reject) => {
		const p = spawn('pg_ctl', ['-D', datadir, '-l', logfile, '-w', '-m', 'fast', 'restart'], { stdio: ['ignore', 'pipe', 'pipe'] });
		let err = '';
		p.stderr.on('data', (d) => { err += d; });
		p.on('error', reject);
		p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`pg_ctl restart exited ${code}: ${err}`))));
	});
}

h.main(async () => {
	if (!(port > 0 && datadir && logfile))
		throw new Error('usage: node stream_restart.js <connstr> <port> <datadir> <logfile>');
	const nodeId = db.value('SELECT scuttlebutt.node_id()');
	const name = 'restart_model';
	const label = 'peer across a restart';
	db.exec(`SELECT scuttlebutt.create_model(${lit(name)});`);
	db.value(st.KINDS.model.sql(name, 'db', V[0]));
	const sb = h.newReference('model', 'JS-restart');
	sb.set('js', V[1]);
	const server = await st.startServer(port, sb, {}, label);
	const peerId = Number(await adb.value(`SELECT scuttlebutt.add_stream_peer(${lit(name)}, '127.0.0.1', ${port})`));
	h.ok(await st.until(() => server.peers.length > 0 && server.peers[0].synced), `${label}: synced before the restart`);
	h.ok(await adb.waitForSync(name), `${label}: wait_for_sync() is true before the restart`);
	// a write just before the restart
	const tsJs = (sb.set('before_restart', V[2]), sb.sources[sb.id]);
	h.ok(await Q.pollSeen(name, sb.id, tsJs), `${label}: a write made just before the restart is in the table`);

	await pgCtlRestart();
	const back = Date.now();
	h.ok(await st.until(() => server.peers[0].closed), `${label}: the first connection closed with the server`);
	const redialed = await st.until(() => server.peers.length > 1, REDIAL_MS);
	h.ok(redialed, `${label}: the worker dials again within ${REDIAL_MS / 1000} s of the server accepting connections`,
		`${server.peers.length > 1 ? 'it did, later' : 'no connection yet'} (${Date.now() - back} ms after the restart)`);
	h.ok(await st.until(() => server.peers.length > 1 && server.peers[1].synced), `${label}: the second connection syncs`);
	const second = server.peers[1];

	// both ways after the restart
	const tsDb = Number(await adb.value(st.KINDS.model.sql(name, 'after_restart_db', V[3])));
	h.ok(await st.until(() => st.hasSeen(sb, nodeId, tsDb)), `${label}: a SQL write after the restart reaches the server`);
	sb.set('after_restart_js', V[4]);
	h.ok(await Q.pollSeen(name, sb.id, sb.sources[sb.id]), `${label}: a server write after the restart reaches the table`);
	h.ok(await adb.waitForSync(name), `${label}: wait_for_sync() is true after the restart`);
	Q.compare(label, 'model', name, sb);

	await adb.exec(`SELECT scuttlebutt.remove_peer(${peerId});`);
	h.ok(await second.waitClosed(), `${label}: remove_peer() closes the connection`);
	await new Promise((resolve) => server.close(resolve));
	st.checkRaw(`${label}, second connection`, second);
	h.is(st.fromSource(second.lines(), sb.id).length, 0, `${label}: the server's own updates are never sent back`);
});
