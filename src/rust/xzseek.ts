// Extracting a few directories from a big .tar.xz without decompressing all of it. Debian's
// linux-source-X.Y.tar.xz is xz with many independent blocks (24 MiB of tar each) and its members are
// sorted by name, so the blocks that hold rust/ and scripts/ can be found by looking at the first tar
// header of a few blocks, and only those blocks decompressed: ~2 of 68 blocks instead of 1.6 GB.
// Any surprise (one block, unsorted members, a wanted path not found) returns undefined and the caller
// extracts with tar as before: the result is the same files either way.
import { spawn } from 'node:child_process';
import { mkdir, open, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { run, type CommandLog } from '../system/run.js';

interface XzBlock {
  compOffset: number;
  uncompOffset: number;
  totalSize: number;
  unpaddedSize: number;
  uncompSize: number;
}

/** The block table of `xz --robot -lvv` (one stream only; undefined otherwise). */
export function parseXzBlocks(robot: string): { blocks: XzBlock[]; checkSize: number } | undefined {
  const streams = robot.split('\n').filter((l) => l.startsWith('stream\t'));
  if (streams.length !== 1) return undefined;
  const checkSize = ({ CRC32: 4, CRC64: 8, 'SHA-256': 32, None: 0 } as Record<string, number>)[streams[0]!.split('\t')[8]!];
  if (checkSize === undefined) return undefined;
  const blocks: XzBlock[] = [];
  for (const line of robot.split('\n')) {
    const f = line.split('\t');
    if (f[0] !== 'block' || f.length < 14) continue;
    const n = (i: number) => Number(f[i]);
    blocks.push({ compOffset: n(4), uncompOffset: n(5), totalSize: n(6), uncompSize: n(7), unpaddedSize: n(11) + n(13) + checkSize });
  }
  return blocks.length && blocks.every((b) => Number.isSafeInteger(b.unpaddedSize) && b.uncompOffset % 512 === 0) ? { blocks, checkSize } : undefined;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}

function u32le(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

/** A standalone .xz stream of some consecutive blocks: the file's stream header, the blocks, a new index and footer. */
async function blocksAsStream(file: string, blocks: XzBlock[]): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const header = Buffer.alloc(12);
    await fh.read(header, 0, 12, 0);
    const parts: Buffer[] = [header];
    for (const b of blocks) {
      const buf = Buffer.alloc(b.totalSize);
      await fh.read(buf, 0, b.totalSize, b.compOffset);
      parts.push(buf);
    }
    const index = [0, ...varint(blocks.length), ...blocks.flatMap((b) => [...varint(b.unpaddedSize), ...varint(b.uncompSize)])];
    while (index.length % 4) index.push(0);
    const indexBuf = Buffer.concat([Buffer.from(index), u32le(crc32(Buffer.from(index)))]);
    const flags = header.subarray(6, 8);
    const backward = Buffer.concat([u32le(indexBuf.length / 4 - 1), flags]);
    parts.push(indexBuf, u32le(crc32(backward)), backward, Buffer.from('YZ'));
    return Buffer.concat(parts);
  } finally {
    await fh.close();
  }
}

/** Decompresses blocks with xz; with `enough`, stops as soon as the output so far satisfies it. */
async function decode(file: string, blocks: XzBlock[], enough?: (out: Buffer) => boolean): Promise<Buffer> {
  const input = await blocksAsStream(file, blocks);
  return new Promise((resolve, reject) => {
    const child = spawn('xz', ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    let err = '';
    child.stdout.on('data', (c: Buffer) => {
      if (done) return;
      chunks.push(c);
      size += c.length;
      if (enough && enough(Buffer.concat(chunks, size))) {
        done = true;
        child.kill();
        resolve(Buffer.concat(chunks, size));
      }
    });
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.stdin.on('error', () => undefined);
    child.on('error', reject);
    child.on('close', (code) => {
      if (done) return;
      if (code === 0) resolve(Buffer.concat(chunks, size));
      else reject(new Error(`xz -dc: exit ${code}: ${err.trim()}`));
    });
    child.stdin.end(input);
  });
}

interface TarEntry {
  /** Offset of the header in the buffer. */
  at: number;
  path: string;
  type: string;
  size: number;
  mode: number;
  linkname: string;
  /** Offset just past the entry's data (padded to 512). */
  next: number;
}

function cstr(buf: Buffer, start: number, len: number): string {
  const s = buf.subarray(start, start + len);
  const z = s.indexOf(0);
  return s.subarray(0, z < 0 ? s.length : z).toString('utf8');
}

function validHeader(buf: Buffer, at: number): boolean {
  if (at + 512 > buf.length || buf.toString('latin1', at + 257, at + 262) !== 'ustar') return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : buf[at + i]!;
  return parseInt(cstr(buf, at + 148, 8).trim(), 8) === sum;
}

/** The tar entries of a buffer from `start` (a header) on, with pax/GNU long names applied, until the data ends. */
function* entries(buf: Buffer, start: number, headersOnly = false): Generator<TarEntry> {
  let at = start;
  let longPath: string | undefined;
  let longLink: string | undefined;
  while (validHeader(buf, at)) {
    const size = parseInt(cstr(buf, at + 124, 12).trim() || '0', 8);
    const type = String.fromCharCode(buf[at + 156]! || 48);
    const next = at + 512 + Math.ceil(size / 512) * 512;
    const meta = type === 'x' || type === 'L' || type === 'K' || type === 'g';
    if (next > buf.length && (meta || !headersOnly)) return;
    const data = buf.subarray(at + 512, at + 512 + size);
    if (meta && type !== 'g') {
      if (type === 'L') longPath = cstr(data, 0, data.length);
      else if (type === 'K') longLink = cstr(data, 0, data.length);
      else {
        for (const rec of data.toString('utf8').split('\n')) {
          const m = /^\d+ (path|linkpath)=(.*)$/.exec(rec);
          if (m?.[1] === 'path') longPath = m[2];
          else if (m?.[1] === 'linkpath') longLink = m[2];
        }
      }
    } else if (!meta) {
      const prefix = cstr(buf, at + 345, 155);
      const name = cstr(buf, at, 100);
      yield {
        at, type, size, next,
        path: longPath ?? (prefix ? `${prefix}/${name}` : name),
        mode: parseInt(cstr(buf, at + 100, 8).trim() || '644', 8),
        linkname: longLink ?? cstr(buf, at + 157, 100),
      };
      longPath = longLink = undefined;
    }
    at = next;
  }
}

/** The first tar header at or after the start of a buffer that begins at a 512-aligned archive offset. */
function firstHeader(buf: Buffer): number | undefined {
  for (let at = 0; at + 512 <= buf.length; at += 512) if (validHeader(buf, at)) return at;
  return undefined;
}

/** Path order of `tar --sort=name` (and git archive, for these names): component by component. */
export function comparePaths(a: string, b: string): number {
  const x = a.replace(/\/$/, '').split('/');
  const y = b.replace(/\/$/, '').split('/');
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return Buffer.compare(Buffer.from(x[i]!), Buffer.from(y[i]!));
  }
  return x.length - y.length;
}

