// A kernel .config (or include/config/auto.conf) with typed accessors.

export type ConfigValue = string | boolean | number;

export class KernelConfig {
  private constructor(private readonly values: ReadonlyMap<string, string | null>) {}

  /** Parses `CONFIG_X=y|m|n|"text"|123` and `# CONFIG_X is not set` lines. */
  static parse(text: string): KernelConfig {
    const values = new Map<string, string | null>();
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      const unset = /^# (CONFIG_\w+) is not set$/.exec(line);
      if (unset) {
        values.set(unset[1]!, null);
        continue;
      }
      const m = /^(CONFIG_\w+)=(.*)$/.exec(line);
      if (!m) continue;
      let value = m[2]!;
      if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) {
        value = value.slice(1, -1).replace(/\\(["\\])/g, '$1');
      }
      values.set(m[1]!, value);
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
