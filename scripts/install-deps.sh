#!/bin/sh
# Installs what ootmod and its tests need on a Debian 12 (or newer) machine. Run as root.
set -eu
export DEBIAN_FRONTEND=noninteractive
arch=$(dpkg --print-architecture)
apt-get update -q
# The programs ootmod runs (gcc/make/kbuild, strip, patch, openssl, compressors, depmod/modinfo)
# and the host's real Debian kernel headers to build against.
apt-get install -y -q --no-install-recommends \
  bash ca-certificates gcc make binutils patch openssl xz-utils zstd gzip kmod \
  dpkg-dev "linux-headers-$arch" git
# GRUB's grub-editenv, which the boot guard uses (its tests edit a grubenv in a temporary root; the
# package installs no bootloader and touches no boot configuration).
apt-get install -y -q --no-install-recommends grub-common
# The initramfs listing tools readiness uses, lsinitramfs (initramfs-tools-core) and lsinitrd
# (dracut-core), and cpio, with which the tests make small initramfs images. Neither package makes
# initramfs images on its own (the kernel hooks are in initramfs-tools and dracut).
apt-get install -y -q --no-install-recommends initramfs-tools-core dracut-core cpio
# node >= 18.19 and npm: keep a suitable node that is already there, else take Debian's.
if ! command -v node >/dev/null 2>&1 || ! node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>18||(a===18&&b>=19)?0:1)'; then
  apt-get install -y -q --no-install-recommends nodejs npm
fi
command -v npm >/dev/null 2>&1 || apt-get install -y -q --no-install-recommends npm
