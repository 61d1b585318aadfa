// Kernel release comparison. Kernel versions are not semver ("8.1.4+deb15-amd64", "6.1.0-28-amd64"),
// so they are compared the way DKMS's VER() does: runs of digits numerically, the rest as text.

function tokens(v: string): (number | string)[] {
  return v.match(/\d+|[^\d]+/g)?.map((t) => (/^\d/.test(t) ? Number(t) : t)) ?? [];
}

/** Negative, zero or positive as `a` sorts before, equal to or after `b`. */
export function compareKernelVersions(a: string, b: string): number {
  const ta = tokens(a);
  const tb = tokens(b);
  for (let i = 0; i < Math.max(ta.length, tb.length); i++) {
    const x = ta[i];
    const y = tb[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    if (typeof x === 'number' && typeof y === 'number') {
      if (x !== y) return x - y;
    } else if (typeof x === 'number') {
      return 1;
    } else if (typeof y === 'number') {
      return -1;
    } else if (x !== y) {
      // DKMS compares the separators as text: "-" < "." and "+" < "-".
      return x < y ? -1 : 1;
    }
  }
  return 0;
}

/** Module versions (PACKAGE_VERSION) compare the same way, so "1.10" is newer than "1.9". */
export const compareModuleVersions = compareKernelVersions;
