#!/usr/bin/env node
/**
 * Bundles the agent into one self-contained file, dist/cmmigrate-agent.js: agent/cli.ts
 * with every dependency and the wire contract inlined, CommonJS for Node 18.19 (Debian
 * 12's nodejs) and newer. `cmmigrate install-agent` uploads this file to a host, which
 * then needs nothing but `node`. The build fails if anything but a Node built-in would
 * still be loaded from disk at run time. The change journal's Python helper
 * (agent/journal/fanotify-helper.py) goes in as a string constant, which
 * agent/journal/journal-source.ts prefers to reading the file beside it.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { builtinModules } = require('node:module');
const esbuild = require('esbuild');
const { versionOnly: versionPlugin } = require('../../proto/build/version-plugin');

const repo = path.join(__dirname, '..', '..');
const outfile = path.join(repo, 'dist', 'cmmigrate-agent.js');

const versionOnly = versionPlugin(repo);

/**
 * Constants the bundle's code finds in place of files: the change journal's helper source
 * (agent/journal/journal-source.ts reads the .py file only where this is not defined).
 */
function bundleDefines() {
  const helper = fs.readFileSync(path.join(repo, 'agent', 'journal', 'fanotify-helper.py'), 'utf8');
  return { CMM_JOURNAL_HELPER_SOURCE: JSON.stringify(helper) };
}

async function main() {
  const result = await esbuild.build({
    entryPoints: [path.join(repo, 'agent', 'cli.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node18.19',
    format: 'cjs',
    tsconfig: path.join(repo, 'tsconfig.json'),
    plugins: [versionOnly],
    define: bundleDefines(),
    metafile: true,
    logLevel: 'warning',
    legalComments: 'eof',
  });
  const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
  // What the output itself still imports at run time (type-only imports of the sources
  // are listed under inputs but never emitted).
  const left = [];
  for (const output of Object.values(result.metafile.outputs)) {
    for (const imp of output.imports) if (!builtins.has(imp.path)) left.push(imp.path);
  }
  if (left.length) {
    throw new Error(`the agent bundle still loads these from disk: ${[...new Set(left)].join(', ')}`);
  }
  fs.chmodSync(outfile, 0o755);
  const kib = (fs.statSync(outfile).size / 1024).toFixed(0);
  process.stdout.write(`bundled ${path.relative(repo, outfile)} (${kib} KiB, ${Object.keys(result.metafile.inputs).length} modules)\n`);
}

module.exports = { bundleDefines };

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${err.stack || err}\n`);
    process.exit(1);
  });
}
