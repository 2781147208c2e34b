// The membership probe (POST /raft/v1/probe): a signed request a node answers
// with who it is and what it holds. The leader's autopilot probes declared
// members to see which are up, caught up and still the storage they joined
// with; a node starting on an empty log probes its peers to learn whether it
// is a new member or a former one that lost its data.

export interface ProbeReply {
  node_id: string;
  /** This node's storage identity (data-id.ts). */
  data_id: string;
  term: number;
  last_index: number;
  commit_index: number;
  /** Started on an empty log in a formed cluster: neither votes nor campaigns until added as a learner. */
  awaiting_join: boolean;
  /** The storage identity the cluster recorded for the node that asked, or null. */
  your_data_id: string | null;
}

const DATA_ID_RE = /^[0-9a-f]{32}$/;
const isIndex = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** A well-formed reply from `expected`, or null (a node under another name, a garbled body). */
export function parseProbeReply(v: unknown, expected: string): ProbeReply | null {
  if (typeof v !== 'object' || v === null) return null;
  const r = v as Record<string, unknown>;
  if (r['node_id'] !== expected) return null;
  if (typeof r['data_id'] !== 'string' || !DATA_ID_RE.test(r['data_id'])) return null;
  if (!isIndex(r['term']) || !isIndex(r['last_index']) || !isIndex(r['commit_index'])) return null;
  if (typeof r['awaiting_join'] !== 'boolean') return null;
  const yours = r['your_data_id'];
  if (yours !== null && (typeof yours !== 'string' || !DATA_ID_RE.test(yours))) return null;
  return {
    node_id: expected,
    data_id: r['data_id'],
    term: r['term'],
    last_index: r['last_index'],
    commit_index: r['commit_index'],
    awaiting_join: r['awaiting_join'],
    your_data_id: yours,
  };
}
