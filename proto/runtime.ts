/**
 * What both programs set up the same way at start: the version they report, and the
 * process warning handler.
 */

/** The cmmigrate version (package.json; the agent bundle inlines it). */
export const VERSION: string = (() => {
  try {
    // A path that is right from dist/proto/; agent/build/bundle-agent.js inlines it.
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return require('../../package.json').version as string;
  } catch {
    return '0.0.0';
  }
})();

/**
 * grpc-js sends the dialled IP address as TLS ServerName, which Node flags (DEP0123) on
 * every connection. It is harmless here (certificates carry IP SANs): keep it off the
 * user's terminal and print other warnings as usual.
 */
export function quietIpServernameWarning(): void {
  process.removeAllListeners('warning');
  process.on('warning', (w: Error & { code?: string }) => {
    if (w.code === 'DEP0123') return;
    process.stderr.write(`${w.name}: ${w.message}\n`);
  });
}
