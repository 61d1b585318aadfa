// The typed module spec read back from an evaluated dkms.conf, and its validation. Pure.
import path from 'node:path';
import type { DirectiveArray, EvaluatedConf } from './dkmsconf.js';

export interface ExclusiveRule {
  /** BUILD_EXCLUSIVE_KERNEL matched kernelver (undefined when not set). */
  kernelMatches?: boolean;
  kernelPattern?: string;
  kernelMin?: string;
  kernelMax?: string;
  archMatches?: boolean;
  archPattern?: string;
  /** `CONFIG_X` must be y/m, `!CONFIG_X` must not be. */
  config: { name: string; negate: boolean }[];
  /** OBSOLETE_BY: excluded from this kernel release on. */
  obsoleteBy?: string;
}

export interface BuiltModule {
  index: number;
  builtName: string;
  /** Relative to the build dir, '' for its top. */
  builtLocation: string;
  destName: string;
  destLocation: string;
  strip: boolean;
  /** Per-module BUILD_EXCLUSIVE_* (DKMS 3.4 `[#]` forms). */
  exclusive?: ExclusiveRule;
}

export interface ModuleScripts {
  postAdd?: string;
  preBuild?: string;
  postBuild?: string;
  preInstall?: string;
  postInstall?: string;
  postRemove?: string;
}

export interface ModuleSpec {
  name: string;
  version: string;
  sourceDir: string;
  /** The MAKE command chosen for this kernel by MAKE_MATCH (undefined: DKMS's default). */
  make?: string;
  /** PATCH entries that apply to this kernel, relative to <source>/patches. */
  patches: string[];
  modules: BuiltModule[];
  autoinstall: boolean;
  buildDepends: string[];
  buildDependsRebuild: boolean;
  exclusive: ExclusiveRule;
  scripts: ModuleScripts;
  /** Non-fatal remarks (deprecated directives, defaults applied). */
  warnings: string[];
}

export interface SpecResult {
  spec?: ModuleSpec;
  errors: string[];
  warnings: string[];
}

const MODULE_NAME = /^[A-Za-z0-9_-]+$/;
const MODULE_NAME_RULE = 'use only letters, digits, _ and -';
/** The characters a module name or version may hold (they name dirs and state keys). */
export const PACKAGE_WORD = /^[A-Za-z0-9_.+~:-]+$/;
const DEST_ROOTS = /^\/(kernel|updates|extra)(\/|$)/;

function entries(map: DirectiveArray | undefined): [number, string][] {
  return map ? [...map.entries()].sort((a, b) => a[0] - b[0]) : [];
}

function scalar(conf: EvaluatedConf, name: string): string | undefined {
  const v = conf.directives.get(name)?.get(0);
  return v === undefined || v === '' ? undefined : v;
}

function bareName(file: string): string {
  return file.replace(/\.k?o$/, '');
}

function hasDotDot(p: string): boolean {
  return p.split('/').includes('..');
}

function yesNo(value: string | undefined, fallback: boolean): boolean | undefined {
  if (value === undefined || value === '') return fallback;
  if (/^(y|yes|true|1)$/i.test(value)) return true;
  if (/^(n|no|false|0)$/i.test(value)) return false;
  return undefined;
}

export function parseExclusiveConfig(value: string, errors: string[], where: string): ExclusiveRule['config'] {
  const rules: ExclusiveRule['config'] = [];
  for (const word of value.split(/\s+/).filter(Boolean)) {
    const m = /^(!?)(CONFIG_[A-Za-z0-9_]+)$/.exec(word);
    if (!m) {
      const bare = /^(!?)([A-Za-z0-9_]+)$/.exec(word);
      const hint = bare ? `: write '${bare[1]}CONFIG_${bare[2]}'` : '';
      errors.push(`${where}: '${word}' is not CONFIG_NAME or !CONFIG_NAME${hint}`);
      continue;
    }
    rules.push({ name: m[2]!, negate: m[1] === '!' });
  }
  return rules;
}

