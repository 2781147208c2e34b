// Server-generated secret values for :rotate. Rejection sampling keeps every
// character equally likely for any charset size.
import { randomBytes } from 'node:crypto';

export const CHARSETS = {
  alphanumeric: 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789',
  hex: '0123456789abcdef',
  base64url: 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_',
  printable: '!"#$%&\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~',
} as const;

export type Charset = keyof typeof CHARSETS;
export const DEFAULT_ROTATE_LENGTH = 32;
/** The lengths :rotate accepts (the API's body schema; the CLI checks them before sending). */
export const ROTATE_LENGTH_MIN = 8;
export const ROTATE_LENGTH_MAX = 4096;

export function randomValue(length: number, charset: Charset): string {
  const alphabet = CHARSETS[charset];
  const limit = 256 - (256 % alphabet.length); // bytes at or above this would bias the modulo
  let out = '';
  while (out.length < length) {
    for (const b of randomBytes(length * 2)) {
      if (b >= limit) continue;
      out += alphabet[b % alphabet.length];
      if (out.length === length) break;
    }
  }
  return out;
}
