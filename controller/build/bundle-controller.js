#!/usr/bin/env node
/**
 * Bundles the controller as agent/build/bundle-agent.js bundles the agent: nothing but
 * Node's built-ins is loaded from disk. Start-up is what the layout serves. A file's size
 * costs start-up even when its code never runs (V8 must parse it), so the controller is
 * four files in dist/, each loaded only when needed:
 *
 * - cmmigrate.js (package.json's `bin`): controller/cli.ts and the command definitions;
 *   all that `cmmigrate --version`, `--help` or a usage error loads.
 * - cmmigrate-errors.js: proto/errors.ts, one copy for both other parts (CmError is
 *   matched with instanceof).
 * - cmmigrate-ops.js: controller/commands/lazy-ops.ts, every operation, loaded by a
 *   command's action (`loadOps()`, controller/commands/load-ops.ts).
 * - cmmigrate-grpc.js: grpc-js, one copy for the operations and for proto/errors.ts,
 *   which loads it only when an error carries gRPC metadata.
 *
 * dist/controller/cli.js, which tsc writes from controller/cli.ts, becomes a launcher of
 * dist/cmmigrate.js, so everything that starts the controller from there (the tests) runs
 * the code that ships.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { builtinModules } = require('node:module');
const esbuild = require('esbuild');
const { versionOnly: versionPlugin } = require('../../proto/build/version-plugin');

const repo = path.join(__dirname, '..', '..');
const dist = path.join(repo, 'dist');
const launcher = path.join(repo, 'dist', 'controller', 'cli.js');

const versionOnly = versionPlugin(repo);

/** Modules that live in a file of their own: every other part requires that file instead. */
const SHARED = [
  { file: 'cmmigrate-errors.js', source: path.join(repo, 'proto', 'errors.ts') },
  { file: 'cmmigrate-ops.js', source: path.join(repo, 'controller', 'commands', 'lazy-ops.ts') },
  { file: 'cmmigrate-grpc.js', source: require.resolve('@grpc/grpc-js', { paths: [repo] }) },
];

/** Imports of a SHARED module (by whichever path) become `require('./<its file>')`, except in its own part. */
function sharedParts(own) {
  return {
    name: 'cmmigrate-shared-parts',
    setup(build) {
      build.onResolve({ filter: /.*/ }, async (args) => {
        if (args.pluginData === 'cmmigrate-shared-parts' || args.kind === 'entry-point') return undefined;
        const r = await build.resolve(args.path, { kind: args.kind, importer: args.importer, resolveDir: args.resolveDir, pluginData: 'cmmigrate-shared-parts' });
        const part = SHARED.find((p) => p.source === r.path && p.file !== own);
        return part ? { path: `./${part.file}`, external: true } : undefined;
      });
    },
  };
}

async function bundle(entry, file) {
  const result = await esbuild.build({
    ...(entry.contents ? { stdin: { contents: entry.contents, resolveDir: repo, loader: 'js' } } : { entryPoints: [entry] }),
    outfile: path.join(dist, file),
    bundle: true,
    platform: 'node',
    target: 'node18.19',
    format: 'cjs',
    tsconfig: path.join(repo, 'tsconfig.json'),
    plugins: [versionOnly, sharedParts(file)],
    metafile: true,
    logLevel: 'warning',
    legalComments: 'eof',
  });
  const builtins = new Set([...builtinModules.flatMap((m) => [m, `node:${m}`]), ...SHARED.map((p) => `./${p.file}`)]);
  const left = [];
  for (const output of Object.values(result.metafile.outputs)) {
    for (const imp of output.imports) if (!builtins.has(imp.path)) left.push(imp.path);
  }
  if (left.length) throw new Error(`${file} still loads these from disk: ${[...new Set(left)].join(', ')}`);
  const kib = (fs.statSync(path.join(dist, file)).size / 1024).toFixed(0);
  process.stdout.write(`bundled dist/${file} (${kib} KiB, ${Object.keys(result.metafile.inputs).length} modules)\n`);
}

async function main() {
  await bundle(path.join(repo, 'controller', 'cli.ts'), 'cmmigrate.js');
  await bundle(SHARED[0].source, SHARED[0].file);
  await bundle(SHARED[1].source, SHARED[1].file);
  await bundle({ contents: "module.exports = require('@grpc/grpc-js');" }, SHARED[2].file);
  fs.chmodSync(path.join(dist, 'cmmigrate.js'), 0o755);
  fs.writeFileSync(launcher, "#!/usr/bin/env node\n// The controller is bundled: see controller/build/bundle-controller.js.\n'use strict';\nrequire('../cmmigrate.js');\n", { mode: 0o755 });
  fs.rmSync(`${launcher}.map`, { force: true });
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
