// framework.conf's post_transaction (ootmod-dkms), as DKMS 3.2 runs it at the end of a transaction that
// changed modules: by bash, as root (it is the admin's setting), with `kernelver` set, its output in
// /var/lib/dkms/post_transaction.log (emptied first). Its failure is reported, not the run's: the job is
// done either way, and its detail is DKMS's line.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { PostTransactionJob } from '../plan/jobs.js';
import { run } from '../system/run.js';
import type { JobResult } from './executor.js';

export async function runPostTransaction(job: PostTransactionJob): Promise<JobResult> {
  await mkdir(path.dirname(job.log), { recursive: true });
  const started = Date.now();
  const r = await run('bash', ['-c', job.command], { allowFailure: true, env: { kernelver: job.kernel }, timeoutMs: 3_600_000, step: 'post_transaction' })
    .catch((err: unknown) => ({ exitCode: 127, all: `${err instanceof Error ? err.message : String(err)}\n` }));
  await writeFile(job.log, `\nExecuting post-transaction command\n# command: ${job.command}\n${r.all}\n# exit code: ${r.exitCode}\n# elapsed time: ${Math.round((Date.now() - started) / 1000)} s\n`);
  return { status: 'done', detail: `Executing post-transaction command...${r.exitCode === 0 ? ' done.' : `(bad exit status: ${r.exitCode}) see ${job.log}`}` };
}
