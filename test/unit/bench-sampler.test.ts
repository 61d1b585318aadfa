// The benchmark's CPU windows (bench/sampler.ts) and the busy-cores utilisation (bench/jobs.ts).
import { describe, expect, it } from 'vitest';
import { usedShare } from '../../bench/jobs.js';
import { windows, type Tick } from '../../bench/sampler.js';

const tick = (t: number, cpu: number, idle: number): Tick => ({ t, cpu, idle, procs: 3, compilers: 1, running: 2 });

describe('bench windows', () => {
  it('makes one window per reading, also when a timer wakes a few ms early', () => {
    const ws = windows([tick(0, 0, 100), tick(1.001, 1.9, 100.1), tick(1.999, 3.8, 100.2), tick(3.0, 5.8, 100.2)], 1);
    expect(ws.map((w) => +w.t.toFixed(3))).toEqual([0, 1.001, 1.999]);
    expect(ws.map((w) => +w.length.toFixed(3))).toEqual([1.001, 0.998, 1.001]);
    expect(ws.map((w) => +w.cores.toFixed(2))).toEqual([1.9, 1.9, 2]);
    expect(ws.map((w) => +w.idleCores!.toFixed(2))).toEqual([0.1, 0.1, 0]);
  });

  it('joins readings closer than 0.9 of the length asked for', () => {
    const ws = windows([tick(0, 0, 0), tick(0.5, 1, 0), tick(1.0, 2, 0)], 1);
    expect(ws).toHaveLength(1);
    expect(ws[0]!.length).toBe(1);
  });

  it('utilisation: the tree\'s CPU over the tree\'s plus the idle CPU (others\' CPU counts for neither)', () => {
    const ws = windows([tick(0, 0, 0), tick(1, 1.5, 0.1), tick(2, 3.4, 0.1)], 1);
    // 3.4 CPU s of the tree, 0.1 idle: 0.97 (the other 0.5 core-s went to other processes).
    expect(usedShare(ws)).toBeCloseTo(3.4 / 3.5, 6);
    expect(usedShare([{ ...ws[0]!, idleCores: undefined }])).toBeUndefined();
  });
});
