#!/bin/bash
# Unpacks the dkms package of Debian sid into DIR (default /tmp/dkms-3.2), for the tests that run the
# real DKMS script beside ootmod (test/integration/dkms-parity.test.ts, dkms-autoinstall.test.ts). The
# mirror is the one this machine's apt sources name for Debian; sid's lists go to a temp dir, so the
# machine's apt state is not touched. Prints what it unpacked; exits non-zero (one line) on failure.
set -euo pipefail
dest=${1:-/tmp/dkms-3.2}
if [ -x "$dest/usr/sbin/dkms" ]; then echo "fetch-real-dkms: $dest already holds $("$dest/usr/sbin/dkms" --version 2>/dev/null || echo 'a dkms script')"; exit 0; fi
# The first Debian archive URI apt uses (not -security, whose suites are not sid's).
mirror=$(apt-cache policy | awk '$1 ~ /^[0-9]+$/ && $2 ~ /^(https?|file):/ && $3 !~ /-security/ { print $2; exit }')
if [ -z "$mirror" ]; then echo "fetch-real-dkms: no Debian mirror in this machine's apt sources: add one to /etc/apt/sources.list" >&2; exit 1; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/archives/partial"
echo "deb [trusted=yes] $mirror sid main" >"$work/sources.list"
opts=(-o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$work/lists"
  -o Dir::Cache::Archives="$work/archives" -o Acquire::Check-Valid-Until=false -o APT::Get::List-Cleanup=false -qq)
apt-get "${opts[@]}" update >"$work/update.log" 2>&1 || { echo "fetch-real-dkms: apt-get update of sid from $mirror failed: $(tail -n 1 "$work/update.log")" >&2; exit 1; }
(cd "$work" && apt-get "${opts[@]}" download dkms:all >/dev/null 2>"$work/download.log") || { echo "fetch-real-dkms: apt-get download dkms failed: $(tail -n 1 "$work/download.log")" >&2; exit 1; }
mkdir -p "$dest.tmp"
dpkg-deb -x "$work"/dkms_*_all.deb "$dest.tmp"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "fetch-real-dkms: unpacked $(basename "$work"/dkms_*_all.deb) into $dest"
