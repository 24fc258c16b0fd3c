import { PassThrough } from 'node:stream';

/** A writable that keeps what was written (CLI stdout/stderr in tests). */
export function sink(): PassThrough & { text(): string; bytes(): Buffer } {
  const chunks: Buffer[] = [];
  const s = new PassThrough() as PassThrough & { text(): string; bytes(): Buffer };
  s.on('data', (c: Buffer) => chunks.push(c));
  s.bytes = () => Buffer.concat(chunks);
  s.text = () => s.bytes().toString('utf8');
  return s;
}
