/**
 * The committed TEST-ONLY certificates (certs-fixtures/, made by
 * scripts/make-certs.mjs), loaded once. Plain JavaScript so that bench/ and
 * scripts/ (run by node on dist/) share it with the tests.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The fixtures folder as a URL (ends with '/'). */
export const FIXTURES_URL = new URL('../../certs-fixtures/', import.meta.url);
/** The fixtures folder as a path (ends with '/'). */
export const FIXTURES_DIR = fileURLToPath(FIXTURES_URL);

/** The bytes of one fixture file, e.g. `fixture('ca.pem')`. */
export function fixture(name) {
  return readFileSync(new URL(name, FIXTURES_URL));
}

/** One fixture file as text (PEM). */
export function fixtureText(name) {
  return readFileSync(new URL(name, FIXTURES_URL), 'utf8');
}

/** The path of one fixture file (for a command line). */
export function fixturePath(name) {
  return FIXTURES_DIR + name;
}

export const fixtures = {
  key: fixture('server.key'),
  cert: fixture('server.pem'),
  ca: fixture('ca.pem'),
  clientKey: fixture('client.key'),
  clientCert: fixture('client.pem'),
};
