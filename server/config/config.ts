// Server configuration from the environment (DESIGN §3). Every variable is
// parsed here, once; a malformed one stops the process with a message naming it.
import os from 'node:os';
import path from 'node:path';
import { Allowlist, parseCidr, type Cidr } from '../../common/ipv4.js';
import { readAllowlistFile, type AllowlistFileRead } from './allowlist-file.js';
import { parseAuditExportConfig, type AuditExportConfig } from './audit-export.js';
import { readMembersFile, type MembersFileRead } from './members-file.js';
import type { WatchedFileRead } from './watched-file.js';

export interface HostPort {
  host: string;
  port: number;
}

export interface Peer {
  id: string;
  addr: HostPort;
}

export interface ServerConfig {
  dataDir: string;
  apiAddr: HostPort;
  raftAddr: HostPort;
  raftAdvertise: HostPort;
  nodeId: string;
  peers: Peer[];
  kmsMode: 'local' | 'aws';
  kmsKeyId: string | null;
  /** base64 text as given; decoded and checked by the KMS layer so the bytes live in one Uint8Array. */
  localMasterKeyB64: string | null;
  dekCacheTtlSecs: number;
  rewrapEnabled: boolean;
  rewrapPollSecs: number;
  rewrapMaxPerSec: number;
  bootstrapToken: string | null;
  /** VAULT_READ_ALLOWLIST only; the file's entries are added by the node (allowlist-file.ts). */
  readAllowlist: Allowlist;
  /**
   * VAULT_READ_ALLOWLIST_FILE: its absolute path and what it held at start
   * (a malformed or unreadable file stops the start; a missing one does not).
   */
  readAllowlistFile: { path: string; initial: AllowlistFileRead } | null;
  /** VAULT_MEMBERS_FILE: the declared members the leader's autopilot keeps Raft membership equal to. */
  membersFile: { path: string; initial: MembersFileRead } | null;
  /** VAULT_AUTOPILOT_STABILIZATION_SECS: how long a caught-up learner must stay healthy before it votes. */
  autopilotStabilizationMs: number;
  trustProxy: boolean;
  tlsCertFile: string | null;
  tlsKeyFile: string | null;
  maxValueBytes: number;
  /**
   * VAULT_MGMT_ADDR: when set, management routes (everything but value reads,
   * health, readiness and metrics) are served only on this listener, e.g. the
   * WireGuard overlay address, and the API listener serves value reads only.
   */
  mgmtAddr: HostPort | null;
  /** VAULT_OVERLAY_CIDR: the WireGuard overlay; when set, Raft and management must listen inside it. */
  overlayCidr: string | null;
  /**
   * VAULT_CLUSTER_KEY (32 bytes): authenticates every Raft request. Null only
   * for a node alone in its configuration, which then uses an ephemeral key.
   */
  clusterKey: Uint8Array | null;
  /** VAULT_CLUSTER_KEY_PREVIOUS: also accepted when verifying, during a key change. */
  clusterKeyPrevious: Uint8Array | null;
  /** VAULT_TRUSTED_PROXIES: the only peers whose X-Forwarded-For is read (required with trustProxy). */
  trustedProxies: Allowlist | null;
  /** VAULT_API_HOSTNAMES: Host names the API answers to besides IP literals and localhost (lower case). */
  apiHostnames: string[];
  /** VAULT_MIN_FREE_BYTES: below this much free space on the data volume, writes are refused (507). */
  minFreeBytes: number;
  /** VAULT_AUDIT_STDOUT, VAULT_AUDIT_FILE, VAULT_AUDIT_FILE_MAX_BYTES: the audit export (audit-export.ts). */
  auditExport: AuditExportConfig;
  /** VAULT_AUDIT_RETENTION: audit records older than this are pruned (ms; default 30 days). */
  auditRetentionMs: number;
  /** VAULT_AUDIT_MAX_BYTES: cap on audit.db and its WAL; null = a quarter of the data volume, measured at start. */
  auditMaxBytes: number | null;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly variable: string, problem: string) {
    super(`${variable}: ${problem}`);
  }
}

type Env = Record<string, string | undefined>;

