// What a v0-mangled Rust symbol (`_R...`, rustc's symbol-mangling-version=v0) names, as far as the ABI
// check needs it: the paths of items from a crate root (`kernel::net::phy::Device`), and the crate's
// `-Zls=items` listing (rustc's own dump of a crate's module tree) to find them in.

/** A path from a crate root through nested items only (no impl between): `kernel::net::phy::register`. */
export interface CratePath {
  crate: string;
  /** The crate's v0 disambiguator (`Cs<this>_`). */
  hash: string;
  /** The nested items, outermost first, each with its namespace (`t` types and modules, `v` values). */
  segments: { ns: string; name: string }[];
}

/** The crate paths a symbol names: its own item's (down to the impl it is in, if any), and every
 * self type and trait path of an impl or generic argument on the way. Undefined when it does not parse. */
export function symbolPaths(symbol: string): CratePath[] | undefined {
  if (!symbol.startsWith('_R')) return undefined;
  const p = new Parser(symbol.slice(2));
  try {
    if (/^\d/.test(p.s)) return undefined; // an encoding version this parser does not know
    p.path();
    return p.found;
  } catch {
    return undefined;
  }
}

const BASIC_TYPES = 'abcdefhijlmnopstuvxyz';

class Parser {
  found: CratePath[] = [];
  private i = 0;
  constructor(readonly s: string) {}

  private next(): string {
    if (this.i >= this.s.length) throw new Error('unexpected end');
    return this.s[this.i++]!;
  }
  private peek(): string | undefined {
    return this.s[this.i];
  }
  private eat(c: string): boolean {
    if (this.s[this.i] !== c) return false;
    this.i++;
    return true;
  }

  /** `_` is 0, `<digits>_` is their value + 1. */
  private base62(): number {
    if (this.eat('_')) return 0;
    let n = 0;
    for (;;) {
      const c = this.next();
      if (c === '_') return n + 1;
      const d = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'.indexOf(c);
      if (d < 0) throw new Error(`bad base-62 digit ${c}`);
      n = n * 62 + d;
    }
  }
  private disambiguator(): void {
    if (this.eat('s')) this.base62();
  }
  /** `[u]<len>[_]<bytes>`: undefined for a punycode (non-ASCII) name, which the check leaves alone. */
  private undisambiguated(): string | undefined {
    const puny = this.eat('u');
    // A decimal number: `0`, or digits without a leading zero (`05CLASS` is an empty name, then `5CLASS`).
    const m = /^(0|[1-9]\d*)/.exec(this.s.slice(this.i));
    if (!m) throw new Error('no identifier length');
    this.i += m[0].length;
    this.eat('_');
    const name = this.s.slice(this.i, this.i + Number(m[0]));
    if (name.length !== Number(m[0])) throw new Error('short identifier');
    this.i += name.length;
    return puny ? undefined : name;
  }
  private identifier(): string | undefined {
    this.disambiguator();
    return this.undisambiguated();
  }
  /** Parses at an earlier position (`B<pos>`) and comes back. */
  private backref<T>(parse: () => T): T {
    const pos = this.base62();
    if (pos >= this.i) throw new Error('forward backref');
    const back = this.i;
    this.i = pos;
    try {
      return parse();
    } finally {
      this.i = back;
    }
  }

  /** A path; returns its crate path when it is one (crate root and nested items only). */
  path(): CratePath | undefined {
    const c = this.next();
    switch (c) {
      case 'C': {
        const hash = this.eat('s') ? this.s.slice(this.i, this.s.indexOf('_', this.i)) : '';
        if (hash) this.i += hash.length + 1;
        const crate = this.undisambiguated();
        return crate === undefined ? undefined : this.record({ crate, hash, segments: [] });
      }
      case 'N': {
        const ns = this.next();
        const parent = this.path();
        const name = this.identifier();
        if (!parent || name === undefined || !/[a-z]/.test(ns)) return undefined; // closures, shims: not listed
        const found = { ...parent, segments: [...parent.segments, { ns, name }] };
        return this.record(found, parent);
      }
      case 'M':
        this.disambiguator();
        this.path();
        this.type();
        return undefined;
      case 'X':
        this.disambiguator();
        this.path();
        this.type();
        this.path();
        return undefined;
      case 'Y':
        this.type();
        this.path();
        return undefined;
      case 'I':
        this.path();
        while (!this.eat('E')) this.genericArg();
        return undefined;
      case 'B':
        return this.backref(() => this.path());
      default:
        throw new Error(`bad path tag ${c}`);
    }
  }

