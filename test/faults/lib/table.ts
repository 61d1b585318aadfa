// One row of the fault suite's table: a kind of fault, how many cases were tried, how many held.
import { appendFileSync } from 'node:fs';

export interface FaultRow {
  fault: string;
  tried: number;
  held: number;
  detail: string;
}

export const QUICK = process.env.OOTMOD_FAULTS_TIER === 'quick';

export function recordRow(row: FaultRow): void {
  const file = process.env.OOTMOD_FAULTS_TABLE;
  if (file) appendFileSync(file, `${JSON.stringify(row)}\n`);
}