function get(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

export function parseHostPort(name: string, text: string): HostPort {
  const i = text.lastIndexOf(':');
  if (i <= 0) throw new ConfigError(name, `expected host:port, got ${JSON.stringify(text)}`);
  const host = text.slice(0, i);
  const portText = text.slice(i + 1);
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw new ConfigError(name, `bad port in ${JSON.stringify(text)}`);
  }
  if (!/^[A-Za-z0-9.-]+$/.test(host)) throw new ConfigError(name, `bad host in ${JSON.stringify(text)}`);
  return { host, port: Number(portText) };
}

function parseIntVar(env: Env, name: string, dflt: number, min: number, max: number): number {
  const v = get(env, name);
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v)) throw new ConfigError(name, `expected a whole number, got ${JSON.stringify(v)}`);
  const n = Number(v);
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

function parseBool(env: Env, name: string, dflt: boolean): boolean {
  const v = get(env, name);
  if (v === undefined) return dflt;
  if (/^(true|1|yes)$/i.test(v)) return true;
  if (/^(false|0|no)$/i.test(v)) return false;
  throw new ConfigError(name, `expected true or false, got ${JSON.stringify(v)}`);
}

const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

function parsePeers(text: string): Peer[] {
  const peers: Peer[] = [];
  for (const item of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new ConfigError('VAULT_PEERS', `expected id=host:port, got ${JSON.stringify(item)}`);
    const id = item.slice(0, eq);
    if (!NODE_ID.test(id)) throw new ConfigError('VAULT_PEERS', `bad node id ${JSON.stringify(id)}`);
    if (peers.some((p) => p.id === id)) throw new ConfigError('VAULT_PEERS', `node id ${id} listed twice`);
    peers.push({ id, addr: parseHostPort('VAULT_PEERS', item.slice(eq + 1)) });
  }
  if (peers.length === 0) throw new ConfigError('VAULT_PEERS', 'no peers listed');
  return peers;
}

