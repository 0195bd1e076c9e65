#!/usr/bin/env bash
# System packages the browser and database tests use: Debian's Chromium (driven by Playwright) and
# PostgreSQL (the annotation server's concurrency test starts a throwaway cluster on loopback).
# Installs what is missing where it can (root, or password-less sudo, with apt-get); otherwise says what
# is missing and the one command that installs it. Never fails: the tests that need a package skip.
set -uo pipefail

need=()
command -v chromium >/dev/null 2>&1 || [[ -x /usr/bin/chromium ]] || need+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
((${#need[@]})) || exit 0

install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}")
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: ${need[*]} missing and no apt-get here: install them with the system's package manager" >&2
  exit 0
fi
if [[ $(id -u) -eq 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "system-deps: ${need[*]} missing; install with: sudo scripts/system-deps.sh" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]} (apt-get)" >&2
if ! { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" "${install[@]}" >/dev/null; }; then
  echo "system-deps: could not install ${need[*]}; the tests that need them will be skipped" >&2
fi
exit 0
