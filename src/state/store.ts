// What is built and installed for which kernel from which inputs, in /var/lib/ootmod/state.json.
// Written atomically after every change, so `status` never runs a build and never sees half a file.
import { existsSync, readFileSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import path from 'node:path';
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
  /** The programs the build ran (compiler, linker, ...), as found then: a failed build is retried when they change. */
  toolsKey?: string;
  /** The package transaction (apt or dpkg run) the build ran in, when inside dpkg: a failure is not retried inside it. */
  transaction?: string;
  /** Built files kept under the built dir, ready to install. */
  built: string[];
  /** Files placed under the kernel's module dir. */
  installed: InstalledFile[];
  log?: string;
  error?: string;
  warnings?: string[];
  signed?: boolean;
  /** Failed because of the machine (disk full, a missing tool), not the module: retried by the next run. */
  fault?: boolean;
  updatedAt: string;
  durationMs?: number;
}

export interface StateData {
  format: 1;
  records: Record<string, BuildRecord>;
}

/** Whether a record has installed files and all of them are still in place (else none, or `broken`). */
export function installedFilesPresent(record: Pick<BuildRecord, 'installed'>): boolean {
  return record.installed.length > 0 && record.installed.every((f) => existsSync(f.path));
}

export function recordKey(module: string, version: string, kernel: string): string {
  return `${module}/${version}/${kernel}`;
}

/**
 * What `status` shows, for every user (status.json, mode 0644, written with state.json): no error
 * text, log path or inputs hash, which stay in the root-only state.json. The same facts as
 * /usr/lib/modules and DKMS's world-readable /var/lib/dkms show any user.
 */
const PUBLIC_FIELDS = ['module', 'version', 'kernel', 'arch', 'status', 'installed', 'signed', 'updatedAt'] as const;

/** The world-readable status file beside the state file. */
export function publicStatusFile(stateFile: string): string {
  return path.join(path.dirname(stateFile), 'status.json');
}

export interface LoadOptions {
  /**
   * For commands that write: a corrupt file is not an error but kept aside (renamed at the first save,
   * so --dry-run changes nothing) and the state rebuilt, from what is installed and the next run.
   */
  recover?: boolean;
}

export class StateStore {
  /** Set when the file was corrupt and this store starts empty: where it will be kept. */
  recoveredTo?: string;

  private constructor(private readonly file: string, private data: StateData) {}

  static load(file: string, opts: LoadOptions = {}): StateStore {
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
      if (!opts.recover) throw new OotmodError(`${file} is not a state file ootmod can read`, `run ootmod autoinstall as root: it keeps the file aside and rebuilds the state`, ExitCode.Environment);
      const store = new StateStore(file, { format: 1, records: {} });
      let aside = `${file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '')}`;
      for (let n = 1; existsSync(aside); n++) aside = aside.replace(/(-\d+)?$/, `-${n}`);
      store.recoveredTo = aside;
      return store;
    }
  }

  /**
   * For readers that need not be root (status): the state file, or, when only root may read it, the
   * world-readable status file (records without errors, logs or inputs).
   */
  static loadForStatus(file: string): StateStore {
    try {
      return StateStore.load(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err;
      let data: StateData;
      try {
        data = JSON.parse(readFileSync(publicStatusFile(file), 'utf8')) as StateData;
      } catch {
        throw new OotmodError(`${file} is readable by root only, and ${publicStatusFile(file)} is not there yet`, 'run it as root (the public status file is written at the next build or removal)', ExitCode.Environment);
      }
      for (const r of Object.values(data.records)) Object.assign(r, { inputsKey: '', built: [] });
      return new StateStore(file, data);
    }
  }

  /**
   * Records for installed files found on disk (state rebuilt after corruption): adopted as installed,
   * with no inputs key, so the planner rebuilds them and the owner of each file is known.
   */
  adopt(records: BuildRecord[]): void {
    for (const r of records) {
      const key = recordKey(r.module, r.version, r.kernel);
      this.data.records[key] ??= r;
      this.adopted.set(key, r);
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
    const key = recordKey(record.module, record.version, record.kernel);
    this.data.records[key] = record;
    this.changes.set(key, record);
    await this.save();
  }

  async delete(module: string, version: string, kernel: string): Promise<void> {
    const key = recordKey(module, version, kernel);
    delete this.data.records[key];
    this.changes.set(key, null);
    await this.save();
  }

  private publicData(): StateData {
    const records = Object.fromEntries(Object.entries(this.data.records).map(([k, r]) => [k, Object.fromEntries(PUBLIC_FIELDS.map((f) => [f, r[f]]))]));
    return { format: 1, records: records as unknown as StateData['records'] };
  }

  private saving: Promise<void> = Promise.resolve();
  /** What this store changed (null: deleted), applied on top of the file as it is at each save. */
  private readonly changes = new Map<string, BuildRecord | null>();
  /** Records adopted from the installed files, written where the file has none for them. */
  private readonly adopted = new Map<string, BuildRecord>();

  /**
   * The records to write: the file's current ones (another store of this run may have written since
   * this one loaded) with this store's adoptions and changes on top; the store's own file when the
   * file does not parse (it is then kept aside).
   */
  private merged(): Record<string, BuildRecord> {
    let base: Record<string, BuildRecord> | undefined;
    try {
      const onDisk = JSON.parse(readFileSync(this.file, 'utf8')) as StateData;
      if (onDisk.format === 1 && typeof onDisk.records === 'object') base = onDisk.records;
    } catch {
      // Missing or corrupt: this store's own view.
    }
    if (!base) return this.data.records;
    for (const [key, r] of this.adopted) base[key] ??= r;
    for (const [key, r] of this.changes) {
      if (r) base[key] = r;
      else delete base[key];
    }
    return base;
  }

  private async keepCorruptAside(): Promise<void> {
    if (!this.recoveredTo || existsSync(this.recoveredTo)) return;
    // Another store of this run may have rebuilt it already: a readable file is never moved.
    try {
      if ((JSON.parse(readFileSync(this.file, 'utf8')) as StateData).format === 1) return;
    } catch {
      // Still corrupt (or gone): keep it aside.
    }
    await rename(this.file, this.recoveredTo).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  /** Saves one at a time, so a slower earlier write can never replace a newer one. */
  private save(): Promise<void> {
    this.saving = this.saving
      .catch(() => undefined)
      .then(() => this.keepCorruptAside())
      .then(() => {
        this.data = { format: 1, records: this.merged() };
        return writeFileAtomic(this.file, `${JSON.stringify(this.data, null, 1)}\n`, 0o600);
      })
      .then(() => writeFileAtomic(publicStatusFile(this.file), `${JSON.stringify(this.publicData(), null, 1)}\n`, 0o644));
    return this.saving;
  }
}
