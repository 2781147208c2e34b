// The declared member list (VAULT_MEMBERS_FILE, or PUT /v1/admin/cluster/members,
// replicated as cluster.declare): its shape and its rules, checked the same
// way wherever a list comes from.
import { NODE_ID_PATTERN, RAFT_ADDRESS_PATTERN } from './names.js';

export interface DeclaredMember {
  id: string;
  /** host:port of its Raft listener. */
  address: string;
}

/** Voters a Raft cluster can sensibly have; more would slow every write for nothing. */
export const MAX_DECLARED_MEMBERS = 9;

const NODE_ID_RE = new RegExp(NODE_ID_PATTERN);
const ADDRESS_RE = new RegExp(RAFT_ADDRESS_PATTERN);

/** Why a member list is not acceptable, or null (shared with the admin API's body check). */
export function memberListProblem(members: readonly DeclaredMember[]): string | null {
  if (members.length > MAX_DECLARED_MEMBERS) return `at most ${MAX_DECLARED_MEMBERS} members`;
  const ids = new Set<string>();
  const addresses = new Set<string>();
  for (const m of members) {
    if (!NODE_ID_RE.test(m.id)) return `bad node id ${JSON.stringify(m.id.slice(0, 64))}`;
    if (!validAddress(m.address)) return `bad address ${JSON.stringify(m.address.slice(0, 253))} for ${m.id} (expected host:port)`;
    if (ids.has(m.id)) return `node id ${m.id} listed twice`;
    if (addresses.has(m.address)) return `address ${m.address} listed twice`;
    ids.add(m.id);
    addresses.add(m.address);
  }
  return null;
}

function validAddress(address: string): boolean {
  if (!ADDRESS_RE.test(address)) return false;
  const port = Number(address.slice(address.lastIndexOf(':') + 1));
  return port >= 1 && port <= 65535;
}

