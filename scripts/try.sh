#!/bin/bash
# The main job on real inputs, in a sandbox: installs what ootmod needs, builds ootmod, then builds and
# installs the fixture modules and a real Debian DKMS package (v4l2loopback-dkms) for the installed
# Debian kernel headers into a sandbox root, and prints the status table. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
npm ci --no-audit --no-fund --loglevel=error
npm run build --silent
root=${OOTMOD_TRY_ROOT:-/var/tmp/ootmod-try}
rm -rf "$root"
mkdir -p "$root/usr/lib/modules" "$root/usr/src" "$root/var/lib"
ln -s usr/lib "$root/lib"
for build in /usr/lib/modules/*/build; do
  [ -e "$build/.config" ] || continue
  kver=$(basename "$(dirname "$build")")
  mkdir -p "$root/usr/lib/modules/$kver"
  ln -s "$(readlink -f "$build")" "$root/usr/lib/modules/$kver/build"
done
for d in test/fixtures/ootmod-*; do cp -a "$d" "$root/usr/src/"; done
tmp=$(mktemp -d)
(cd "$tmp" && apt-get download -q v4l2loopback-dkms >/dev/null)
dpkg-deb -x "$tmp"/v4l2loopback-dkms_*.deb "$tmp/x"
cp -a "$tmp"/x/usr/src/v4l2loopback-* "$root/usr/src/"
rm -rf "$tmp"
chmod -R go-w "$root/usr/src"
chown -R root:root "$root/usr/src"
echo "== ootmod kernels"
dist/ootmod --root "$root" kernels
echo "== ootmod autoinstall (ootmod-broken fails on purpose; ootmod-exclusive is excluded on purpose; ootmod-rust-hello needs a CONFIG_RUST kernel)"
dist/ootmod --root "$root" autoinstall || true
echo "== ootmod status"
dist/ootmod --root "$root" status
echo "== installed under $root/usr/lib/modules/*/updates/ootmod:"
ls -l "$root"/usr/lib/modules/*/updates/ootmod/
