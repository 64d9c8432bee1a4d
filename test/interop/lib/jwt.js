'use strict';
// Test tokens for the stream port's "token" rules, made with Node's own
// crypto (no JWT library): hs256(secret, claims) signs with HMAC-SHA256,
// as scuttlebutt.jwt_secret checks it.

const crypto = require('crypto');

function b64url(buf) {
	return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

function hs256(secret, claims) {
	const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
	const body = b64url(JSON.stringify(claims));
	const sig = b64url(crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest());
	return `${head}.${body}.${sig}`;
}

module.exports = { hs256 };
