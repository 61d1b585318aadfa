// The DKMS interface ootmod-dkms implements: `dkms --version` prints it, and debian/rules reads it from
// here for the package's `Provides: dkms (= V)`, which must satisfy every `Depends: dkms (>= ...)`.
export const DKMS_INTERFACE_VERSION = '3.2.2';
