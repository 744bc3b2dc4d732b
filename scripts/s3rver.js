#!/usr/bin/env node
// Starts @20minutes/s3rver (an S3 imitation that verifies SigV4 signatures) for tests.
// Usage: node scripts/s3rver.js --dir DIR --port PORT --bucket NAME [--bucket NAME ...]
//          [--key KEY.pem --cert CERT.pem]   (HTTPS instead of HTTP)
// Credentials are S3RVER / S3RVER. Prints "ready <port>" once it listens; exits on
// SIGTERM/SIGINT. Loopback only. Run node with --openssl-legacy-provider: s3rver makes
// ListObjectsV2 continuation tokens with DES.
'use strict';
const fs = require('fs');
const S3rver = require('@20minutes/s3rver');

function parseArgs(argv) {
  const opts = { buckets: [] };
  for (let i = 2; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`missing value for ${flag}`);
    if (flag === '--dir') opts.dir = value;
    else if (flag === '--port') opts.port = Number(value);
    else if (flag === '--bucket') opts.buckets.push(value);
    else if (flag === '--key') opts.key = value;
    else if (flag === '--cert') opts.cert = value;
    else throw new Error(`unknown flag ${flag}`);
  }
  if (Boolean(opts.key) !== Boolean(opts.cert)) throw new Error('--key and --cert go together');
  if (!opts.dir || !opts.port || opts.buckets.length === 0) {
    throw new Error('usage: s3rver.js --dir DIR --port PORT --bucket NAME');
  }
  return opts;
}

async function main() {
  const opts = parseArgs(process.argv);
  const server = new S3rver({
    directory: opts.dir,
    address: '127.0.0.1',
    port: opts.port,
    silent: true,
    vhostBuckets: false,
    configureBuckets: opts.buckets.map((name) => ({ name, configs: [] })),
    ...(opts.key ? { key: fs.readFileSync(opts.key), cert: fs.readFileSync(opts.cert) } : {}),
  });
  const address = await server.run();
  process.stdout.write(`ready ${address.port}\n`);
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  process.stderr.write(`s3rver failed: ${err.stack || err}\n`);
  process.exit(1);
});
