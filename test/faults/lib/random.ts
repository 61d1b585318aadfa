// A seeded generator, so a failing fault case can be replayed: OOTMOD_FAULTS_SEED=<seed>.
export function seededRandom(seed = Number(process.env.OOTMOD_FAULTS_SEED ?? Date.now() % 1_000_000)): { seed: number; next(): number; int(n: number): number; pick<T>(xs: readonly T[]): T } {
  let s = seed >>> 0 || 1;
  const next = () => {
    // mulberry32
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { seed, next, int: (n) => Math.floor(next() * n), pick: (xs) => xs[Math.floor(next() * xs.length)]! };
}
