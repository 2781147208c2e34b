// What every test:k8s file does with the control plane: start one for the
// file, log its progress, stop it at the end; wait for a condition; read an
// object as JSON.
//
//   const cp = useControlPlane();          // at module top level
//   beforeAll(async () => { await cp().kubectlOk([...]); });
//   it('…', async () => { await eventually('x', async () => (await kubectlJson(cp(), [...])).status?.ready); });
import { afterAll, beforeAll } from 'vitest';
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from './control-plane.js';

/**
 * Registers a beforeAll that starts a control plane (logging with a
 * `[control-plane]` prefix unless opts.log is given) and an afterAll that
 * stops it; returns a getter for it. Call it at module top level before the
 * file's own hooks: the file's beforeAll hooks then run with the control plane
 * up, and its afterAll hooks (e.g. stopping an operator) run before it is
 * stopped, since vitest runs after-hooks in reverse order.
 */
export function useControlPlane(opts: ControlPlaneOptions = {}): () => ControlPlane {
  let cp: ControlPlane | undefined;
  beforeAll(async () => {
    cp = await startControlPlane({ log: (line) => console.log(`[control-plane] ${line}`), ...opts });
  });
  afterAll(async () => {
    await cp?.stop();
  });
  return () => {
    if (!cp) throw new Error('the control plane is not running (useControlPlane() must be called at module top level, and its beforeAll must have succeeded)');
    return cp;
  };
}

/** Polls fn every 500 ms until it returns something other than undefined or false; throws (with the last error) after timeoutMs. */
export async function eventually<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** `kubectl <args> -o json` as admin, parsed; throws on a non-zero exit. */
export async function kubectlJson(cp: ControlPlane, args: string[]): Promise<any> {
  return JSON.parse(await cp.kubectlOk([...args, '-o', 'json']));
}
