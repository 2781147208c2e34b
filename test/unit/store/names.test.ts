import { describe, expect, it } from 'vitest';
import { isValidSecretName, SECRET_NAME_PATTERN } from '../../../server/store/names.js';
import { ROTATE_PATTERN } from '../../../server/api/schemas.js';

describe('secret names', () => {
  it.each(['a', 'app/db/password', 'A.b_c-d', 'x/..y', 'a/.hidden', 'a'.repeat(256)])('accepts %s', (n) => {
    expect(isValidSecretName(n)).toBe(true);
    expect(new RegExp(SECRET_NAME_PATTERN).test(n)).toBe(true);
  });

  it.each(['', '/a', 'a/', 'a//b', '.', '..', 'a/./b', 'a/../b', '../a', 'a/..', 'a b', 'a:b', 'ä', 'a'.repeat(257)])(
    'refuses %j',
    (n) => {
      expect(isValidSecretName(n)).toBe(false);
      if (n.length <= 256) expect(new RegExp(SECRET_NAME_PATTERN).test(n)).toBe(false);
    },
  );

  it('matches rotate paths only with the suffix and a valid name', () => {
    const re = new RegExp(ROTATE_PATTERN);
    expect(re.test('app/db:rotate')).toBe(true);
    expect(re.test('app/db')).toBe(false);
    expect(re.test('app/..:rotate')).toBe(false);
    expect(re.test('a//b:rotate')).toBe(false);
  });
});