export function loadConfig(env: Env = process.env): ServerConfig {
  const dataDir = get(env, 'VAULT_DATA_DIR') ?? './data';
  const apiAddr = parseHostPort('VAULT_API_ADDR', get(env, 'VAULT_API_ADDR') ?? '0.0.0.0:8200');
  const nodeId = get(env, 'VAULT_NODE_ID') ?? os.hostname();
  if (!NODE_ID.test(nodeId)) throw new ConfigError('VAULT_NODE_ID', `bad node id ${JSON.stringify(nodeId)}`);
  const overlayCidr = get(env, 'VAULT_OVERLAY_CIDR') ?? null;

  const peersText = get(env, 'VAULT_PEERS');
  const listedPeers = peersText ? parsePeers(peersText) : null;
  // How the others dial this node is already written in VAULT_PEERS. A
  // StatefulSet template cannot carry per-pod values, so this is how a pod
  // learns its own overlay address (DESIGN §3: VAULT_RAFT_ADVERTISE "derived").
  // A member added after formation is not in VAULT_PEERS (which stays the formed set): the members file names it.
  const membersFile = loadMembersFile(get(env, 'VAULT_MEMBERS_FILE'));
  const declaredSelf = membersFile?.initial.kind === 'ok' ? membersFile.initial.value.find((m) => m.id === nodeId) : undefined;
  const ownEntry = listedPeers?.find((p) => p.id === nodeId)?.addr ?? (declaredSelf ? parseHostPort('VAULT_MEMBERS_FILE', declaredSelf.address) : null);

  const raftAddrText = get(env, 'VAULT_RAFT_ADDR');
  const advText = get(env, 'VAULT_RAFT_ADVERTISE');
  const advertiseGiven = advText ? parseHostPort('VAULT_RAFT_ADVERTISE', advText) : ownEntry;
  // With the overlay on, the only safe default listen address is the overlay
  // address this node advertises; 0.0.0.0 would expose Raft on the underlay.
  const raftAddr = raftAddrText
    ? parseHostPort('VAULT_RAFT_ADDR', raftAddrText)
    : overlayCidr !== null && advertiseGiven
      ? { ...advertiseGiven }
      : { host: '0.0.0.0', port: 8201 };
  // An unspecified listen address cannot be dialled; fall back to the hostname, as a StatefulSet pod's name resolves.
  const raftAdvertise = advertiseGiven
    ?? { host: raftAddr.host === '0.0.0.0' ? os.hostname() : raftAddr.host, port: raftAddr.port };

  const peers = listedPeers ?? [{ id: nodeId, addr: raftAdvertise }];
  // A node not among the initial voters is a joiner: it starts empty and waits
  // for the leader, after an admin adds it (POST /v1/admin/cluster/peers).

  const modeText = get(env, 'VAULT_KMS_MODE') ?? 'local';
  if (modeText !== 'local' && modeText !== 'aws') {
    throw new ConfigError('VAULT_KMS_MODE', `expected aws or local, got ${JSON.stringify(modeText)}`);
  }
  const kmsKeyId = get(env, 'VAULT_KMS_KEY_ID') ?? null;
  if (modeText === 'aws' && !kmsKeyId) throw new ConfigError('VAULT_KMS_KEY_ID', 'required when VAULT_KMS_MODE=aws');
  const localMasterKeyB64 = get(env, 'VAULT_LOCAL_MASTER_KEY') ?? null;
  if (modeText === 'aws' && localMasterKeyB64) {
    throw new ConfigError('VAULT_LOCAL_MASTER_KEY', 'only used when VAULT_KMS_MODE=local');
  }

  const bootstrapToken = get(env, 'VAULT_BOOTSTRAP_TOKEN') ?? null;
  if (bootstrapToken !== null && !/^[\x21-\x7e]{24,512}$/.test(bootstrapToken)) {
    throw new ConfigError('VAULT_BOOTSTRAP_TOKEN', 'must be 24 to 512 printable characters without spaces');
  }

  let readAllowlist: Allowlist;
  try {
    readAllowlist = Allowlist.parse(get(env, 'VAULT_READ_ALLOWLIST') ?? '');
  } catch (err) {
    throw new ConfigError('VAULT_READ_ALLOWLIST', (err as Error).message);
  }

  const readAllowlistFile = loadAllowlistFile(get(env, 'VAULT_READ_ALLOWLIST_FILE'));

  const tlsCertFile = get(env, 'VAULT_TLS_CERT_FILE') ?? null;
  const tlsKeyFile = get(env, 'VAULT_TLS_KEY_FILE') ?? null;
  if ((tlsCertFile === null) !== (tlsKeyFile === null)) {
    throw new ConfigError(tlsCertFile ? 'VAULT_TLS_KEY_FILE' : 'VAULT_TLS_CERT_FILE', 'TLS needs both the cert and the key file');
  }

  const trustProxy = parseBool(env, 'VAULT_TRUST_PROXY', false);
  const trustedText = get(env, 'VAULT_TRUSTED_PROXIES');
  let trustedProxies: Allowlist | null = null;
  if (trustedText !== undefined) {
    try {
      trustedProxies = Allowlist.parse(trustedText);
    } catch (err) {
      throw new ConfigError('VAULT_TRUSTED_PROXIES', (err as Error).message);
    }
  }
  if (trustProxy && (trustedProxies === null || trustedProxies.entries.length === 0)) {
    throw new ConfigError('VAULT_TRUSTED_PROXIES', 'required when VAULT_TRUST_PROXY=true: the CIDRs of the proxies whose X-Forwarded-For is believed');
  }

  const apiHostnames = (get(env, 'VAULT_API_HOSTNAMES') ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  for (const h of apiHostnames) {
    if (!HOSTNAME.test(h)) throw new ConfigError('VAULT_API_HOSTNAMES', `bad host name ${JSON.stringify(h)}`);
  }

  const mgmtAddr = parseMgmtAddr(get(env, 'VAULT_MGMT_ADDR'), overlayCidr, raftAdvertise);
  if (overlayCidr !== null) checkOverlay(overlayCidr, raftAddr, raftAdvertise, mgmtAddr);

  const clusterKey = parseKey(env, 'VAULT_CLUSTER_KEY');
  const clusterKeyPrevious = parseKey(env, 'VAULT_CLUSTER_KEY_PREVIOUS');
  if (clusterKey === null && peers.some((p) => p.id !== nodeId)) {
    throw new ConfigError('VAULT_CLUSTER_KEY', 'required when VAULT_PEERS lists other nodes: it authenticates Raft traffic (base64 of 32 bytes, the same on every node)');
  }
  if (clusterKey === null && clusterKeyPrevious !== null) {
    throw new ConfigError('VAULT_CLUSTER_KEY_PREVIOUS', 'needs VAULT_CLUSTER_KEY as well');
  }

  return {
    dataDir,
    apiAddr,
    raftAddr,
    raftAdvertise,
    nodeId,
    peers,
    kmsMode: modeText,
    kmsKeyId,
    localMasterKeyB64,
    dekCacheTtlSecs: parseIntVar(env, 'VAULT_DEK_CACHE_TTL_SECS', 300, 0, 86_400),
    rewrapEnabled: parseBool(env, 'VAULT_KMS_REWRAP_ENABLED', false),
    rewrapPollSecs: parseIntVar(env, 'VAULT_KMS_REWRAP_POLL_SECS', 86_400, 1, 31_536_000),
    rewrapMaxPerSec: parseIntVar(env, 'VAULT_KMS_REWRAP_MAX_PER_SEC', 20, 1, 10_000),
    bootstrapToken,
    readAllowlist,
    readAllowlistFile,
    membersFile,
    autopilotStabilizationMs: parseIntVar(env, 'VAULT_AUTOPILOT_STABILIZATION_SECS', 10, 0, 3600) * 1000,
    trustProxy,
    tlsCertFile,
    tlsKeyFile,
    maxValueBytes: parseIntVar(env, 'VAULT_MAX_VALUE_BYTES', 65_536, 1, 1_048_576),
    mgmtAddr,
    overlayCidr,
    clusterKey,
    clusterKeyPrevious,
    trustedProxies,
    apiHostnames,
    minFreeBytes: parseIntVar(env, 'VAULT_MIN_FREE_BYTES', 67_108_864, 0, Number.MAX_SAFE_INTEGER),
    auditExport: parseAuditExportConfig(env, (name, problem) => new ConfigError(name, problem)),
    auditRetentionMs: parseDurationVar(env, 'VAULT_AUDIT_RETENTION', 30 * DAY_MS),
    auditMaxBytes: parseBytesVar(env, 'VAULT_AUDIT_MAX_BYTES'),
  };
}

const DAY_MS = 86_400_000;
const DURATION_UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: DAY_MS };

