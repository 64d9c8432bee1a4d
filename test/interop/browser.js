'use strict';
// A real browser (Debian's headless Chromium, driven with puppeteer-core)
// loads a page bundled with browserify from the unmodified npm packages
// (test/browser: a scuttlebutt Model over websocket-stream, reconnecting
// as an app does) and replicates a model with the worker's listener.
//
// Usage: node browser.js <connstr> <phase> <options JSON>
// Options: listen (the stream port), http (the page's port; its origin
// http://127.0.0.1:<http> is in scuttlebutt.websocket_origins), dir (a
// directory of the test user's), and per phase:
//   ws: datadir, logfile (for pg_ctl stop / start), secret (HS256 JWT
//     secret): initial sync, live edits both ways with SQL, a Node.js peer
//     over TCP sees the browser's edit through the database and the other
//     way, reconnect after the server restarts (edits made meanwhile on
//     both sides), an origin not listed is refused, a token that expires
//     (model "mt", role "alice": let in, then refused at the next
//     connection, close code 1008);
//   wss: ca (the test CA's certificate; the listener has scuttlebutt.ssl
//     on): a browser without the CA in its NSS database gets no
//     connection; with it (certutil into $HOME/.pki/nssdb) the page syncs
//     over wss and peer_status shows tls.
// Chromium: see test/browser/chromium.js.

const crypto = require('crypto');
const net = require('net');
const path = require('path');
const { spawn } = require('child_process');
const Model = require('scuttlebutt/model');
const chromium = require('../browser/chromium');
const page = require('../browser/page');
const h = require('./lib/harness');
const st = require('./lib/stream');
const { lit } = h;

const connstr = process.argv[2];
const phase = process.argv[3];
const opts = JSON.parse(process.argv[4] || '{}');
const adb = new st.AsyncDb(connstr);
// waits that should take milliseconds; a failure costs this much
const WAIT_MS = 30000;
const origin = `http://127.0.0.1:${opts.http}`;
const browsers = [];

// ---------------------------------------------------------------------
// The browser
// ---------------------------------------------------------------------

async function launch(name, ca) {
	const b = await chromium.launch(path.join(opts.dir, `home-${name}`), { ca, note: h.note, protocolTimeout: WAIT_MS });
	browsers.push(b);
	return b;
}

function open(b, url, model, token, pageOrigin) {
	return chromium.openPage(b, pageOrigin || origin, url, model, token, h.note);
}

// Whether fn(arg) becomes truthy in the page within ms
async function inPage(p, fn, arg, ms) {
	try {
		await p.waitForFunction(fn, { polling: 50, timeout: ms || WAIT_MS }, arg);
		return true;
	} catch (e) {
		return false;
	}
}

const state = (p) => p.evaluate(() => JSON.parse(JSON.stringify(window.app.state)));
const get = (p, k) => p.evaluate((key) => window.app.model.get(key), k);
const set = (p, k, v) => p.evaluate((key, value) => { window.app.model.set(key, value); }, k, v);
const has = (p, k, v) => inPage(p, (a) => JSON.stringify(window.app.model.get(a[0])) === JSON.stringify(a[1]), [k, v]);

// ---------------------------------------------------------------------
// SQL, the server, tokens, a Node.js peer
// ---------------------------------------------------------------------

async function sqlHas(model, key, value, ms) {
	const want = JSON.stringify(value);
	const r = await adb.poll(`SELECT scuttlebutt.get(${lit(model)}, ${lit(key)})::text`,
		(v) => v !== undefined && v !== null && JSON.stringify(JSON.parse(v)) === want, ms || WAIT_MS);
	return r.ok;
}

async function sqlSet(model, key, value) {
	return Number(await adb.value(`SELECT scuttlebutt.set(${lit(model)}, ${lit(key)}, ${lit(JSON.stringify(value))}::jsonb)`));
}

async function errorCount(reason) {
	return Number(await adb.value(`SELECT coalesce(sum(count), 0) FROM scuttlebutt.connection_errors WHERE reason = ${lit(reason)}`));
}

function pgCtl(...args) {
	return new Promise((resolve, reject) => {
		const p = spawn('pg_ctl', ['-D', opts.datadir, '-l', opts.logfile, '-w', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
		let err = '';
		p.stderr.on('data', (d) => { err += d; });
		p.on('error', reject);
		p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`pg_ctl ${args.join(' ')} exited ${code}: ${err}`))));
	});
}

