'use strict';
// An unmodified reference Model connecting to the worker's listener with a
// token in its header's meta, as an app does:
//
//     sock.pipe(sb.createStream({meta: {model: name, token: jwt}})).pipe(sock)
//
// expect = accept: the connection syncs both ways (the database's key
// reaches the client, the client's key reaches the table) and peer_status
// shows it with method `method` and role `role`.
// expect = refuse: the worker closes the connection without sending a
// byte (not even its header), and the table gets nothing of the client.
//
// Usage: node stream_token.js <connstr> <listener port> <model> <token or ->
//            accept <role> <method> | refuse

const h = require('./lib/harness');
const st = require('./lib/stream');
const { lit } = h;

const connstr = process.argv[2];
const port = Number(process.argv[3]);
const name = process.argv[4];
const token = process.argv[5] === '-' ? undefined : process.argv[5];
const expect = process.argv[6];
const role = process.argv[7];
const method = process.argv[8];
const db = new h.Db(connstr);
const adb = new st.AsyncDb(connstr);
const Q = st.modelQueries(db, adb);

h.main(async () => {
	const nodeId = db.value('SELECT scuttlebutt.node_id()');
	const dbTs = Number(db.value(`SELECT scuttlebutt.set(${lit(name)}, 'from_db', '"db"')`));
	const sb = h.newReference('model', `JS-token-${name}-${process.pid}`);
	sb.set('from_js', 'js');
	const meta = { model: name };
	if (token !== undefined) meta.token = token;
	const peer = await st.connectClient(port, sb, { meta }, 'token client');

	if (expect === 'accept') {
		h.ok(await st.until(() => st.hasSeen(sb, nodeId, dbTs)), `${name}: the database's key reaches the client`);
		h.ok(await Q.pollSeen(name, sb.id, sb.sources[sb.id]), `${name}: the client's key reaches the table`);
		const rows = await adb.rows(`SELECT role, method FROM scuttlebutt.peer_status
			WHERE model = ${lit(name)} AND remote_id = ${lit(sb.id)}`);
		h.is(rows.length === 1 ? `${rows[0].role}/${rows[0].method}` : `${rows.length} rows`,
			`${role}/${method}`, `${name}: peer_status shows the connection's role and method`);
		h.ok(await peer.finish(st.TIMEOUT_MS), `${name}: the connection closes cleanly`);
	} else {
		h.ok(await peer.waitClosed(st.TIMEOUT_MS), `${name}: the worker closes the connection`);
		h.is(peer.bytes(), 0, `${name}: the worker sent nothing (no header)`);
		h.is(peer.header, undefined, `${name}: the client got no header`);
		const held = db.value(`SELECT count(*) FROM scuttlebutt.keys(${lit(name)}) k WHERE k = 'from_js'`);
		h.is(held, '0', `${name}: nothing of the client reached the table`);
	}
});
