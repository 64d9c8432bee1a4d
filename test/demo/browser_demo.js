'use strict';
// The browser demo's JavaScript side (test/demo_browser.sh): bundles the
// page (test/browser: an unmodified scuttlebutt Model over websocket-stream)
// with browserify, serves it, connects a Node.js peer (the same Model over
// TCP), then has a headless Chromium open the page and edit the model live
// with the database and the Node.js peer.  On a terminal it then keeps
// serving the page for you to open, printing what the Node.js peer
// receives, until Enter.
//
// Usage: node browser_demo.js <listener port> <http port> <site directory> <libpq connstr>

const { spawnSync } = require('child_process');
const net = require('net');
const path = require('path');
const Model = require('scuttlebutt/model');
const chromium = require('../browser/chromium');
const page = require('../browser/page');

const [listen, http, site, connstr] = process.argv.slice(2);
const ws = `ws://127.0.0.1:${listen}/`;
const origin = `http://127.0.0.1:${http}`;
const say = (s) => console.log(`  ${s}`);

function sql(q) {
	const r = spawnSync('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', connstr, '-c', q], { encoding: 'utf8' });
	if (r.status !== 0) throw new Error(`psql: ${r.stderr || r.error}`);
	return r.stdout.trim();
}

async function until(pred, what) {
	for (let i = 0; i < 400; i++) {
		if (await pred()) return;
		await new Promise((r) => setTimeout(r, 50));
	}
	throw new Error(`timed out waiting for ${what}`);
}

async function main() {
	const bytes = await page.bundle(site);
	say(`browserify bundled scuttlebutt + websocket-stream for the browser (${bytes} bytes)`);
	const server = await page.serve(site, '127.0.0.1', Number(http));
	const url = `${origin}/?ws=${ws}&model=users`;
	say(`the page: ${url}`);

	// a Node.js peer
	const peer = new Model('NODEPEER');
	const sock = net.connect(Number(listen), '127.0.0.1');
	const stream = peer.createStream({ meta: 'users' });
	let synced = false;
	stream.on('sync', () => { synced = true; });
	stream.on('error', () => sock.destroy());
	sock.pipe(stream).pipe(sock);
	await until(() => synced, 'the Node.js peer to sync');
	peer.on('update', (change, ts, source) => {
		if (source !== peer.id) say(`Node.js peer received live: ${JSON.stringify(change)} (source ${source})`);
	});
	say(`Node.js peer synced over TCP: ${JSON.stringify(peer.toJSON())}`);

	// a headless Chromium edits the model
	const home = path.join(site, '..', 'chromium-home');
	const browser = await chromium.launch(home, { note: say });
	try {
		const p = await chromium.openPage(browser, origin, ws, 'users', null, say);
		await until(() => p.evaluate(() => window.app.state.live), 'the page to sync');
		const id = await p.evaluate(() => window.app.model.id);
		say(`headless Chromium opened the page (Model id ${id}) and synced: ${JSON.stringify(await p.evaluate(() => window.app.model.toJSON()))}`);
		say("Chromium: model.set('erin', {name: 'Erin', from: 'chromium'})");
		await p.evaluate(() => window.app.model.set('erin', { name: 'Erin', from: 'chromium' }));
		await until(() => sql("SELECT scuttlebutt.get('users', 'erin')") !== '', 'erin in SQL');
		say(`SQL: scuttlebutt.get('users', 'erin') = ${sql("SELECT scuttlebutt.get('users', 'erin')")}`);
		await until(() => peer.get('erin') !== undefined, 'erin at the Node.js peer');
		sql(`SELECT scuttlebutt.set('users', 'frank', '{"name": "Frank", "from": "sql"}')`);
		say(`SQL: SELECT scuttlebutt.set('users', 'frank', '{"name": "Frank", "from": "sql"}')`);
		await until(() => p.evaluate(() => window.app.model.get('frank') !== undefined), 'frank in the browser');
		say(`Chromium's page now shows: ${await p.evaluate(() => document.getElementById('rows').innerText.replace(/\n/g, '; ').replace(/\t/g, ' = '))}`);
		say("Node.js peer: model.set('grace', {name: 'Grace', from: 'node.js'})");
		peer.set('grace', { name: 'Grace', from: 'node.js' });
		await until(() => p.evaluate(() => window.app.model.get('grace') !== undefined), 'grace in the browser');
		say(`Chromium received grace live: ${JSON.stringify(await p.evaluate(() => window.app.model.get('grace')))}`);
	} finally {
		await browser.close();
	}

	if (process.stdin.isTTY) {
		console.log(`\n=== open ${url}\n    in a browser on this machine (more tabs: more peers); edit the model there,`
			+ `\n    or in SQL (psql "${connstr}"): SELECT scuttlebutt.set('users', 'key', '"value"');`
			+ '\n    What the Node.js peer receives is shown below.  Press Enter to end.');
		await new Promise((resolve) => process.stdin.once('data', resolve));
		process.stdin.pause();
	}
	sock.destroy();
	server.close();
	server.closeAllConnections();
}

main().then(() => process.exit(0), (e) => { console.error(`browser demo: ${e.message}`); process.exit(1); });
