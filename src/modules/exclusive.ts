// BUILD_EXCLUSIVE_* and OBSOLETE_BY: does a module build for this kernel at all? Pure.
import type { KernelConfig } from '../kernel/config.js';
import { compareKernelVersions } from '../kernel/version.js';
import type { ExclusiveRule } from './spec.js';

export interface ExclusiveSubject {
  release: string;
  machine: string;
  config?: KernelConfig;
}

/** The reason the rule excludes this kernel, or undefined when it builds. */
export function exclusionReason(rule: ExclusiveRule, kernel: ExclusiveSubject): string | undefined {
  if (rule.kernelPattern !== undefined && !rule.kernelMatches) {
    return `BUILD_EXCLUSIVE_KERNEL '${rule.kernelPattern}' does not match ${kernel.release}`;
  }
  if (rule.kernelMin && compareKernelVersions(kernel.release, rule.kernelMin) < 0) {
    return `kernel ${kernel.release} is older than BUILD_EXCLUSIVE_KERNEL_MIN ${rule.kernelMin}`;
  }
  if (rule.kernelMax && compareKernelVersions(kernel.release, rule.kernelMax) > 0) {
    return `kernel ${kernel.release} is newer than BUILD_EXCLUSIVE_KERNEL_MAX ${rule.kernelMax}`;
  }
  if (rule.obsoleteBy && compareKernelVersions(kernel.release, rule.obsoleteBy) >= 0) {
    return `the module is obsolete from kernel ${rule.obsoleteBy.replace(/\n/g, '\\n')} on (OBSOLETE_BY)`;
  }
  if (rule.archPattern !== undefined && !rule.archMatches) {
    return `BUILD_EXCLUSIVE_ARCH '${rule.archPattern}' does not match ${kernel.machine}`;
  }
  for (const { name, negate } of rule.config) {
    const enabled = kernel.config?.enabled(name) ?? false;
    if (negate && enabled) return `BUILD_EXCLUSIVE_CONFIG: ${name} is set in ${kernel.release}`;
    if (!negate && !enabled) return `BUILD_EXCLUSIVE_CONFIG: ${name} is not set in ${kernel.release}`;
  }
  return undefined;
}
