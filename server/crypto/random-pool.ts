// Fresh random bytes for the write path's keys and nonces, from a pool.
// Each write needs three small pieces (a DEK, its wrap nonce, the value's
// nonce); one getrandom call per piece cost ~2 % of a busy leader's loop.
// The pool is filled by the same CSPRNG (randomFillSync) 4 KiB at a time, each
// byte is handed out once, and the bytes handed out are zeroed in the pool at
// once, so a DEK taken from it does not stay behind in memory.
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
const pool = new Uint8Array(POOL_BYTES);
let at = POOL_BYTES;

/** `n` fresh random bytes in a new array of their own. */
export function randomArray(n: number): Uint8Array {
  const out = new Uint8Array(n);
  // Larger than a quarter of the pool: not worth pooling.
  if (n > POOL_BYTES / 4) return randomFillSync(out);
  if (at + n > POOL_BYTES) {
    randomFillSync(pool);
    at = 0;
  }
  const piece = pool.subarray(at, at + n);
  out.set(piece);
  piece.fill(0);
  at += n;
  return out;
}
