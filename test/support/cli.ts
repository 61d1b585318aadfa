import { execa } from 'execa';
import { OOTMOD } from './host.js';

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export async function ootmod(root: string, ...args: string[]): Promise<CliResult> {
  return ootmodEnv(root, {}, ...args);
}

/** Runs ootmod with extra environment (DEB_MAINT_PARAMS, DPKG_MAINTSCRIPT_PACKAGE, RUSTC, ...). */
export async function ootmodEnv(root: string, env: Record<string, string | undefined>, ...args: string[]): Promise<CliResult> {
  const r = await execa(OOTMOD, ['--root', root, ...args], { reject: false, env: { LANG: 'C.UTF-8', DPKG_MAINTSCRIPT_PACKAGE: undefined, DEB_MAINT_PARAMS: undefined, ...env } });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

export async function statusJson(root: string): Promise<{ modules: { module: string; version: string; kernel: string | null; status: string; signed: boolean | null; files: string[]; log: string | null; error: string | null }[] }> {
  const r = await ootmod(root, 'status', '--json');
  if (r.exitCode !== 0) throw new Error(`status failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}
