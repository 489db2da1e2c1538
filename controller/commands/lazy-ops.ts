/**
 * Everything the commands' actions run, in one module that an action loads with
 * `loadOps()` (./load-ops) when it starts: the command definitions themselves stay
 * light, so `cmmigrate --version` or a usage error never loads gRPC, zod or the wire
 * contract. The controller bundle keeps this module (and all it needs) in its own file,
 * dist/cmmigrate-ops.js (controller/build/bundle-controller.js). A new command exports
 * its operation here and imports it the same way.
 */
export { connectAgent } from '../agent-client';
export { runAgents } from '../ops/agents';
export { runBridgeStatus, runBridgeStop } from '../ops/bridge';
export { runReport } from '../move-report';
export { runInit } from '../ops/init';
export { runInstallAgent } from '../ops/install-agent';
export { runStatus } from '../ops/status';
export { runSync } from '../ops/sync';
export { runUninstallAgent } from '../ops/uninstall-agent';
export { reportVerify, runVerify } from '../ops/verify';
export { loadPlan } from '../plan';
export { UNIT_NAME } from '../remote-layout';
export { STEP_IDS } from '../run/journal';
export { runRollback } from '../run/rollback';
export { runMigration } from '../run/runner';
export { recordFullVerifyOfMove } from '../run/verify-after';
