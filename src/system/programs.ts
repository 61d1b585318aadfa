// Finding programs on this machine.
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { HOST_TOOLS } from './layout.js';

export function findOnPath(command: string, envPath = process.env.PATH ?? HOST_TOOLS.defaultPath): string | undefined {
  if (command.includes('/')) return isExecutable(command) ? command : undefined;
  for (const dir of envPath.split(':')) {
    if (!dir) continue;
    const candidate = path.join(dir, command);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
