import { describe, expect, it } from 'vitest';
import { decodeBase64Into, isWgKey, KeyFileError, PrivateKey } from '../../../common/wireguard-key.js';
import { KEYS } from './fixtures.js';

describe('WireGuard keys', () => {
  it('derives the public key that `wg pubkey` prints', () => {
    for (const k of Object.values(KEYS)) expect(PrivateKey.fromFile(Buffer.from(k.priv + '\n')).publicKey).toBe(k.pub);
  });

  it('trims surrounding whitespace, as a Secret written by hand often has', () => {
    expect(PrivateKey.fromFile(Buffer.from(`  \t${KEYS.n1.priv}\r\n\n`)).publicKey).toBe(KEYS.n1.pub);
  });

  it.each([
    ['empty', ''],
    ['short', KEYS.n1.priv.slice(1)],
    ['two keys', `${KEYS.n1.priv}\n${KEYS.n2.priv}`],
    ['not base64', '*' + KEYS.n1.priv.slice(1)],
    ['no padding', KEYS.n1.priv.slice(0, 43) + 'A'],
    ['space inside', KEYS.n1.priv.slice(0, 20) + ' ' + KEYS.n1.priv.slice(21)],
    ['non-canonical padding bits', KEYS.n1.priv.slice(0, 42) + 'F='],
  ])('rejects a %s key file without echoing it', (_what, text) => {
    let err: unknown;
    try {
      PrivateKey.fromFile(Buffer.from(text));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KeyFileError);
    expect((err as Error).message).not.toContain(KEYS.n1.priv.slice(4, 40));
  });

  it('never prints itself and hands the key over as bytes only', () => {
    const k = PrivateKey.fromFile(Buffer.from(KEYS.n2.priv));
    expect(JSON.stringify({ k })).toBe('{"k":"[private key]"}');
    expect(String(k)).toBe('[private key]');
    const bytes = k.stdinBytes();
    expect(bytes.toString('latin1')).toBe(KEYS.n2.priv + '\n');
    expect(k.sameAs(PrivateKey.fromFile(Buffer.from(KEYS.n2.priv)))).toBe(true);
    expect(k.sameAs(PrivateKey.fromFile(Buffer.from(KEYS.n1.priv)))).toBe(false);
    k.zero();
    expect(k.stdinBytes().subarray(0, 44).every((b) => b === 0)).toBe(true);
  });

  it('recognizes key text', () => {
    expect(isWgKey(KEYS.n3.pub)).toBe(true);
    expect(isWgKey(KEYS.n3.pub + ' ')).toBe(false);
    expect(isWgKey('A'.repeat(43) + '=')).toBe(true);
    expect(isWgKey('A'.repeat(42) + 'B=')).toBe(false); // non-zero padding bits
  });

  it('decodes base64 without making a string', () => {
    const out = Buffer.alloc(40);
    expect(decodeBase64Into(Buffer.from(KEYS.n1.pub), out, 8)).toBe(32);
    expect(out.subarray(8).toString('base64')).toBe(KEYS.n1.pub);
    expect(decodeBase64Into(Buffer.from('ab$d'), out, 0)).toBe(-1);
  });
});
