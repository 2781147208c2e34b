// kubectl and docker, run as child processes against the kind cluster that
// `npm run e2e:up` made (KUBECONFIG from COFFER_E2E_KUBECONFIG or KUBECONFIG).
import { execFile, spawn } from 'node:child_process';

export const KUBECONFIG = process.env.COFFER_E2E_KUBECONFIG ?? process.env.KUBECONFIG ?? '';
export const KUBECTL = process.env.COFFER_KUBECTL ?? 'kubectl';
export const DOCKER = process.env.DOCKER ?? 'docker';
/** Longest single wait (pods starting, a rollout step) on a 2-core machine. */
export const WAIT_MS = Number(process.env.COFFER_E2E_TIMEOUT ?? 600) * 1000;

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Runs a command; never throws, `code` says how it ended. `input` goes to stdin. */
export function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: { ...process.env, KUBECONFIG }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ stdout, stderr: stderr + e.message, code: -1 });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code: code ?? -1 });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** kubectl that must succeed; throws with its stderr otherwise. */
export async function kubectl(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  const r = await run(KUBECTL, args, opts);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

export async function getJson<T = any>(args: string[]): Promise<T> {
  return JSON.parse(await kubectl([...args, '-o', 'json'])) as T;
}

/** `kubectl apply -f -` of objects given as JS values. */
export async function apply(...objects: object[]): Promise<void> {
  await kubectl(['apply', '-f', '-'], { input: objects.map((o) => JSON.stringify(o)).join('\n') });
}

/** Polls `check` every `everyMs` until it returns a value other than undefined/false, or fails after `ms`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, ms = WAIT_MS, everyMs = 2000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${Math.round(ms / 1000)} s waiting for ${what}${last ? `: ${String((last as Error).message ?? last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Creates the namespace; one an earlier run left terminating is waited out first. */
export async function ensureNamespace(ns: string): Promise<void> {
  await waitFor(`namespace ${ns} of an earlier run to go`, async () => {
    const r = await run(KUBECTL, ['get', 'namespace', ns, '-o', 'jsonpath={.metadata.deletionTimestamp}']);
    return r.code !== 0 || r.stdout.trim() === '';
  });
  await apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
}

/** Names of the kind cluster's node containers. */
export async function kindNodes(): Promise<string[]> {
  const nodes = await getJson<{ items: { metadata: { name: string } }[] }>(['get', 'nodes']);
  return nodes.items.map((n) => n.metadata.name);
}

export function docker(args: string[], timeoutMs = 120_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(DOCKER, args, { timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      resolve({ stdout, stderr, code: err ? ((err as { code?: number }).code ?? -1) : 0 }),
    );
  });
}
