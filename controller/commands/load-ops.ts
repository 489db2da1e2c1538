/**
 * Loads every operation (./lazy-ops, dist/cmmigrate-ops.js in the bundle) the first time a
 * command needs one. A plain require, not `import()`: the controller bundle is CommonJS, and
 * Node's `import()` of a CommonJS file first scans all of it for its exports
 * (cjs-module-lexer), about a quarter of a second of CPU per command on a 2.4 MB file.
 */
export function loadOps(): typeof import('./lazy-ops') {
  return require('./lazy-ops') as typeof import('./lazy-ops');
}