function exclusiveAt(conf: EvaluatedConf, index: number, errors: string[], obsoleteBy?: string): ExclusiveRule {
  const get = (n: string) => {
    const v = conf.directives.get(n)?.get(index);
    return v === '' ? undefined : v;
  };
  const kernelPattern = get('BUILD_EXCLUSIVE_KERNEL');
  const archPattern = get('BUILD_EXCLUSIVE_ARCH');
  const config = get('BUILD_EXCLUSIVE_CONFIG');
  const suffix = index ? `[${index}]` : '';
  return {
    kernelPattern,
    kernelMatches: kernelPattern === undefined ? undefined : conf.matches.get('BUILD_EXCLUSIVE_KERNEL')?.get(index) ?? false,
    kernelMin: get('BUILD_EXCLUSIVE_KERNEL_MIN'),
    kernelMax: get('BUILD_EXCLUSIVE_KERNEL_MAX'),
    archPattern,
    archMatches: archPattern === undefined ? undefined : conf.matches.get('BUILD_EXCLUSIVE_ARCH')?.get(index) ?? false,
    config: config ? parseExclusiveConfig(config, errors, `BUILD_EXCLUSIVE_CONFIG${suffix}`) : [],
    obsoleteBy,
  };
}

const EXCLUSIVE_DIRECTIVES = ['BUILD_EXCLUSIVE_KERNEL', 'BUILD_EXCLUSIVE_KERNEL_MIN', 'BUILD_EXCLUSIVE_KERNEL_MAX', 'BUILD_EXCLUSIVE_ARCH', 'BUILD_EXCLUSIVE_CONFIG'];

/** Turns an evaluated dkms.conf into a ModuleSpec, or the list of one-line errors that prevent it. */
type Problems = { errors: string[]; warnings: string[] };

/** BUILT_MODULE_NAME[#], numbered from 0, with DKMS's default of PACKAGE_NAME for a single module. */
function builtModuleNames(conf: EvaluatedConf, name: string | undefined, { errors, warnings }: Problems): [number, string][] {
  const d = (n: string) => conf.directives.get(n);
  let builtNames = entries(d('BUILT_MODULE_NAME'));
  const perModule = ['BUILT_MODULE_LOCATION', 'DEST_MODULE_NAME', 'DEST_MODULE_LOCATION'];
  if (builtNames.length === 0) {
    const others = Math.max(0, ...perModule.map((n) => entries(d(n)).length));
    if (others <= 1 && name) {
      builtNames = [[0, name]];
      warnings.push(`BUILT_MODULE_NAME not set: using PACKAGE_NAME '${name}'`);
    } else if (others > 1) {
      errors.push(`BUILT_MODULE_NAME is missing but ${perModule.find((n) => entries(d(n)).length === others)} has ${others} entries: set BUILT_MODULE_NAME[#] for each module`);
    }
  }
  if (builtNames.length === 0 && name) errors.push('no module to build: set BUILT_MODULE_NAME[0]');
  const count = builtNames.length;
  const gap = builtNames.findIndex(([index], position) => index !== position);
  if (gap >= 0) {
    errors.push(`BUILT_MODULE_NAME[${gap}] is missing but BUILT_MODULE_NAME[${builtNames[gap]![0]}] is set: number the modules from 0 without gaps`);
  }
  for (const n of [...perModule, 'STRIP']) {
    for (const [index] of entries(d(n))) {
      if (index >= count) errors.push(`${n}[${index}] has no matching BUILT_MODULE_NAME[${index}] (mismatched arrays): remove it or add that module`);
    }
  }
  return builtNames;
}

