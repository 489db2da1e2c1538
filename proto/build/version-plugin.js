/**
 * The esbuild plugin both bundles use (agent/build/bundle-agent.js,
 * controller/build/bundle-controller.js): the sources read their version with
 * require('../../package.json'), a path that is right from dist/<dir>/; in a bundle it
 * becomes a module holding only name and version, not the whole manifest.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');

/** The plugin for the repository at `repo`. */
function versionOnly(repo) {
  const pkg = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8'));
  return {
    name: 'cmmigrate-version',
    setup(build) {
      build.onResolve({ filter: /(^|\/)package\.json$/ }, (args) =>
        args.importer.startsWith(repo) && !args.importer.includes(`${path.sep}node_modules${path.sep}`)
          ? { path: 'cmmigrate-package.json', namespace: 'cmmigrate-version' }
          : undefined,
      );
      build.onLoad({ filter: /.*/, namespace: 'cmmigrate-version' }, () => ({
        contents: JSON.stringify({ name: pkg.name, version: pkg.version }),
        loader: 'json',
      }));
    },
  };
}

module.exports = { versionOnly };
