import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  canonicalIpAddress,
  formatIpv6,
  formatIpAddress,
  parseIpAddress,
  parseIpv4,
  parseIpv6,
} from '../../src/wire/index.js';

/** WHATWG URL's IPv6 serializer implements RFC 5952 compression (but not mixed notation). */
function urlCanonical(text: string): string {
  return new URL(`http://[${text}]/`).hostname.slice(1, -1);
}

function isMapped(b: Uint8Array): boolean {
  return b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
}

describe('IPv6 text', () => {
  const table: [string, string][] = [
    ['::', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:0db8:0000:0000:0001:0000:0000:0001', '2001:db8::1:0:0:1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['0:0:1:0:0:0:0:0', '0:0:1::'],
    ['fe80::1:2', 'fe80::1:2'],
    ['::ffff:192.0.2.1', '::ffff:192.0.2.1'],
    ['::FFFF:c000:0201', '::ffff:192.0.2.1'],
    ['::192.0.2.1', '::c000:201'],
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
    ['::2:3:4:5:6:7:8', '0:2:3:4:5:6:7:8'],
  ];
  for (const [input, canon] of table) {
    it(`${input} -> ${canon}`, () => {
      expect(canonicalIpAddress(input)).toBe(canon);
    });
  }

  it('rejects what is not an IPv6 literal', () => {
    for (const bad of ['', ':', ':::', '1:2:3:4:5:6:7:8:9', '1::2::3', 'fe80::1%eth0', 'g::1', '12345::', '1:2:3:4:5:6:7:1.2.3.4', '::1.2.3']) {
      expect(parseIpv6(bad), bad).toBeNull();
    }
  });

  it('formatting matches the WHATWG serializer for all non-mapped addresses (property)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.array(fc.integer({ min: 0, max: 7 }), { maxLength: 6 }),
        (b, zeroGroups) => {
          for (const g of zeroGroups) b[2 * g] = b[2 * g + 1] = 0; // make zero runs likely
          const text = formatIpv6(b);
          expect(parseIpv6(text)).toEqual(b);
          if (!isMapped(b)) expect(text).toBe(urlCanonical(text));
        },
      ),
      { numRuns: 1500 },
    );
  });

  it('parses every text fast-check generates, to the same address as the WHATWG parser', () => {
    fc.assert(
      fc.property(fc.ipV6(), (t) => {
        const b = parseIpv6(t);
        expect(b).not.toBeNull();
        const canon = formatIpv6(b!);
        if (!isMapped(b!)) expect(canon).toBe(urlCanonical(t));
        else expect(parseIpv6(urlCanonical(t))).toEqual(b);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('IPv4 text', () => {
  it('dotted quads only', () => {
    expect(parseIpv4('192.0.2.1')).toEqual(Uint8Array.from([192, 0, 2, 1]));
    expect(parseIpv4('0.0.0.0')).toEqual(new Uint8Array(4));
    for (const bad of ['1.2.3', '256.0.0.1', '01.2.3.4', '1.2.3.4.5', ' 1.2.3.4', '0x1.2.3.4', '::1']) {
      expect(parseIpv4(bad), bad).toBeNull();
    }
  });
  it('round-trips (property)', () => {
    fc.assert(
      fc.property(fc.ipV4(), (t) => {
        const b = parseIpAddress(t);
        expect(b?.length).toBe(4);
        expect(formatIpAddress(b!)).toBe(t);
      }),
      { numRuns: 1000 },
    );
  });
});
