#!/usr/bin/env node
// Generates the TEST-ONLY TLS fixtures used by mptls' tests:
//
//   ca.pem / ca.key                    test CA (EC P-256, self-signed)
//   server.pem / server.key            server cert signed by the test CA
//   client.pem / client.key            client cert signed by the test CA (mutual TLS)
//   other-ca.pem                       a second, unrelated CA (negative tests)
//   other-server.pem / other-server.key  server cert signed by the unrelated CA
//   README.md                          how the files were made, plus SPKI pins
//
// Usage: node scripts/make-certs.mjs [outDir]     (default: <repo>/certs-fixtures)
//
// The same construction is implemented in TypeScript in src/tls/certs.ts
// (generateSelfSigned); src/ must not import from scripts/, so it is duplicated.

// @peculiar/x509 v2 needs a Reflect metadata polyfill (tsyringe) loaded first.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createHash, webcrypto } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

x509.cryptoProvider.set(webcrypto);

const EC = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGN = { name: 'ECDSA', hash: 'SHA-256' };
const VALIDITY_YEARS = 10;

/** SANs for the fixture server certificates (localhost, loopbacks, netns test hosts). */
export const SERVER_ALT_NAMES = [
  'localhost',
  '127.0.0.1',
  '127.0.0.2',
  '127.0.0.3',
  '127.0.0.4',
  '::1',
  '198.18.0.2',
  '198.18.1.2',
  '198.18.2.2',
  '198.18.3.2',
];

function validity() {
  const notBefore = new Date(Date.now() - 60 * 60 * 1000); // 1 h of clock-skew slack
  const notAfter = new Date(notBefore);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + VALIDITY_YEARS);
  return { notBefore, notAfter };
}

async function newKeys() {
  return webcrypto.subtle.generateKey(EC, true, ['sign', 'verify']);
}

async function keyPem(privateKey) {
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', privateKey);
  return x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') + '\n';
}

function certPem(cert) {
  return cert.toString('pem') + '\n';
}

function sanExtension(names) {
  return new x509.SubjectAlternativeNameExtension(
    names.map((value) => ({ type: isIP(value) ? 'ip' : 'dns', value })),
    false,
  );
}

async function createCa(commonName) {
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${commonName}, O=mptls test fixtures`,
    keys,
    signingAlgorithm: SIGN,
    ...validity(),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { keys, cert };
}

async function issue(ca, { commonName, altNames, usage }) {
  const keys = await newKeys();
  const extensions = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(
      [usage === 'client' ? x509.ExtendedKeyUsage.clientAuth : x509.ExtendedKeyUsage.serverAuth],
      false,
    ),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
  ];
  if (altNames && altNames.length > 0) extensions.push(sanExtension(altNames));
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${commonName}, O=mptls test fixtures`,
    issuer: ca.cert.subjectName,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: SIGN,
    ...validity(),
    extensions,
  });
  return { keys, cert };
}

function spkiSha256(cert) {
  return createHash('sha256').update(new Uint8Array(cert.publicKey.rawData)).digest('base64');
}

async function main() {
  const here = dirname(fileURLToPath(import.meta.url));
  const repoRoot = resolve(here, '..');
  const outDir = resolve(process.argv[2] ?? join(repoRoot, 'certs-fixtures'));
  mkdirSync(outDir, { recursive: true });

  const ca = await createCa('mptls test CA');
  const server = await issue(ca, { commonName: 'localhost', altNames: SERVER_ALT_NAMES, usage: 'server' });
  const client = await issue(ca, { commonName: 'mptls test client', usage: 'client' });
  const otherCa = await createCa('mptls unrelated test CA');
  const otherServer = await issue(otherCa, {
    commonName: 'localhost',
    altNames: SERVER_ALT_NAMES,
    usage: 'server',
  });

  const files = {
    'ca.pem': certPem(ca.cert),
    'ca.key': await keyPem(ca.keys.privateKey),
    'server.pem': certPem(server.cert),
    'server.key': await keyPem(server.keys.privateKey),
    'client.pem': certPem(client.cert),
    'client.key': await keyPem(client.keys.privateKey),
    'other-ca.pem': certPem(otherCa.cert),
    'other-server.pem': certPem(otherServer.cert),
    'other-server.key': await keyPem(otherServer.keys.privateKey),
  };

  const rel = relative(repoRoot, outDir) || '.';
  const readme = `# TLS test fixtures — TEST ONLY

**Do not use these certificates or keys for anything but tests.** The private
keys are committed to a public repository and are therefore compromised by
design.

Generated by:

\`\`\`sh
node scripts/make-certs.mjs${rel === 'certs-fixtures' ? '' : ` ${rel}`}
\`\`\`

(\`@peculiar/x509\` + WebCrypto, EC P-256 keys, ECDSA-SHA256 signatures,
validity ${VALIDITY_YEARS} years from ${validity().notBefore.toISOString().slice(0, 10)}.)
Re-running the command replaces every file here with fresh keys; the pins
below change accordingly.

| file | what |
| --- | --- |
| \`ca.pem\`, \`ca.key\` | test CA (\`CN=mptls test CA\`), self-signed |
| \`server.pem\`, \`server.key\` | server cert signed by the test CA, EKU serverAuth |
| \`client.pem\`, \`client.key\` | client cert (\`CN=mptls test client\`) signed by the test CA, EKU clientAuth, for mutual-TLS tests |
| \`other-ca.pem\` | an unrelated CA (\`CN=mptls unrelated test CA\`), for negative tests |
| \`other-server.pem\`, \`other-server.key\` | server cert signed by the unrelated CA (same SANs as \`server.pem\`) |

Server certificate subjectAltName (both \`server.pem\` and \`other-server.pem\`):

${SERVER_ALT_NAMES.map((n) => `- ${isIP(n) ? 'IP' : 'DNS'}:${n}`).join('\n')}

Keys are PKCS#8 PEM (\`-----BEGIN PRIVATE KEY-----\`).

SPKI SHA-256 pins (\`curl --pinnedpubkey\` / HPKP format):

- \`server.pem\`: \`sha256//${spkiSha256(server.cert)}\`
- \`other-server.pem\`: \`sha256//${spkiSha256(otherServer.cert)}\`
- \`client.pem\`: \`sha256//${spkiSha256(client.cert)}\`
`;
  files['README.md'] = readme;

  for (const [name, content] of Object.entries(files)) {
    writeFileSync(join(outDir, name), content);
  }
  console.log(`wrote ${Object.keys(files).length} files to ${outDir}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
