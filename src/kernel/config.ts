// A kernel .config (or include/config/auto.conf) with typed accessors.

export class KernelConfig {
  private constructor(private readonly values: ReadonlyMap<string, string | null>) {}

  /** Parses `CONFIG_X=y|m|n|"text"|123` and `# CONFIG_X is not set` lines. */
  static parse(text: string): KernelConfig {
    const values = new Map<string, string | null>();
    // A distribution .config has ~10,000 lines: plain string operations, no regex per line.
    let start = 0;
    while (start < text.length) {
      let end = text.indexOf('\n', start);
      if (end < 0) end = text.length;
      const line = text.slice(start, end).trim();
      start = end + 1;
      if (line.startsWith('CONFIG_')) {
        const eq = line.indexOf('=');
        if (eq < 0) continue;
        let value = line.slice(eq + 1);
        if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1).replace(/\\(["\\])/g, '$1');
        values.set(line.slice(0, eq), value);
      } else if (line.startsWith('# CONFIG_') && line.endsWith(' is not set')) {
        values.set(line.slice(2, -' is not set'.length), null);
      }
    }
    return new KernelConfig(values);
  }

  private key(name: string): string {
    return name.startsWith('CONFIG_') ? name : `CONFIG_${name}`;
  }

  /** The raw value; undefined when absent or `is not set`. */
  raw(name: string): string | undefined {
    return this.values.get(this.key(name)) ?? undefined;
  }

  /** True for `=y` and `=m` (what BUILD_EXCLUSIVE_CONFIG means by "set"). */
  enabled(name: string): boolean {
    const v = this.raw(name);
    return v === 'y' || v === 'm';
  }

  builtin(name: string): boolean {
    return this.raw(name) === 'y';
  }

  /** True when the file says `# CONFIG_X is not set` explicitly. */
  explicitlyUnset(name: string): boolean {
    return this.values.has(this.key(name)) && this.values.get(this.key(name)) === null;
  }

  string(name: string): string | undefined {
    return this.raw(name);
  }

  number(name: string): number | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    return Number.isFinite(n) ? n : undefined;
  }

  get size(): number {
    return this.values.size;
  }
}
