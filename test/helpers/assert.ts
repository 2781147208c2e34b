// Assertions shared by the security tests: the fixed error shape, and that a
// response leaks nothing about the server's insides.
import { expect } from 'vitest';
import type { HttpResponse } from './http.js';
import { ROOT } from './node.js';

/** The response is exactly `{"error":{"code","message"}}` with this status and code. */
export function expectError(res: HttpResponse, status: number, code: string): void {
  expect({ status: res.status, body: res.body }).toEqual({
    status,
    body: { error: { code, message: expect.any(String) } },
  });
  expect(String(res.headers['content-type'])).toMatch(/^application\/json/);
  expectNoInternals(res);
}

/** No stack frames, source locations or filesystem paths in a response. */
export function expectNoInternals(res: HttpResponse, extraPaths: string[] = []): void {
  const text = res.text;
  for (const p of [ROOT, process.cwd(), 'node_modules', ...extraPaths]) expect(text).not.toContain(p);
  expect(text).not.toMatch(/\bat [^\s]+ \(|\n\s+at |\.[cm]?[jt]s:\d+/);
  expect(text).not.toMatch(/"stack"|Error: /);
}
