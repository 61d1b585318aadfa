// Module arguments on the command line: "name", "name/version", or a source dir.
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { ExitCode, OotmodError } from '../errors.js';

export interface ModuleRef {
  name: string;
  version?: string;
}

export function isSourcePath(arg: string): boolean {
  return (arg.startsWith('/') || arg.startsWith('.')) && existsSync(arg) && statSync(arg).isDirectory();
}

export function parseModuleRef(arg: string): ModuleRef {
  const parts = arg.split('/');
  if (parts.length > 2 || !parts[0] || parts[1] === '') {
    throw new OotmodError(`'${arg}' is not a module`, 'name it as NAME or NAME/VERSION, or give a source dir path', ExitCode.Usage);
  }
  return { name: parts[0], version: parts[1] };
}

export function sourcePathOf(arg: string): string {
  const dir = path.resolve(arg);
  if (!existsSync(path.join(dir, 'dkms.conf'))) {
    throw new OotmodError(`${dir} has no dkms.conf`, 'give the top dir of a module source that has one', ExitCode.InvalidSource);
  }
  return dir;
}