/** One module's names and locations, checked; `destNames` holds the names of the modules before it (modprobe's form). */
function builtModule(conf: EvaluatedConf, index: number, builtName: string, destNames: Map<string, { where: string; name: string }>, errors: string[]): Omit<BuiltModule, 'exclusive'> {
  const d = (n: string) => conf.directives.get(n);
  const at = (n: string) => d(n)?.get(index);
  if (/\.(k?o)$/.test(builtName)) errors.push(`BUILT_MODULE_NAME[${index}] '${builtName}' must not end in .o or .ko: write '${bareName(builtName)}'`);
  else if (!MODULE_NAME.test(builtName)) errors.push(`BUILT_MODULE_NAME[${index}] '${builtName}' is not a valid module name: ${MODULE_NAME_RULE}`);
  const destName = at('DEST_MODULE_NAME') || builtName;
  if (destName !== builtName) {
    if (/\.(k?o)$/.test(destName)) errors.push(`DEST_MODULE_NAME[${index}] '${destName}' must not end in .o or .ko: write '${bareName(destName)}'`);
    else if (!MODULE_NAME.test(destName)) errors.push(`DEST_MODULE_NAME[${index}] '${destName}' is not a valid module name: ${MODULE_NAME_RULE}`);
  }
  const normalized = destName.replaceAll('-', '_');
  const first = destNames.get(normalized);
  const where = `${at('DEST_MODULE_NAME') ? 'DEST_MODULE_NAME' : 'BUILT_MODULE_NAME'}[${index}]`;
  if (first) {
    const both = first.name === destName ? `${first.where} and ${where}` : `${first.where} '${first.name}' and ${where} '${destName}', which modprobe treats alike`;
    errors.push(`module '${destName}' is listed twice (${both}): give each module its own name`);
  } else {
    destNames.set(normalized, { where, name: destName });
  }
  const builtLocation = (at('BUILT_MODULE_LOCATION') ?? '').replace(/^\.\//, '').replace(/\/+$/, '');
  if (builtLocation.startsWith('/')) errors.push(`BUILT_MODULE_LOCATION[${index}] '${builtLocation}' must be relative to the build dir`);
  if (hasDotDot(builtLocation)) errors.push(`BUILT_MODULE_LOCATION[${index}] '${builtLocation}' must not contain '..'`);
  const destLocation = at('DEST_MODULE_LOCATION') || '/updates';
  if (!DEST_ROOTS.test(destLocation)) {
    errors.push(`DEST_MODULE_LOCATION[${index}] '${destLocation}' must start with /kernel, /updates or /extra`);
  }
  // As DKMS: judged by where it leads (mstflint's '/kernel/../misc/' stays in the kernel's module dir).
  const resolved = path.posix.normalize(`.${destLocation}`);
  if (resolved === '..' || resolved.startsWith('../')) {
    errors.push(`DEST_MODULE_LOCATION[${index}] '${destLocation}' leads outside the kernel's module dir: use a dir under /kernel, /updates or /extra`);
  }
  const stripValue = d('STRIP')?.get(index) ?? d('STRIP')?.get(0);
  const strip = yesNo(stripValue, true);
  if (strip === undefined) errors.push(`STRIP[${index}] '${stripValue}' must be yes or no`);
  return { index, builtName, builtLocation, destName, destLocation, strip: strip ?? true };
}

/** MAKE: the last MAKE[i] whose MAKE_MATCH[i] matches; MAKE[0] also when MAKE_MATCH[0] is empty. */
function makeCommand(conf: EvaluatedConf): string | undefined {
  let make: string | undefined;
  for (const [index, command] of entries(conf.directives.get('MAKE'))) {
    const pattern = conf.directives.get('MAKE_MATCH')?.get(index);
    const matched = conf.matches.get('MAKE_MATCH')?.get(index) ?? false;
    if ((index === 0 && !pattern) || matched) make = command || make;
  }
  return make;
}

/** PATCH[#] whose PATCH_MATCH[#] matches (or is empty), each a path inside patches/. */
function patchesOf(conf: EvaluatedConf, errors: string[]): string[] {
  const patches: string[] = [];
  for (const [index, patch] of entries(conf.directives.get('PATCH'))) {
    if (!patch) continue;
    if (patch.startsWith('/') || hasDotDot(patch)) {
      errors.push(`PATCH[${index}] '${patch}' must be a path inside the patches/ dir, without '..'`);
      continue;
    }
    const pattern = conf.directives.get('PATCH_MATCH')?.get(index);
    if (!pattern || conf.matches.get('PATCH_MATCH')?.get(index)) patches.push(patch);
  }
  return patches;
}

export function resolveSpec(conf: EvaluatedConf, sourceDir: string): SpecResult {
  const errors: string[] = [];
  const warnings: string[] = [];
  const d = (n: string) => conf.directives.get(n);
  if (conf.directives.size === 0) {
    return { errors: ['it sets no directive (empty or all comments): set at least PACKAGE_NAME, PACKAGE_VERSION and BUILT_MODULE_NAME[0]'], warnings };
  }

  const name = scalar(conf, 'PACKAGE_NAME');
  const version = scalar(conf, 'PACKAGE_VERSION');
  // Their characters are checked by the caller: a source under /usr/src takes its name and version
  // from its dir, as DKMS does (dh_dkms packages may leave a placeholder such as #MODULE_VERSION#).
  if (!name) errors.push('PACKAGE_NAME is missing or empty: set PACKAGE_NAME="<name>" in dkms.conf');
  if (!version) errors.push('PACKAGE_VERSION is missing or empty: set PACKAGE_VERSION="<version>" in dkms.conf');

  // Module count comes from BUILT_MODULE_NAME; DKMS defaults a single module's name to PACKAGE_NAME.
  const builtNames = builtModuleNames(conf, name, { errors, warnings });

  const obsoleteBy = scalar(conf, 'OBSOLETE_BY');
  // The [#] forms of BUILD_EXCLUSIVE_* apply per module when any index beyond 0 is set.
  const perModuleExclusive = EXCLUSIVE_DIRECTIVES.some((n) => entries(d(n)).some(([i]) => i > 0));
  const exclusive = exclusiveAt(conf, 0, errors, obsoleteBy);

  const destNames = new Map<string, { where: string; name: string }>();
  const modules: BuiltModule[] = builtNames.map(([index, builtName]) => ({
    ...builtModule(conf, index, builtName, destNames, errors),
    exclusive: perModuleExclusive && index > 0 ? exclusiveAt(conf, index, errors) : undefined,
  }));
  const make = makeCommand(conf);
  const patches = patchesOf(conf, errors);

  const autoinstallValue = scalar(conf, 'AUTOINSTALL');
  if (autoinstallValue !== undefined && !/^(yes|no)$/i.test(autoinstallValue)) {
    errors.push(`AUTOINSTALL '${autoinstallValue}' must be yes, no or empty`);
  }
  const buildDepends = entries(d('BUILD_DEPENDS')).map(([, v]) => v).filter(Boolean);
  if (name && buildDepends.includes(name)) errors.push(`BUILD_DEPENDS names the module itself ('${name}'): remove it from BUILD_DEPENDS`);

  const clean = scalar(conf, 'CLEAN');
  if (clean && !/^(\/bin\/)?true$/.test(clean)) warnings.push('CLEAN is deprecated and ignored: the build dir is always fresh');
  for (const n of ['REMAKE_INITRD', 'MODULES_CONF', 'MODULES_CONF_OBSOLETES', 'MODULES_CONF_ALIAS_TYPE', 'MODULES_CONF_OBSOLETE_ONLY']) {
    if (d(n)?.size) warnings.push(`${n} is deprecated and ignored`);
  }

  if (errors.length) return { errors, warnings };
  return {
    errors,
    warnings,
    spec: {
      name: name!,
      version: version!,
      sourceDir,
      make,
      patches,
      modules,
      autoinstall: /^yes$/i.test(autoinstallValue ?? ''),
      buildDepends,
      buildDependsRebuild: /^yes$/i.test(scalar(conf, 'BUILD_DEPENDS_REBUILD') ?? ''),
      exclusive,
      scripts: {
        postAdd: scalar(conf, 'POST_ADD'),
        preBuild: scalar(conf, 'PRE_BUILD'),
        postBuild: scalar(conf, 'POST_BUILD'),
        preInstall: scalar(conf, 'PRE_INSTALL'),
        postInstall: scalar(conf, 'POST_INSTALL'),
        postRemove: scalar(conf, 'POST_REMOVE'),
      },
      warnings,
    },
  };
}
