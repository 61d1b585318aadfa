// ootmod's version, set by the bundler from package.json (a tiny module: every command imports it).
declare const OOTMOD_VERSION: string;
export const VERSION = typeof OOTMOD_VERSION === 'string' ? OOTMOD_VERSION : '0.0.0-dev';
