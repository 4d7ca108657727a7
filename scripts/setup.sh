#!/usr/bin/env bash
# Bring a checkout to the state `make serve` and `make test` need; safe to run any number of times.
#
# Steps: system packages (bubblewrap, chromium) -> a pinned uv -> the locked virtualenv (.venv, dev
# group included) -> the read-only toolchain the sandboxes see -> the npm packages the server serves
# (node_modules: Pyodide for the browser runtime). Each step checks before it acts, so on a
# ready machine the whole script takes a few seconds. Progress goes to stderr, one line per step.
#
# Needs: bash, python3 (>= 3.11) with pip, and network access to PyPI (plus apt for the system
# packages) the first time. It never downloads a Python: an interpreter must already be installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# The uv that wrote uv.lock. A different uv may re-resolve or reject the lock, so we pin it; keep
# this in step with the Dockerfile (tests/test_deployment.py checks that they agree).
UV_VERSION=0.13.9
# uv installed by this script lives inside the checkout: no root, no venv, no ~/.local needed.
TOOLS_DIR="$ROOT/var/tools"

step() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# --- 1. system packages ------------------------------------------------------------------------
deps_script="$ROOT/scripts/install-system-deps.sh"
if [[ -f "$deps_script" ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    step "system packages: scripts/install-system-deps.sh"
    bash "$deps_script"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    step "system packages: sudo scripts/install-system-deps.sh"
    sudo -n bash "$deps_script"
  else
    # No passwordless sudo: run it unprivileged. It exits early when nothing is missing and says
    # exactly which packages to install otherwise; prompting for a password would hang CI.
    step "system packages: scripts/install-system-deps.sh (not root, no passwordless sudo)"
    bash "$deps_script"
  fi
else
  step "system packages: scripts/install-system-deps.sh not found, skipped"
fi

# --- 2. uv -------------------------------------------------------------------------------------
uv_version_of() { "$1" --version 2>/dev/null | awk '{print $2}'; }

UV=""
for candidate in "$TOOLS_DIR/uv/bin/uv" "$(command -v uv 2>/dev/null || true)"; do
  if [[ -n "$candidate" && -x "$candidate" && "$(uv_version_of "$candidate")" == "$UV_VERSION" ]]; then
    UV="$candidate"
    break
  fi
done

if [[ -n "$UV" ]]; then
  step "uv $UV_VERSION: $UV"
else
  step "uv $UV_VERSION: installing into var/tools/uv (pip --target, from PyPI)"
  command -v python3 >/dev/null 2>&1 || die "python3 not found; install Python 3.11+"
  python3 -m pip --version >/dev/null 2>&1 \
    || die "python3 has no pip; install it (apt-get install python3-pip) or put uv $UV_VERSION on PATH"
  mkdir -p "$TOOLS_DIR"
  # --target sidesteps PEP 668 "externally managed" interpreters and needs no venv; installing
  # next to the final place and renaming means an interrupted run never leaves a broken uv behind.
  tmp="$(mktemp -d "$TOOLS_DIR/uv.tmp.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
    --no-warn-script-location \
    --target "$tmp" "uv==$UV_VERSION"
  rm -rf "$TOOLS_DIR/uv"
  mv "$tmp" "$TOOLS_DIR/uv"
  trap - EXIT
  UV="$TOOLS_DIR/uv/bin/uv"
  [[ "$(uv_version_of "$UV")" == "$UV_VERSION" ]] || die "installed uv does not report version $UV_VERSION"
fi

# --- 3. the locked virtualenv ------------------------------------------------------------------
# --frozen installs exactly uv.lock and never rewrites it. Python downloads are off unless asked
# for: they come from GitHub, and "no Python 3.11 found" is a clearer failure than a network error.
# --compile-bytecode: with PYTHONDONTWRITEBYTECODE set (as on these machines) Python never
# caches what it compiles, and every process (each daphne and worker a test starts) compiled all
# of Django, the SDKs and their dependencies again: about 5 s of its start-up.
step "virtualenv: uv sync --frozen --compile-bytecode (.venv, dev group included)"
UV_PYTHON_DOWNLOADS="${UV_PYTHON_DOWNLOADS:-never}" "$UV" sync --frozen --quiet --compile-bytecode

# --- 4. the sandbox toolchain ------------------------------------------------------------------
# Sandboxes have no network, so their pytest is installed here, read-only; skipped when current.
step "sandbox toolchain: manage.py install_toolchain"
UV="$UV" .venv/bin/python manage.py install_toolchain

# --- 5. npm packages ---------------------------------------------------------------------------
# Pyodide, served as static files by the server for the browser runtime (docs/browser-runtime.md).
# `npm ci` installs exactly package-lock.json; it runs only when node_modules is missing or older
# than the lock (npm rewrites node_modules/.package-lock.json on every install).
if [[ -f package-lock.json ]]; then
  if [[ node_modules/.package-lock.json -nt package-lock.json ]]; then
    step "npm packages: node_modules up to date"
  elif command -v npm >/dev/null 2>&1; then
    step "npm packages: npm ci (node_modules from package-lock.json)"
    npm ci --no-audit --no-fund --loglevel=error >&2
  else
    step "npm packages: npm not found, skipped: the browser runtime page cannot load Pyodide (install Node.js and npm, then re-run)"
  fi
fi

step "done"