/** A duration such as `30d`, `12h`, `90m` or `45s` (one number, one unit), in milliseconds. */
export function parseDuration(text: string): number | null {
  const m = /^(\d{1,9})([smhd])$/.exec(text.trim());
  if (!m) return null;
  const ms = Number(m[1]) * DURATION_UNITS[m[2]!]!;
  return ms > 0 ? ms : null;
}

function parseDurationVar(env: Env, name: string, dflt: number): number {
  const v = get(env, name);
  if (v === undefined) return dflt;
  const ms = parseDuration(v);
  if (ms === null) throw new ConfigError(name, `expected a positive duration such as 30d, 12h or 90m, got ${JSON.stringify(v)}`);
  return ms;
}

const BYTE_UNITS: Record<string, number> = { '': 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 };

/** A size in bytes: `4194304`, or with a binary suffix `512Ki`, `4Mi`, `1Gi`. */
export function parseBytes(text: string): number | null {
  const m = /^(\d{1,15})(Ki|Mi|Gi|Ti)?$/.exec(text.trim());
  if (!m) return null;
  const n = Number(m[1]) * BYTE_UNITS[m[2] ?? '']!;
  return Number.isSafeInteger(n) ? n : null;
}

/** The smallest audit cap accepted: a few hundred records plus SQLite's own pages. */
export const AUDIT_MIN_MAX_BYTES = 1024 * 1024;

function parseBytesVar(env: Env, name: string): number | null {
  const v = get(env, name);
  if (v === undefined) return null;
  const n = parseBytes(v);
  if (n === null) throw new ConfigError(name, `expected bytes, optionally with Ki, Mi or Gi (e.g. 256Mi), got ${JSON.stringify(v)}`);
  if (n < AUDIT_MIN_MAX_BYTES) throw new ConfigError(name, `must be at least 1Mi (${AUDIT_MIN_MAX_BYTES} bytes), got ${n}`);
  return n;
}

