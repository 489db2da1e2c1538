/**
 * The HostOp call: the operation and units checked against the allowlists, run by the
 * host-operation runner, and its result as the wire's reply.
 */
import { CmError, INPUT_OPS, isHostOpName, isUnitName, SERVICE_OPS, type HostOpReply } from '../proto';
import type { HostOpRunner } from './host/host-ops';
import type { HostOpRequestChecked } from './requests';

/** One operation of the allowlist; names outside it are refused before anything runs. */
export async function hostOpReply(runner: HostOpRunner, req: HostOpRequestChecked): Promise<HostOpReply> {
  const op = req.op;
  if (!isHostOpName(op)) {
    throw new CmError('agent.op_not_allowed', `HostOp ${JSON.stringify(op)} is not an operation an agent runs`, {
      hint: 'the controller and the agent may be of different cmmigrate versions: reinstall the agent (cmmigrate install-agent)',
    });
  }
  const bad = req.units.find((u) => !isUnitName(u));
  if (bad !== undefined) throw new CmError('agent.unit_not_allowed', `HostOp ${op}: unit ${JSON.stringify(bad)} is not one an agent may touch`);
  const units = [...new Set(req.units)].filter(isUnitName);
  const isService = SERVICE_OPS.includes(op);
  if (isService && units.length === 0) throw new CmError('usage.bad_request', `HostOp ${op} needs at least one unit`);
  if (!isService && units.length > 0) throw new CmError('usage.bad_request', `HostOp ${op} takes no units`);
  if (req.input && !INPUT_OPS.includes(op)) throw new CmError('usage.bad_request', `HostOp ${op} takes no input`);
  const r = await runner.run(op, units, req.input);
  return {
    units: r.units ?? [],
    output: r.output ?? '',
    chatmail_version: r.chatmailVersion ?? '',
    chatmail_version_present: r.chatmailVersion !== undefined,
    free_bytes: String(r.disk?.freeBytes ?? 0),
    total_bytes: String(r.disk?.totalBytes ?? 0),
    path: r.disk?.path ?? '',
    tree_bytes: String(r.tree?.bytes ?? 0),
    tree_files: String(r.tree?.files ?? 0),
  };
}
