// What is built and installed for which kernel from which inputs, in /var/lib/ootmod/state.json.
// Written atomically after every change, so `status` never runs a build and never sees half a file.
import { readFileSync } from 'node:fs';
import { ExitCode, OotmodError } from '../errors.js';
import { writeFileAtomic } from '../system/files.js';

export type BuildStatus = 'built' | 'installed' | 'failed';

export interface InstalledFile {
  /** The module name as installed (DEST_MODULE_NAME). */
  module: string;
  /** Absolute path inside the root. */
  path: string;
}

export interface BuildRecord {
  module: string;
  version: string;
  kernel: string;
  arch: string;
  status: BuildStatus;
  /** Hash of everything the build read: source tree, spec, kernel build inputs, signing and compression. */
  inputsKey: string;
  /** Built files kept under the built dir, ready to install. */
  built: string[];
  /** Files placed under the kernel's module dir. */
  installed: InstalledFile[];
  log?: string;
  error?: string;
  warnings?: string[];
  signed?: boolean;
  updatedAt: string;
  durationMs?: number;
}

export interface StateData {
  format: 1;
  records: Record<string, BuildRecord>;
}

export function recordKey(module: string, version: string, kernel: string): string {
  return `${module}/${version}/${kernel}`;
}

export class StateStore {
  private constructor(private readonly file: string, private data: StateData) {}

  static load(file: string): StateStore {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new StateStore(file, { format: 1, records: {} });
      throw err;
    }
    try {
      const data = JSON.parse(text) as StateData;
      if (data.format !== 1 || typeof data.records !== 'object') throw new Error('unknown format');
      return new StateStore(file, data);
    } catch {
      throw new OotmodError(`${file} is not a state file ootmod can read`, `move it aside and run ootmod autoinstall to rebuild it`, ExitCode.Environment);
    }
  }

  /** All records, ordered by module, version, kernel (plain code-point order: no ICU collation to load). */
  records(): BuildRecord[] {
    const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
    return Object.values(this.data.records).sort((a, b) => cmp(a.module, b.module) || cmp(a.version, b.version) || cmp(a.kernel, b.kernel));
  }

  /** The module whose record installed this path, if any. */
  ownerOf(installedPath: string): string | undefined {
    return Object.values(this.data.records).find((r) => r.installed.some((i) => i.path === installedPath))?.module;
  }

  get(module: string, version: string, kernel: string): BuildRecord | undefined {
    return this.data.records[recordKey(module, version, kernel)];
  }

  find(filter: { module?: string; version?: string; kernel?: string }): BuildRecord[] {
    return this.records().filter(
      (r) =>
        (!filter.module || r.module === filter.module) &&
        (!filter.version || r.version === filter.version) &&
        (!filter.kernel || r.kernel === filter.kernel),
    );
  }

  async put(record: BuildRecord): Promise<void> {
    this.data.records[recordKey(record.module, record.version, record.kernel)] = record;
    await this.save();
  }

  async delete(module: string, version: string, kernel: string): Promise<void> {
    delete this.data.records[recordKey(module, version, kernel)];
    await this.save();
  }

  private saving: Promise<void> = Promise.resolve();

  /** Saves one at a time, so a slower earlier write can never replace a newer one. */
  private save(): Promise<void> {
    this.saving = this.saving
      .catch(() => undefined)
      .then(() => writeFileAtomic(this.file, `${JSON.stringify(this.data, null, 1)}\n`, 0o600));
    return this.saving;
  }
}