function b64url(x) {
	return Buffer.from(x).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

function jwt(secret, claims) {
	const body = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
	return `${body}.${b64url(crypto.createHmac('sha256', secret).update(body).digest())}`;
}

// The reference Model in Node.js over TCP, as the README's JavaScript app
function nodePeer(model) {
	const sb = new Model(`NODE-${process.pid}`);
	const sock = net.connect(opts.listen, '127.0.0.1');
	const s = sb.createStream({ meta: model });
	const peer = { sb, sock, synced: false };
	s.on('sync', () => { peer.synced = true; });
	s.on('error', () => sock.destroy());
	sock.on('error', () => {});
	sock.pipe(s).pipe(sock);
	return peer;
}

// ---------------------------------------------------------------------
// Phases
// ---------------------------------------------------------------------

async function phaseWs() {
	const m = 'web';
	await adb.exec(`SELECT scuttlebutt.create_model('web');
		SELECT scuttlebutt.set('web', 'alice', '{"name": "Alice"}');
		SELECT scuttlebutt.set('web', 'bob', '{"name": "Bob", "n": [1, 2]}');`);
	const b = await launch('ws');
	h.ok(/Chrom/.test(await b.version()), `the browser is Chromium: ${await b.version()}`);
	const url = `ws://127.0.0.1:${opts.listen}/`;
	const p = await open(b, url, m);

	// initial sync
	h.ok(await inPage(p, () => window.app.state.syncs === 1), 'initial sync: the page\'s stream emits "sync"',
		JSON.stringify(await state(p)));
	h.same(await p.evaluate(() => window.app.model.toJSON()),
		{ alice: { name: 'Alice' }, bob: { name: 'Bob', n: [1, 2] } },
		'initial sync: the keys written in SQL are in the browser\'s Model');
	const rows = await adb.rows(`SELECT websocket, tls, method FROM scuttlebutt.peer_status
		WHERE model = 'web' AND direction = 'in' AND state = 'live'`);
	h.same(rows, [{ websocket: true, tls: false, method: 'trust' }],
		'peer_status shows the browser: a live WebSocket, no TLS');

	// live, both ways
	await set(p, 'from_browser', { by: 'chromium' });
	h.ok(await sqlHas(m, 'from_browser', { by: 'chromium' }), 'live: the browser\'s set() is seen by scuttlebutt.get');
	const browserId = await p.evaluate(() => window.app.model.id);
	const clock = JSON.parse(await adb.value(`SELECT scuttlebutt.clock('web')::text`));
	h.is(clock[browserId], await p.evaluate(() => window.app.model.sources[window.app.model.id]),
		'the database\'s clock holds the browser\'s source at its latest timestamp');
	await sqlSet(m, 'from_sql', 'live');
	h.ok(await has(p, 'from_sql', 'live'), 'live: an SQL set() is seen by the browser');

	// a Node.js peer, through the database
	const peer = nodePeer(m);
	h.ok(await st.until(() => peer.synced, WAIT_MS), 'the Node.js peer syncs over TCP');
	h.ok(await st.until(() => JSON.stringify(peer.sb.get('from_browser')) === '{"by":"chromium"}', WAIT_MS),
		'the Node.js peer holds the browser\'s earlier edit');
	await set(p, 'browser_to_node', 42);
	h.ok(await st.until(() => peer.sb.get('browser_to_node') === 42, WAIT_MS),
		'live: the browser\'s set() reaches the Node.js peer through the database');
	const hist = peer.sb.history().filter((u) => u[0][0] === 'browser_to_node');
	h.ok(hist.length === 1 && hist[0][2] === browserId, 'the Node.js peer has it under the browser\'s source id',
		JSON.stringify(hist));
	peer.sb.set('node_to_browser', ['node', 'js']);
	h.ok(await has(p, 'node_to_browser', ['node', 'js']), 'live: the Node.js peer\'s set() reaches the browser');
	peer.sock.destroy();

	// the server restarts; the page reconnects, as an app would
	await pgCtl('-m', 'fast', 'stop');
	h.ok(await inPage(p, () => !window.app.state.live && window.app.state.closes.length >= 1),
		'restart: the page sees its connection end');
	h.is((await state(p)).closes[0].code, 1001, 'restart: the close frame says the server is going away (1001)');
	await set(p, 'while_down', 'browser');
	await pgCtl('start');
	await sqlSet(m, 'after_restart', 'sql');
	h.ok(await inPage(p, () => window.app.state.syncs === 2), 'restart: the page connects again and syncs',
		JSON.stringify(await state(p)));
	h.ok(await sqlHas(m, 'while_down', 'browser'), 'restart: the edit made in the browser while the server was down reaches SQL');
	h.ok(await has(p, 'after_restart', 'sql'), 'restart: the SQL edit made after the restart reaches the browser');
	h.is(await adb.value(`SELECT scuttlebutt.to_json('web')::text`).then((t) => h.canon(JSON.parse(t))),
		h.canon(await p.evaluate(() => window.app.model.toJSON())), 'restart: the browser and the database hold the same model');
	await p.evaluate(() => window.app.stop());

	// an origin that is not listed
	const refused = await errorCount('origin not allowed');
	const other = await open(b, url, m, null, `http://localhost:${opts.http}`);
	const rose = await adb.poll(`SELECT coalesce(sum(count), 0) FROM scuttlebutt.connection_errors WHERE reason = 'origin not allowed'`,
		(v) => Number(v) > refused, WAIT_MS);
	h.ok(rose.ok, 'a page of an origin not in scuttlebutt.websocket_origins is refused ("origin not allowed")');
	const os = await state(other);
	h.ok(os.opens === 0 && os.syncs === 0, 'that page never had an open WebSocket', JSON.stringify(os));
	await other.evaluate(() => window.app.stop());

	// a token that expires
	// long enough to connect on a busy machine, short enough to wait for
	const exp = Math.floor(Date.now() / 1000) + 5;
	const token = jwt(opts.secret, { role: 'alice', exp });
	const t = await open(b, url, 'mt', token);
	h.ok(await inPage(t, () => window.app.state.syncs === 1), 'token: the page syncs with a token for alice',
		JSON.stringify(await state(t)));
	const trow = await adb.rows(`SELECT role, method FROM scuttlebutt.peer_status
		WHERE model = 'mt' AND direction = 'in' AND state = 'live'`);
	h.same(trow, [{ role: 'alice', method: 'token' }], 'token: peer_status shows alice by token');
	await set(t, 'alice_edit', 1);
	h.ok(await sqlHas('mt', 'alice_edit', 1), 'token: alice\'s edit reaches SQL');
	const authFailed = await errorCount('authentication failed');
	await st.delay(Math.max(0, (exp + 1) * 1000 - Date.now()));
	await t.evaluate(() => window.app.drop());
	h.ok(await inPage(t, () => window.app.state.closes.some((c) => c.code === 1008)),
		'token: once expired, the page\'s next connection is closed with 1008 (policy violation)',
		JSON.stringify(await state(t)));
	const ts = await state(t);
	const c1008 = ts.closes.find((c) => c.code === 1008);
	h.is(c1008 && c1008.reason, '', 'token: the close frame gives the client no reason text');
	h.is(ts.syncs, 1, 'token: no sync after the token expired');
	h.ok((await errorCount('authentication failed')) > authFailed, 'token: counted as "authentication failed"');
	await set(t, 'after_expiry', 1);
	await st.delay(500);
	h.is(await adb.value(`SELECT scuttlebutt.get('mt', 'after_expiry')::text`), null,
		'token: an edit made after the expiry does not reach the table');
	await t.evaluate(() => window.app.stop());
}

async function phaseWss() {
	const url = `wss://localhost:${opts.listen}/`;
	// without the CA: the certificate is not trusted, nothing connects
	const before = await errorCount('tls handshake failed');
	const untrusting = await launch('wss-no-ca');
	const u = await open(untrusting, url, 'web');
	const rose = await adb.poll(`SELECT coalesce(sum(count), 0) FROM scuttlebutt.connection_errors WHERE reason = 'tls handshake failed'`,
		(v) => Number(v) > before, WAIT_MS);
	h.ok(rose.ok, 'wss: a browser without the test CA fails the TLS handshake');
	const us = await state(u);
	h.ok(us.opens === 0 && us.syncs === 0, 'wss: its page never had an open WebSocket', JSON.stringify(us));
	await untrusting.close();

	// with the CA in its NSS database
	const b = await launch('wss', opts.ca);
	const p = await open(b, url, 'web');
	h.ok(await inPage(p, () => window.app.state.syncs === 1), 'wss: a browser trusting the test CA syncs',
		JSON.stringify(await state(p)));
	h.ok(await has(p, 'after_restart', 'sql'), 'wss: the model\'s keys are in the browser');
	await set(p, 'over_wss', true);
	h.ok(await sqlHas('web', 'over_wss', true), 'wss: the browser\'s set() is seen in SQL');
	await sqlSet('web', 'sql_over_wss', 'yes');
	h.ok(await has(p, 'sql_over_wss', 'yes'), 'wss: an SQL set() is seen by the browser');
	const rows = await adb.rows(`SELECT websocket, tls FROM scuttlebutt.peer_status
		WHERE model = 'web' AND direction = 'in' AND state = 'live'`);
	h.same(rows, [{ websocket: true, tls: true }], 'wss: peer_status shows a WebSocket over TLS');
	await p.evaluate(() => window.app.stop());
}

h.main(async () => {
	try {
		const site = path.join(opts.dir, `site-${phase}`);
		h.ok((await page.bundle(site)) > 0, 'browserify bundled the page from the npm packages');
		const server = await page.serve(site, '127.0.0.1', opts.http);
		try {
			if (phase === 'ws') await phaseWs();
			else if (phase === 'wss') await phaseWss();
			else throw new Error(`unknown phase ${phase}`);
		} finally {
			server.close();
		}
	} finally {
		for (const b of browsers) await b.close().catch(() => {});
	}
});
