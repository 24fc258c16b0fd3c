/** Types of test/support/fixtures.mjs. */
export const FIXTURES_URL: URL;
export const FIXTURES_DIR: string;
export function fixture(name: string): Buffer;
export function fixtureText(name: string): string;
export function fixturePath(name: string): string;
export const fixtures: { key: Buffer; cert: Buffer; ca: Buffer; clientKey: Buffer; clientCert: Buffer };
