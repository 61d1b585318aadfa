// The notices that the kernel that boots next is not ready, where admins and desktops already look:
// /run/ootmod/next-boot-not-ready (ootmod-dkms's and ootmod's motd script, /etc/update-motd.d/95-ootmod,
// prints it at login), and an update-notifier hook when update-notifier is installed. Both go when the
// kernel is ready. /run/reboot-required is NOT written: unattended-upgrades reboots on its own when that
// file exists (Automatic-Reboot), which would start the kernel that is not ready.
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { notReadyBlock, type ReadinessView } from '../plan/readiness.js';
import { writeFileAtomic } from '../system/files.js';
import type { Layout } from '../system/layout.js';

/** The text notice, for people (motd) and scripts. */
const RUN_NOTICE = '/run/ootmod/next-boot-not-ready';
export const runNotice = (layout: Layout) => layout.at(RUN_NOTICE);
/** update-notifier's hooks dir: a file there is shown once as a desktop notification. */
const notifierDir = (layout: Layout) => layout.at('/var/lib/update-notifier/user.d');
const notifierHook = (layout: Layout) => path.join(notifierDir(layout), 'ootmod-next-boot-not-ready');

/** The notice files a plan's boot-notice job manages on this machine. */
export function noticeFiles(layout: Layout): string[] {
  return [runNotice(layout), ...(existsSync(notifierDir(layout)) ? [notifierHook(layout)] : [])];
}

/** A notice is in place now (a plan must be able to remove it). */
export function noticeExists(layout: Layout): boolean {
  return noticeFiles(layout).some((f) => existsSync(f));
}

/** update-notifier's hook format (rfc822 fields; DisplayIf keeps it hidden once the notice is gone). */
function notifierText(block: string[]): string {
  const description = block.map((l) => ` ${l.replace(/^ootmod: /, '') || '.'}`).join('\n');
  return [
    'Name: The kernel that boots next lacks out-of-tree modules',
    'Priority: high',
    'Terminal: False',
    `DisplayIf: test -e ${RUN_NOTICE}`,
    'DontShowAfterReboot: True',
    `Description:${description}`,
    '',
  ].join('\n');
}

async function writeIfChanged(file: string, text: string): Promise<boolean> {
  if ((await readFile(file, 'utf8').catch(() => undefined)) === text) return false;
  await writeFileAtomic(file, text, 0o644);
  return true;
}

/** Writes the notices for a kernel that is not ready, or removes them; says what it did (one line). */
export async function updateBootNotices(layout: Layout, files: string[], view: ReadinessView): Promise<string> {
  const block = notReadyBlock(view);
  if (!block) {
    const there = files.filter((f) => existsSync(f));
    for (const f of there) await rm(f, { force: true });
    const why = view.next ? `${view.next.release}, which boots next, is ready` : `the kernel that boots next is ${view.nextBoot.how}`;
    return there.length ? `removed ${there.join(', ')} (${why})` : `no notice (${why})`;
  }
  const changed: string[] = [];
  for (const f of files) {
    const text = f === notifierHook(layout) ? notifierText(block) : `${block.join('\n')}\n`;
    if (await writeIfChanged(f, text)) changed.push(f);
  }
  return `${changed.length ? `wrote ${changed.join(', ')}` : 'notices unchanged'} (${view.next!.release} is not ready)`;
}
