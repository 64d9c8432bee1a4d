'use strict';
// Headless Chromium (Debian's chromium package, SB_CHROMIUM for another
// binary) through puppeteer-core, for the browser test and demo.
//
//     const b = await launch(home, { ca: 'ca.crt', note: console.log });
//
// HOME is home (a directory of its own); ca: a CA certificate to trust,
// added with certutil to the NSS database there, where Chromium on Linux
// takes the user's trust anchors from.  Chromium keeps its sandbox (user
// namespaces, or in a chroot the setuid helper of Debian's
// chromium-sandbox) unless we are root, which it refuses, or neither works
// here; note() says so.

const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const puppeteer = require('puppeteer-core');

const CHROMIUM = process.env.SB_CHROMIUM || '/usr/bin/chromium';

async function launch(home, opts) {
	opts = opts || {};
	const note = opts.note || (() => {});
	const nssdb = path.join(home, '.pki', 'nssdb');
	fs.mkdirSync(nssdb, { recursive: true });
	if (opts.ca) {
		for (const args of [['-N', '--empty-password'], ['-A', '-t', 'C,,', '-n', 'scuttlebutt test CA', '-i', opts.ca]]) {
			const r = spawnSync('certutil', ['-d', `sql:${nssdb}`, ...args], { encoding: 'utf8' });
			if (r.error || r.status !== 0)
				throw new Error(`certutil ${args[0]}: ${r.error ? r.error.message : r.stderr}`);
		}
	}
	const base = {
		executablePath: CHROMIUM,
		headless: true,
		userDataDir: path.join(home, 'profile'),
		env: Object.assign({}, process.env, { HOME: home }),
		args: ['--disable-dev-shm-usage', '--disable-gpu', '--no-first-run'],
		protocolTimeout: opts.protocolTimeout || 30000,
	};
	const sandboxless = Object.assign({}, base, { args: [...base.args, '--no-sandbox'] });
	if (process.getuid() === 0) return puppeteer.launch(sandboxless);
	try {
		return await puppeteer.launch(base);
	} catch (e) {
		if (!/sandbox/i.test(e.message)) throw e;
		const why = e.message.split('\n').find((l) => /sandbox/i.test(l)) || '';
		note(`chromium's sandbox cannot start here (a chroot, or no user namespaces), running without it: ${why.trim()}`);
		return puppeteer.launch(sandboxless);
	}
}

// Opens index.html of site (an http:// origin) replicating model over the
// WebSocket url (token: sent as the subprotocol "token.<jwt>")
async function openPage(browser, site, url, model, token, onNote) {
	const p = await browser.newPage();
	if (onNote) p.on('pageerror', (e) => onNote(`page error: ${e.message}`));
	const q = new URLSearchParams({ ws: url, model });
	if (token) q.set('token', token);
	await p.goto(`${site}/?${q}`, { waitUntil: 'load' });
	return p;
}

module.exports = { launch, openPage, CHROMIUM };
