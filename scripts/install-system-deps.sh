#!/usr/bin/env bash
# Install the system packages the agent runtime server needs on Debian/Ubuntu hosts.
#
# * bubblewrap: the `local` sandbox backend's isolation tier (sandboxes/backends/local.py).
# * util-linux: prlimit and setpriv (rlimits, dropping to the sandbox uid).
# * libseccomp2: the sandbox's seccomp filter is compiled with it (through pyseccomp).
# * podman, runc, catatonit: a Docker-compatible engine for the `docker` backend's tests
#   (tests/sandboxes/podman.py; catatonit is podman's `init`, runc its runtime on hybrid cgroups).
# * chromium: the headless browser the Playwright tests drive (tests/browser/; Playwright cannot
#   download its own browser builds here, so the tests use Debian's).
# * ripgrep: OpenCode's and Codex CLI's grep/glob tools run `rg` (the coding-agent
#   architectures, sessions/runners/architectures/); without it OpenCode tries to download it.
#
# Idempotent: when every command is already present it exits without touching apt.
# Runs as root, or re-executes itself through sudo when not root.
set -euo pipefail

# command -> Debian package providing it
declare -A wanted=(
  [bwrap]=bubblewrap
  [prlimit]=util-linux
  [setpriv]=util-linux
  [podman]=podman
  [runc]=runc
  [chromium]=chromium
  [rg]=ripgrep
)

missing=()
for cmd in "${!wanted[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    pkg="${wanted[$cmd]}"
    # de-duplicate (prlimit and setpriv share a package)
    if [[ " ${missing[*]-} " != *" $pkg "* ]]; then
      missing+=("$pkg")
    fi
  fi
done

# Libraries have no command to look for: ask the dynamic linker.
if ! ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2'; then
  missing+=(libseccomp2)
fi
# Packages without a command on PATH: ask dpkg.
for pkg in catatonit; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-system-deps: all system dependencies present (bwrap $(bwrap --version 2>/dev/null | awk '{print $2}'))"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    exec sudo -n -- bash "$0" "$@"
  fi
  echo "install-system-deps: need root (or sudo) to install: ${missing[*]}" >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: apt-get not found; install these packages manually: ${missing[*]}" >&2
  exit 1
fi

echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"

for cmd in "${!wanted[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "install-system-deps: $cmd still missing" >&2; exit 1; }
done
echo "install-system-deps: done"
