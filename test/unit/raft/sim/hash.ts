// Chain hashes over log entries: chain(i) = H(chain(i-1), entry i). Two logs
// with equal chain(i) agree on every entry up to i, so log matching and
// prefix agreement become O(1) comparisons.

import type { Entry } from '../../../../server/raft/core/index.js';

const TYPE_CODE = { normal: 1, noop: 2, confChange: 3 } as const;

/** Chain value of the bootstrap snapshot point (index 1, term 1). */
export const BOOTSTRAP_CHAIN = 0x1234567;
/** Chain value of the empty log (index 0). */
export const EMPTY_CHAIN = 0;

export function chainNext(prev: number, e: Entry): number {
  let h1 = 0xdeadbeef ^ (prev >>> 0);
  let h2 = 0x41c6ce57 ^ Math.floor(prev / 4294967296);
  const mix = (x: number): void => {
    h1 = Math.imul(h1 ^ x, 2654435761);
    h2 = Math.imul(h2 ^ x, 1597334677);
  };
  mix(e.term);
  mix(e.index);
  mix(TYPE_CODE[e.type]);
  const d = e.data;
  for (let i = 0; i < d.length; i++) mix(d[i] as number);
  mix(d.length);
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

const decoder = new TextDecoder();

/** Human-readable identity of an entry (for state-machine safety and traces). */
export function entryIdentity(e: Entry): string {
  return `${e.term}/${e.type}/${decoder.decode(e.data)}`;
}
