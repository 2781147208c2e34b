// The sync controller's speed (issue 14):
//   node dist/bench/sync.js [--count=1000] [--keys=3] [--idle=60] [--rotations=50]
//                           [--watch-wait=30] [--workers=4] [--spacing-ms=200]
// 1. a real control plane, a 3-node Coffer on loopback and `coffer sync run`
//    as a process (bench/sync-env.ts); `count` × `keys` Coffer secrets and
//    `count` CofferSecrets of `keys` items each;
// 2. time until every CofferSecret is Ready=True and every target Secret exists;
// 3. idle: Coffer requests per second while nothing changes, from the nodes'
//    own coffer_http_requests_total (summed over nodes, by route);
// 4. rotations: single-secret PUTs `spacing-ms` apart, each timed from the
//    PUT's answer to a watch event on the target Secret carrying the version;
// 5. the figures beside ESO's model (every key polled every refreshInterval).
import { randomBytes } from 'node:crypto';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import { cofferSecret, type DataItem } from '../test/k8s/harness/use-sync.js';
import { cpuSeconds, flagReaders, parseFlags, rejectUnknownFlags } from './common.js';
import { httpJson, metric, requestsByRoute, samples, startWorld, type SyncWorld } from './sync-env.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const t0 = Date.now();
const log = (line: string) => process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${line}\n`);
/** The controller's default blocking-query wait and the CRD's default refreshInterval. */
const DEFAULT_WAIT_S = 300;
const DEFAULT_REFRESH_S = 300;
const NAMESPACE = 'bench';

const secretName = (i: number, j: number) => `bench/s${i}-k${j}`;
const csName = (i: number) => `cs-${i}`;
const value = () => randomBytes(24).toString('hex'); // never printed

function pct(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** Runs `fn` over 0..n-1 with `width` in flight. */
async function pool(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, n) }, async () => {
    while (next < n) await fn(next++);
  }));
}

async function leaderUrl(w: SyncWorld): Promise<string> {
  const id = await w.coffer.waitForLeader();
  return w.coffer.member(id).url;
}

/** PUT on the leader (retried on 503 while it moves); returns the new version. */
async function put(w: SyncWorld, leader: { url: string }, name: string): Promise<number> {
  for (let i = 0; ; i++) {
    const r = await httpJson(leader.url, 'PUT', `/v1/secrets/${name}`, w.coffer.token, { value: value() }).catch((e: Error) => ({ status: 0, text: e.message, json: null }));
    if (r.status >= 200 && r.status < 300) return r.json.version as number;
    if (i >= 20 || (r.status !== 0 && r.status !== 503 && r.status !== 307 && r.status !== 421)) throw new Error(`PUT ${name}: ${r.status} ${r.text.slice(0, 200)}`);
    await sleep(200);
    leader.url = await leaderUrl(w);
  }
}

async function listJson(w: SyncWorld, p: string): Promise<any> {
  const r = await w.cp.api('GET', p);
  if (r.status !== 200) throw new Error(`GET ${p}: ${r.status} ${r.body.slice(0, 200)}`);
  return r.json;
}

// ---------------------------------------------------------------- phases

async function seed(w: SyncWorld, count: number, keys: number, leader: { url: string }): Promise<number> {
  const started = Date.now();
  await pool(count * keys, 16, async (n) => {
    await put(w, leader, secretName(Math.floor(n / keys), n % keys));
  });
  const s = (Date.now() - started) / 1000;
  log(`${count * keys} Coffer secrets written in ${s.toFixed(1)} s (${((count * keys) / s).toFixed(0)}/s, 16 in flight)`);
  return s;
}

async function firstSync(w: SyncWorld, count: number, keys: number): Promise<{ createdS: number; syncedS: number }> {
  const started = Date.now();
  await pool(count, 16, async (i) => {
    const data: DataItem[] = Array.from({ length: keys }, (_, j) => ({ key: `k${j}`, name: secretName(i, j) }));
    // Spread over the three nodes, as a client Service would.
    const obj = cofferSecret(NAMESPACE, csName(i), w.addresses[i % w.addresses.length]!, data);
    const r = await w.cp.api('POST', `/apis/coffer.dev/v1alpha1/namespaces/${NAMESPACE}/coffersecrets`, obj);
    if (r.status !== 201) throw new Error(`create ${csName(i)}: ${r.status} ${r.body.slice(0, 300)}`);
  });
  const createdS = (Date.now() - started) / 1000;
  log(`${count} CofferSecrets created in ${createdS.toFixed(1)} s (API POSTs, 16 in flight)`);
  let lastLog = 0;
  for (;;) {
    const cs = await listJson(w, `/apis/coffer.dev/v1alpha1/namespaces/${NAMESPACE}/coffersecrets`);
    const ready = (cs.items as any[]).filter((o) => {
      const c = (o.status?.conditions ?? []).find((x: any) => x.type === 'Ready');
      return c?.status === 'True' && o.status?.observedGeneration === o.metadata.generation;
    }).length;
    // (Listed only once every CofferSecret is Ready: the bench's own lists load the same 2 cores.)
    const secrets = ready < count ? 0 : (await listJson(w, `/api/v1/namespaces/${NAMESPACE}/secrets?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dcoffer-sync`)).items.length as number;
    const el = (Date.now() - started) / 1000;
    if (ready === count && secrets === count) {
      log(`first full sync: ${count} Ready=True and ${secrets} Secrets ${el.toFixed(1)} s after the first create`);
      return { createdS, syncedS: el };
    }
    if (Date.now() - lastLog > 5000) {
      lastLog = Date.now();
      log(`  ${ready}/${count} Ready (${el.toFixed(0)} s)`);
    }
    if (el > 1800) throw new Error(`first sync incomplete after 30 min: ${ready} Ready, ${secrets} Secrets`);
    await sleep(1000);
  }
}

interface Idle {
  seconds: number;
  total: number;
  byRoute: [string, number][];
  valueReads: number;
  waitingQueries: number;
  controllerSyncs: number;
  /** CPU of the 3 Coffer processes together and of the controller, % of one core. */
  nodesCpuPct: number;
  controllerCpuPct: number;
}

async function idle(w: SyncWorld, seconds: number): Promise<Idle> {
  const before = requestsByRoute(await w.scrapeNodes());
  const cBefore = metric(await w.scrapeController(), 'coffer_sync_syncs_total') ?? 0;
  const pids = [...w.coffer.members.map((m) => m.proc?.proc.pid), w.controller.pid];
  const cpuBefore = pids.map((p) => cpuSeconds(p));
  const started = Date.now();
  await sleep(seconds * 1000);
  const texts = await w.scrapeNodes();
  const el = (Date.now() - started) / 1000;
  const cpu = pids.map((p, i) => (cpuSeconds(p) - cpuBefore[i]!) / el * 100);
  const after = requestsByRoute(texts);
  const byRoute: [string, number][] = [];
  let total = 0;
  for (const [k, v] of after) {
    const d = v - (before.get(k) ?? 0);
    if (d > 0) byRoute.push([k, d]);
    total += d;
  }
  byRoute.sort((a, b) => b[1] - a[1]);
  const valueReads = byRoute.filter(([k]) => k === 'GET /v1/secrets/*').reduce((n, [, v]) => n + v, 0);
  const waitingQueries = texts.reduce((n, t) => n + samples(t, 'coffer_watch_waiting_queries').reduce((m, [, v]) => m + v, 0), 0);
  const controllerSyncs = (metric(await w.scrapeController(), 'coffer_sync_syncs_total') ?? 0) - cBefore;
  return { seconds: el, total, byRoute, valueReads, waitingQueries, controllerSyncs, nodesCpuPct: cpu.slice(0, -1).reduce((a, b) => a + b, 0), controllerCpuPct: cpu.at(-1)! };
}

interface Rotations {
  latenciesMs: number[];
  missed: number;
}

/** Target Secret events (a Kubernetes watch), matched to rotations by the synced-versions annotation. */
async function rotations(w: SyncWorld, count: number, keys: number, n: number, spacingMs: number, leader: { url: string }): Promise<Rotations> {
  const kc = new KubeConfig();
  kc.loadFromFile(w.cp.kubeconfig);
  const firstSeen = new Map<string, number>(); // `${secret}|${name}@${version}` -> ms
  const waiters = new Map<string, (at: number) => void>();
  const rv = (await listJson(w, `/api/v1/namespaces/${NAMESPACE}/secrets?limit=1`)).metadata.resourceVersion as string;
  let watchErr: unknown;
  const abort = await new Watch(kc).watch(`/api/v1/namespaces/${NAMESPACE}/secrets`, { resourceVersion: rv, allowWatchBookmarks: false }, (phase, obj) => {
    const at = Date.now();
    if (phase !== 'ADDED' && phase !== 'MODIFIED') return;
    let versions: Record<string, number>;
    try {
      versions = JSON.parse(obj?.metadata?.annotations?.['coffer.dev/synced-versions'] ?? '{}');
    } catch {
      return;
    }
    const name = obj.metadata.name as string;
    for (const [k, v] of Object.entries(versions)) {
      const key = `${name}|${k}@${v}`;
      if (firstSeen.has(key)) continue;
      firstSeen.set(key, at);
      waiters.get(key)?.(at);
    }
  }, (err) => (watchErr = err));

  // Distinct CofferSecrets, spread over the range; a random key of each.
  const picks = Array.from({ length: n }, (_, r) => [Math.floor(((r + 0.5) * count) / n) % count, Math.floor(Math.random() * keys)] as const);
  const pending: Promise<number | null>[] = [];
  for (const [i, j] of picks) {
    pending.push((async () => {
      const version = await put(w, leader, secretName(i, j));
      const answered = Date.now();
      const key = `${csName(i)}|${secretName(i, j)}@${version}`;
      // The watch fills firstSeen (an event may even come before the PUT's answer): no API call per rotation.
      const at = firstSeen.get(key) ?? await new Promise<number | undefined>((resolve) => {
        const timer = setTimeout(() => resolve(undefined), 30_000);
        waiters.set(key, (t) => (clearTimeout(timer), resolve(t)));
      });
      waiters.delete(key);
      return at === undefined ? null : Math.max(0, at - answered);
    })());
    await sleep(spacingMs);
  }
  const results = await Promise.all(pending);
  abort.abort();
  if (watchErr && results.some((r) => r === null)) log(`Secret watch ended: ${String(watchErr)}`);
  const latenciesMs = results.filter((r): r is number => r !== null).sort((a, b) => a - b);
  return { latenciesMs, missed: results.length - latenciesMs.length };
}

// ---------------------------------------------------------------- report

function fmt(n: number, digits = 2): string {
  if (!Number.isFinite(n)) return 'n/a';
  return n >= 100 ? n.toFixed(0) : n.toFixed(digits);
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  rejectUnknownFlags(flags, ['count', 'keys', 'idle', 'rotations', 'watch-wait', 'workers', 'spacing-ms']);
  const { num } = flagReaders(flags);
  const count = num('count', '1000', 1);
  const keys = num('keys', '3', 1);
  const idleS = num('idle', '60', 1);
  const nRot = num('rotations', '50', 0);
  const waitS = num('watch-wait', '30', 1);
  const workers = num('workers', '4', 1);
  const spacingMs = num('spacing-ms', '200', 0);
  if (waitS > 300) throw new Error('--watch-wait: at most 300 (Coffer caps a blocking query there)');

  const w = await startWorld({ namespace: NAMESPACE, watchWaitS: waitS, workers, log });
  process.once('SIGINT', () => void w.stop().finally(() => process.exit(130)));
  try {
    const leader = { url: await leaderUrl(w) };
    const baseS = Math.min(idleS, 10);
    log(`baseline: ${baseS} s before any CofferSecret exists…`);
    const base = await idle(w, baseS);
    const seedS = await seed(w, count, keys, leader);
    const sync = await firstSync(w, count, keys);
    await sleep(3000); // the status writes' own informer updates settle
    log(`idle ${idleS} s (nothing changes; ${count} blocking queries re-issued every ${waitS} s)…`);
    const quiet = await idle(w, idleS);
    log(`rotations: ${nRot}, one every ${spacingMs} ms…`);
    const rot = await rotations(w, count, keys, nRot, spacingMs, leader);
    const ctl = await w.scrapeController();
    const prop = { count: metric(ctl, 'coffer_sync_propagation_seconds_count') ?? 0, sum: metric(ctl, 'coffer_sync_propagation_seconds_sum') ?? 0 };

    const names = count * keys;
    const rps = quiet.total / quiet.seconds;
    const formula = count / waitS;
    const atDefaults = count / DEFAULT_WAIT_S + count / DEFAULT_REFRESH_S;
    const lines = [
      '',
      `== coffer sync bench: ${count} CofferSecrets × ${keys} keys (${names} Coffer names), 3-node Coffer, 1 controller (--workers ${workers}) ==`,
      `seed: ${names} PUTs in ${fmt(seedS)} s`,
      `first full sync: ${fmt(sync.syncedS)} s from the first create (creates took ${fmt(sync.createdS)} s) = ${fmt(count / sync.syncedS)} CofferSecrets/s`,
      `idle ${fmt(quiet.seconds, 1)} s: ${quiet.total} Coffer requests = ${fmt(rps, 3)} req/s over 3 nodes; value reads (GET /v1/secrets/*): ${quiet.valueReads}; controller syncs: ${quiet.controllerSyncs}; blocking queries waiting at the end: ${quiet.waitingQueries}`,
      `  CPU while idle: Coffer nodes ${fmt(quiet.nodesCpuPct, 1)} % of one core (3 processes together), controller ${fmt(quiet.controllerCpuPct, 1)} %; before any CofferSecret existed (${fmt(base.seconds, 1)} s, ${base.total} requests): nodes ${fmt(base.nodesCpuPct, 1)} %, controller ${fmt(base.controllerCpuPct, 1)} %`,
      ...quiet.byRoute.map(([k, v]) => `    ${k}: ${v} (${fmt(v / quiet.seconds, 3)}/s)`),
      `  model: count/watch-wait = ${count}/${waitS} s = ${fmt(formula, 3)} req/s, independent of keys (${keys} here); at the defaults (wait 300 s, refreshInterval 5m): count/300 + count/300 = ${fmt(atDefaults, 3)} req/s, no value read`,
      `rotation -> target Secret (watch event): n=${rot.latenciesMs.length}${rot.missed ? ` (${rot.missed} not seen within 30 s)` : ''} p50 ${fmt(pct(rot.latenciesMs, 0.5), 0)} ms, p90 ${fmt(pct(rot.latenciesMs, 0.9), 0)} ms, p99 ${fmt(pct(rot.latenciesMs, 0.99), 0)} ms, max ${fmt(rot.latenciesMs.at(-1) ?? Number.NaN, 0)} ms`,
      `  controller's coffer_sync_propagation_seconds (Coffer created_at -> Secret written): n=${prop.count}, mean ${fmt(prop.count ? (prop.sum / prop.count) * 1000 : Number.NaN, 0)} ms`,
      `ESO model for the same ${names} keys (each key read every refreshInterval):`,
      ...[3600, 60].map((iv) => `  refreshInterval ${iv === 3600 ? '1h' : '1m'}: ${fmt(names / iv, 3)} value reads/s; rotation -> Secret mean ${iv / 2} s, worst ${iv} s`),
    ];
    for (const l of lines) process.stdout.write(`${l}\n`);
    process.stdout.write(`RESULT ${JSON.stringify({ count, keys, workers, waitS, seedS, ...sync, idle: { ...quiet, rps }, baseline: base, rotations: { n: rot.latenciesMs.length, missed: rot.missed, p50: pct(rot.latenciesMs, 0.5), p99: pct(rot.latenciesMs, 0.99), max: rot.latenciesMs.at(-1) ?? null }, propagation: prop })}\n`);
  } finally {
    await w.stop();
  }
}

main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