/** VAULT_MEMBERS_FILE at start: malformed or unreadable stops the start; missing waits for the kubelet, declaring nothing meanwhile. */
function loadMembersFile(text: string | undefined): ServerConfig['membersFile'] {
  return loadWatchedFile('VAULT_MEMBERS_FILE', text, readMembersFile);
}

/**
 * VAULT_READ_ALLOWLIST_FILE at start. Malformed or unreadable: refuse to
 * start, naming the line, like any malformed variable. Missing: start with
 * VAULT_READ_ALLOWLIST alone and pick the file up when it appears, because
 * the kubelet may mount or fill an optional ConfigMap after the container
 * starts, and a vault that crash-loops until then helps nobody (the missing
 * file denies reads, it never widens them).
 */
function loadAllowlistFile(text: string | undefined): ServerConfig['readAllowlistFile'] {
  return loadWatchedFile('VAULT_READ_ALLOWLIST_FILE', text, readAllowlistFile);
}

function loadWatchedFile<T>(variable: string, text: string | undefined, read: (file: string) => WatchedFileRead<T>): { path: string; initial: WatchedFileRead<T> } | null {
  if (text === undefined) return null;
  const file = path.resolve(text);
  const initial = read(file);
  if (initial.kind === 'invalid') throw new ConfigError(variable, `${file} ${initial.error.message}`);
  if (initial.kind === 'unreadable') throw new ConfigError(variable, `${file} cannot be read: ${initial.problem}`);
  return { path: file, initial };
}

/** A DNS name (labels of letters, digits and hyphens), as a Host header may carry it. */
const HOSTNAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** A 32-byte key given as base64. */
function parseKey(env: Env, name: string): Uint8Array | null {
  const text = get(env, name);
  if (text === undefined) return null;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) throw new ConfigError(name, 'expected base64 of 32 bytes');
  const bytes = new Uint8Array(Buffer.from(text, 'base64'));
  if (bytes.length !== 32) {
    bytes.fill(0);
    throw new ConfigError(name, `expected base64 of 32 bytes, got ${bytes.length} bytes`);
  }
  return bytes;
}

/**
 * VAULT_MGMT_ADDR is `host:port`, or `overlay:port` for "this node's overlay
 * address" (the Raft advertise host), which a pod template can say for every pod.
 */
function parseMgmtAddr(text: string | undefined, overlayCidr: string | null, raftAdvertise: HostPort): HostPort | null {
  if (!text) return null;
  if (text.startsWith('overlay:')) {
    if (overlayCidr === null) throw new ConfigError('VAULT_MGMT_ADDR', 'overlay:PORT needs VAULT_OVERLAY_CIDR');
    const { port } = parseHostPort('VAULT_MGMT_ADDR', `0.0.0.0:${text.slice('overlay:'.length)}`);
    return { host: raftAdvertise.host, port };
  }
  return parseHostPort('VAULT_MGMT_ADDR', text);
}

/**
 * Raft is plain HTTP by design: with the overlay enabled it must listen and be
 * advertised on an overlay address only, never on 0.0.0.0 or an underlay
 * address, and so must the management listener if there is one.
 */
function checkOverlay(cidrText: string, raftAddr: HostPort, raftAdvertise: HostPort, mgmtAddr: HostPort | null): void {
  let cidr: Cidr;
  try {
    cidr = parseCidr(cidrText);
  } catch (err) {
    throw new ConfigError('VAULT_OVERLAY_CIDR', (err as Error).message);
  }
  const inside = (host: string) => new Allowlist([cidr]).allows(host);
  if (!inside(raftAddr.host)) {
    const hint = raftAddr.host === '0.0.0.0' ? ' (set VAULT_RAFT_ADDR, or list this node in VAULT_PEERS with its overlay address)' : '';
    throw new ConfigError('VAULT_RAFT_ADDR', `${raftAddr.host} is not inside the overlay ${cidrText}: Raft would be reachable off the overlay${hint}`);
  }
  if (!inside(raftAdvertise.host)) {
    throw new ConfigError('VAULT_RAFT_ADVERTISE', `${raftAdvertise.host} is not inside the overlay ${cidrText}`);
  }
  if (mgmtAddr && !inside(mgmtAddr.host)) {
    throw new ConfigError('VAULT_MGMT_ADDR', `${mgmtAddr.host} is not inside the overlay ${cidrText}: management would be reachable off the overlay`);
  }
}