/**
 * Extracts the members under `prefixes` (paths inside the archive: `linux-source-7.2/rust`, or one file)
 * into `dest`, stripping the first path component. Returns the number of files written, or undefined
 * when the archive is not one it can seek in (the caller then runs tar).
 */
export interface Wanted {
  /** A dir or file in the archive (`linux-source-7.2/rust`). */
  prefix: string;
  /** Of the members under it, those whose path (without the top dir) matches; all when unset. */
  match?: RegExp;
}

export async function extractByBlocks(file: string, wanted: Wanted[], dest: string, log?: CommandLog): Promise<number | undefined> {
  const list = await run('xz', ['--robot', '-lvv', file], { allowFailure: true, log, step: 'xz --list (block table)' });
  const table = list.exitCode === 0 ? parseXzBlocks(list.stdout) : undefined;
  if (!table || table.blocks.length < 4) return undefined;
  const { blocks } = table;
  const firstPath = new Map<number, string | null>();
  /** The path of the first header that starts in block i (null: none found in its first MiBs). */
  const probe = async (i: number): Promise<string | null> => {
    if (firstPath.has(i)) return firstPath.get(i)!;
    let found: string | null = null;
    await decode(file, [blocks[i]!], (out) => {
      const at = firstHeader(out);
      if (at === undefined) return out.length > 16 << 20;
      const e = entries(out, at, true).next();
      if (e.done) return false;
      found = e.value.path;
      return true;
    });
    firstPath.set(i, found);
    return found;
  };
  let written = 0;
  for (const { prefix, match } of wanted) {
    // The last block whose first member sorts before the prefix: the prefix's members start in it or later.
    let lo = 0;
    let hi = blocks.length - 1;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      // A block in which no member starts cannot be the start: look before it (an earlier start only
      // means more to decode).
      const p = await probe(mid);
      if (p !== null && comparePaths(p, prefix) < 0) lo = mid;
      else hi = mid - 1;
    }
    // Decode from there, block by block, until the members under the prefix are past.
    let buf = Buffer.alloc(0);
    let start: number | undefined;
    let seen = false;
    let ended = false;
    for (let i = lo; i < blocks.length && !ended; i++) {
      buf = Buffer.concat([buf, await decode(file, [blocks[i]!])]);
      start ??= firstHeader(buf);
      if (start === undefined) continue;
      let consumed = start;
      for (const e of entries(buf, start)) {
        const inside = e.path === prefix || e.path.startsWith(`${prefix.replace(/\/$/, '')}/`);
        if (!inside && seen) {
          ended = true;
          break;
        }
        if (inside) {
          seen = true;
          if (!match || match.test(e.path.split('/').slice(1).join('/'))) written += await writeEntry(buf, e, dest);
        }
        consumed = e.next;
      }
      // Keep only what is not yet parsed (a member that goes on in the next block).
      buf = buf.subarray(consumed);
      start = 0;
    }
    if (!seen) return undefined;
  }
  return written;
}

async function writeEntry(buf: Buffer, e: TarEntry, dest: string): Promise<number> {
  const rel = e.path.split('/').slice(1).join('/');
  if (!rel || rel.split('/').includes('..')) return 0;
  const out = path.join(dest, rel);
  if (e.type === '5') {
    await mkdir(out, { recursive: true });
    return 0;
  }
  await mkdir(path.dirname(out), { recursive: true });
  if (e.type === '2') {
    await symlink(e.linkname, out);
    return 1;
  }
  if (e.type !== '0' && e.type !== '7') return 0;
  await writeFile(out, buf.subarray(e.at + 512, e.at + 512 + e.size), { mode: e.mode & 0o777 });
  return 1;
}
