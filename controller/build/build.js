#!/usr/bin/env node
/**
 * The build, as `npm run build` runs it: the wire contract's JSON descriptor, the shipped
 * code (proto/, agent/, controller/) compiled into dist/ by tsconfig.json, the agent bundle,
 * the controller bundle (which makes dist/controller/cli.js its launcher), and the
 * executable bits of both CLIs. With --tools, also the test support, the demo and
 * the bench, compiled by tsconfig.tools.json into dist-test/, which is never published.
 */
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const repo = path.join(__dirname, '..', '..');
const node = (script, ...args) => execFileSync(process.execPath, [path.join(repo, script), ...args], { cwd: repo, stdio: 'inherit' });
const tsc = (project) => node('node_modules/typescript/bin/tsc', '-p', project);

node('proto/build/proto-json.js');
tsc('tsconfig.json');
node('agent/build/bundle-agent.js');
node('controller/build/bundle-controller.js');
for (const cli of ['dist/cmmigrate.js', 'dist/controller/cli.js', 'dist/agent/cli.js']) fs.chmodSync(path.join(repo, cli), 0o755);
if (process.argv.includes('--tools')) tsc('tsconfig.tools.json');
