// Reading a vault pod's GET /v1/health: the release it runs (`version`), the
// Raft leader it knows (`leader_id`) and, from servers with autopilot, the
// Raft configuration it has applied (`voters`, `learners`: node ids). A
// resize reads the last two from the leader; older servers lack them.
//
// The URL comes from a template so tests whose pods are fake (kwok: the pod IP
// reaches nothing) can point the operator at a local stub server:
//   default  {scheme}://{podIP}:8200/v1/health
//   e.g.     http://127.0.0.1:9999/health/{namespace}/{pod}
// Placeholders: {scheme} (http, or https when spec.tls is set), {podIP},
// {pod}, {namespace}, {port} (8200). Set with --pod-health-url or
// COFFER_OPERATOR_POD_HEALTH_URL.
import http from 'node:http';
import https from 'node:https';
import { API_PORT } from '../manifests/names.js';

export const DEFAULT_HEALTH_URL = '{scheme}://{podIP}:{port}/v1/health';

export interface PodHealth {
  /** `version` (the release), null when absent. */
  version: string | null;
  leaderId: string | null;
  /** `voters`: ids of the voters in the configuration this node applied; null when the server does not report it. */
  voters: string[] | null;
  /** `learners`: ids of the learners; null when the server does not report it. */
  learners: string[] | null;
}

export interface PodTarget {
  pod: string;
  namespace: string;
  podIP: string | undefined;
  tls: boolean;
}

/** Resolves the health of one pod, or null when it cannot be reached or answers nonsense. Never throws. */
export type PodHealthProbe = (target: PodTarget) => Promise<PodHealth | null>;

/** The URL for a pod, or undefined when the template needs a pod IP the pod does not have yet. */
export function healthUrl(template: string, t: PodTarget): string | undefined {
  if (template.includes('{podIP}') && !t.podIP) return undefined;
  return template
    .replaceAll('{scheme}', t.tls ? 'https' : 'http')
    .replaceAll('{podIP}', t.podIP ?? '')
    .replaceAll('{pod}', encodeURIComponent(t.pod))
    .replaceAll('{namespace}', encodeURIComponent(t.namespace))
    .replaceAll('{port}', String(API_PORT));
}

export function httpHealthProbe(opts: { urlTemplate?: string; timeoutMs?: number } = {}): PodHealthProbe {
  const template = opts.urlTemplate ?? DEFAULT_HEALTH_URL;
  const timeoutMs = opts.timeoutMs ?? 2_000;
  return async (target) => {
    const url = healthUrl(template, target);
    if (url === undefined) return null;
    try {
      const body = await getJson(url, timeoutMs);
      if (typeof body !== 'object' || body === null) return null;
      return parseHealth(body);
    } catch {
      return null;
    }
  };
}

/** The fields the operator reads from a /v1/health body; anything malformed counts as absent. */
export function parseHealth(body: object): PodHealth {
  const o = body as { version?: unknown; leader_id?: unknown; voters?: unknown; learners?: unknown };
  return {
    version: typeof o.version === 'string' ? o.version : null,
    leaderId: typeof o.leader_id === 'string' && o.leader_id !== '' ? o.leader_id : null,
    voters: idList(o.voters),
    learners: idList(o.learners),
  };
}

function idList(v: unknown): string[] | null {
  if (!Array.isArray(v) || v.length > 64 || !v.every((x) => typeof x === 'string' && x.length > 0 && x.length <= 253)) return null;
  return [...new Set(v as string[])].sort();
}

function getJson(url: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : http;
    // The pods' API certificate is issued for the Service names, not pod IPs,
    // and /v1/health carries nothing secret: TLS is not verified here.
    const req = mod.get(u, { timeout: timeoutMs, ...(u.protocol === 'https:' ? { rejectUnauthorized: false } : {}) }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`HTTP ${res.statusCode}`));
        return;
      }
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        data += c;
        if (data.length > 65_536) req.destroy(new Error('response too large'));
      });
      res.on('end', () => {
        try {
          resolve(JSON.parse(data));
        } catch (err) {
          reject(err as Error);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}