  /** Keeps the longest paths: a nested path replaces its parent's entry. */
  private record(p: CratePath, parent?: CratePath): CratePath {
    const at = parent ? this.found.indexOf(parent) : -1;
    if (at >= 0) this.found[at] = p;
    else this.found.push(p);
    return p;
  }

  private genericArg(): void {
    if (this.eat('L')) this.base62();
    else if (this.eat('K')) this.constant();
    else this.type();
  }

  private constant(): void {
    if (this.eat('p')) return;
    if (this.eat('B')) return this.backref(() => this.constant());
    const t = this.next();
    if (!BASIC_TYPES.includes(t)) throw new Error(`const of type ${t}`);
    this.eat('n');
    while (/[0-9a-f]/.test(this.peek() ?? '')) this.i++;
    if (!this.eat('_')) throw new Error('bad const data');
  }

  private type(): void {
    const c = this.peek();
    if (c === undefined) throw new Error('unexpected end');
    if (BASIC_TYPES.includes(c)) {
      this.i++;
      return;
    }
    switch (c) {
      case 'A':
        this.i++;
        this.type();
        this.constant();
        return;
      case 'S': case 'P': case 'O':
        this.i++;
        this.type();
        return;
      case 'R': case 'Q':
        this.i++;
        if (this.eat('L')) this.base62();
        this.type();
        return;
      case 'F':
        this.i++;
        if (this.eat('G')) this.base62();
        this.eat('U');
        if (this.eat('K') && !this.eat('C')) this.undisambiguated();
        while (!this.eat('E')) this.type();
        this.type();
        return;
      case 'D':
        this.i++;
        if (this.eat('G')) this.base62();
        while (!this.eat('E')) {
          this.path();
          while (this.eat('p')) {
            this.undisambiguated();
            this.type();
          }
        }
        if (!this.eat('L')) throw new Error('dyn without lifetime');
        this.base62();
        return;
      case 'T':
        this.i++;
        while (!this.eat('E')) this.type();
        return;
      case 'B':
        this.i++;
        this.backref(() => this.type());
        return;
      default:
        this.path();
    }
  }
}

/** Each item of a crate's `rustc -Zls=items` listing, by its path from the crate root (`net::phy`), with its kinds (Mod, Fn, Struct, ...). */
export type ItemListing = Map<string, Set<string>>;

/**
 * Reads the `=Items=` part of `rustc -Zls=items` output: lines such as `Public Mod net {`,
 * `Public Fn register {}`, `Public Static { safety: Safe, ... } X {}`, `}`, nested by braces. Undefined
 * when there is no such part (a rustc without `-Zls=items`).
 */
export function parseItemListing(ls: string): ItemListing | undefined {
  const at = ls.indexOf('\n=Items=\n');
  if (at < 0 && !ls.startsWith('=Items=\n')) return undefined;
  const items: ItemListing = new Map();
  const stack: string[] = [];
  let root = true;
  for (const raw of ls.slice(at < 0 ? 0 : at + 1).split('\n').slice(1)) {
    const line = raw.trim();
    if (!line) continue;
    if (line === '}') {
      if (!stack.length) break;
      stack.pop();
      continue;
    }
    if (/^=.*=$/.test(line)) break;
    const open = line.endsWith(' {');
    const body = line.replace(/ \{\}?$/, '');
    const words = body.split(' ');
    const kind = /^[A-Za-z]+/.exec(words[1] ?? '')?.[0] ?? '';
    const name = words[words.length - 1]!;
    if (root) {
      // `Public Mod crate {`: the crate root itself.
      root = false;
      if (open) stack.push('');
      continue;
    }
    const parent = stack[stack.length - 1] ?? '';
    const full = parent ? `${parent}::${name}` : name;
    if (name !== '???') (items.get(full) ?? items.set(full, new Set()).get(full)!).add(kind);
    if (open) stack.push(full);
  }
  return items;
}

/**
 * The part of a crate path the crate's listing lacks (`["net"]` for `kernel::net::phy::register` when
 * there is no `net`), or undefined when it is there: each segment must be an item of the one before,
 * going down modules only (what is inside a struct, trait or function is not listed).
 */
export function lackingPrefix(p: CratePath, items: ItemListing): string[] | undefined {
  const names: string[] = [];
  for (const seg of p.segments) {
    names.push(seg.name);
    const kinds = items.get(names.join('::'));
    if (!kinds) return names;
    if (!kinds.has('Mod')) return undefined;
  }
  return undefined;
}
