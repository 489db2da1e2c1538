#!/usr/bin/env node
/**
 * Writes proto/generated/cmmigrate.json: the wire contract as a protobufjs JSON descriptor,
 * parsed with keepCase like every loader of it. proto/index.ts loads the service from this
 * file, so the bundled agent carries the contract without reading a .proto at run time.
 * `--check` exits 1 when the file on disk differs from the .proto (nothing is written).
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const protobuf = require('protobufjs');

const repo = path.join(__dirname, '..', '..');
const source = path.join(repo, 'proto', 'cmmigrate.proto');
const target = path.join(repo, 'proto', 'generated', 'cmmigrate.json');

const root = new protobuf.Root();
root.loadSync(source, { keepCase: true });
const text = JSON.stringify(root.toJSON({ keepComments: false }), null, 2) + '\n';
const current = fs.existsSync(target) ? fs.readFileSync(target, 'utf8') : '';

if (process.argv.includes('--check')) {
  if (current !== text) {
    process.stderr.write(`${path.relative(repo, target)} is stale: run node proto/build/proto-json.js (or npm run build)\n`);
    process.exit(1);
  }
} else if (current !== text) {
  fs.writeFileSync(target + '.tmp', text);
  fs.renameSync(target + '.tmp', target);
}
