'use strict';
// test/bench/js/sign_dump.js: a dump of N signed updates, as a JavaScript
// node holding the private key would write them, for the signed-update
// benchmarks (signed_verify.sh, signed_sync.sh).
//
//   node sign_dump.js KEY_PEM N OUT_PREFIX [CHUNK] [WORKERS]
//
// KEY_PEM is a private key (RSA or Ed25519, PEM).  The updates are those of
// build_model in servers_lib.sh: keys k1..kN, values {"v": i, "s": "value i"},
// timestamps BASE + i (BASE: N + 1 s before now, so none lies ahead of the
// server's clock), source = the id of the key, base64(SHA-1(public PEM)) as
// the reference's security.js createId() computes it.  Signatures: RSA with
// the reference's security.js (RSA-SHA1, base64), Ed25519 with crypto.sign()
// over the same bytes, JSON.stringify([change, ts, source]).
//
// Writes OUT_PREFIX.pub (the public key, SPKI PEM as "openssl pkey -pubout"
// writes it), OUT_PREFIX.id (the source id) and OUT_PREFIX.<c> for each
// chunk c = 0, 1, ... of CHUNK updates (default 100,000): one update per
// line, what scuttlebutt.import() reads.  WORKERS threads (default: the
// number of CPUs) sign pieces of 10,000 updates in parallel, concatenated
// into the chunks.  Prints "<id> <chunks>".
const fs = require('fs');
const os = require('os');
const crypto = require('crypto');
const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');

// signer(pem): a function signing an update [change, ts, source].
function signer(pem) {
	const key = crypto.createPrivateKey(pem);
	if (key.asymmetricKeyType === 'rsa') {
		const security = require('scuttlebutt/security');
		// the parsed key, not the PEM text: parsed once, not per signature
		return security({}, key, crypto.createPublicKey(key).export({ type: 'spki', format: 'pem' })).sign;
	}
	if (key.asymmetricKeyType === 'ed25519')
		return (update) => crypto.sign(null, Buffer.from(JSON.stringify(update)), key).toString('base64');
	throw new Error(`unsupported key type ${key.asymmetricKeyType}`);
}

// writeChunk: updates lo..hi (inclusive) into file.
function writeChunk(pem, id, base, lo, hi, file) {
	const sign = signer(pem);
	const lines = [];
	for (let i = lo; i <= hi; i++) {
		const update = [['k' + i, { v: i, s: 'value ' + i }], base + i, id];
		update.push(sign(update));
		lines.push(JSON.stringify(update));
	}
	fs.writeFileSync(file, lines.join('\n') + '\n');
}

if (!isMainThread) {
	const { pem, id, base, jobs } = workerData;
	for (const j of jobs)
		writeChunk(pem, id, base, j.lo, j.hi, j.file);
	parentPort.postMessage('done');
} else {
	const [keyFile, nArg, prefix, chunkArg, workersArg] = process.argv.slice(2);
	if (!keyFile || !nArg || !prefix) {
		console.error('usage: node sign_dump.js KEY_PEM N OUT_PREFIX [CHUNK] [WORKERS]');
		process.exit(2);
	}
	const n = Number(nArg);
	const chunk = Number(chunkArg) || 100000;
	const nworkers = Math.max(1, Number(workersArg) || os.cpus().length);
	const pem = fs.readFileSync(keyFile, 'utf8');
	const pub = crypto.createPublicKey(pem).export({ type: 'spki', format: 'pem' });
	const id = crypto.createHash('sha1').update(pub).digest('base64');
	const base = Date.now() - n - 1000;
	fs.writeFileSync(prefix + '.pub', pub);
	fs.writeFileSync(prefix + '.id', id + '\n');

	const piece = 10000;
	const jobs = [];
	for (let lo = 1, p = 0; lo <= n; lo += piece, p++)
		jobs.push({ lo, hi: Math.min(n, lo + piece - 1), file: `${prefix}.piece${p}` });
	const per = Array.from({ length: Math.min(nworkers, jobs.length) }, () => []);
	jobs.forEach((j, k) => per[k % per.length].push(j));
	let left = per.length;
	for (const js of per) {
		const w = new Worker(__filename, { workerData: { pem, id, base, jobs: js } });
		w.on('error', (e) => { console.error(e); process.exit(1); });
		w.on('message', () => {
			if (--left > 0)
				return;
			// pieces (in key order) into chunks of CHUNK updates
			let c = 0;
			for (let lo = 1; lo <= n; lo += chunk, c++) {
				const hi = Math.min(n, lo + chunk - 1);
				const fd = fs.openSync(`${prefix}.${c}`, 'w');
				for (const j of jobs.filter((j) => j.lo >= lo && j.lo <= hi)) {
					fs.writeSync(fd, fs.readFileSync(j.file));
					fs.unlinkSync(j.file);
				}
				fs.closeSync(fd);
			}
			console.log(`${id} ${c}`);
		});
	}
}
