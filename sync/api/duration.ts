// Durations as CofferSecret.spec.refreshInterval and the sync CLI spell them:
// hours, minutes and seconds in that order, each optional (30s, 5m, 1h, 1h30m).

const DURATION = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/;

/** Milliseconds, or undefined for '' or anything that is not such a duration. */
export function parseDuration(s: string): number | undefined {
  const m = DURATION.exec(s);
  if (!m || s === '') return undefined;
  const [h, min, sec] = [m[1], m[2], m[3]].map((x) => (x === undefined ? 0 : Number(x)));
  const ms = ((h! * 60 + min!) * 60 + sec!) * 1000;
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** refreshInterval bounds: often enough to matter, rare enough not to load Coffer. */
export const MIN_REFRESH_MS = 10_000;
export const MAX_REFRESH_MS = 24 * 3_600_000;
