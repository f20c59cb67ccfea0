#!/usr/bin/env bash
# Installs what the BullMQ benchmark peer needs: node + npm (Debian's packages if missing),
# then the exact dependency tree of package-lock.json into ./node_modules (npm ci), only when
# node_modules is missing or does not match the lockfile / node version.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "install.sh: node/npm missing, installing Debian's nodejs and npm" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  # ca-certificates: npm needs it to reach the registry over TLS (absent on minimal images)
  $sudo apt-get install -y -q --no-install-recommends nodejs npm ca-certificates
fi

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 18 ]; then
  echo "install.sh: node $(node -v) is too old, need >= 18" >&2
  exit 1
fi

# Stamp = lockfile content + node major: a new lockfile or another node means a fresh npm ci.
want="$(sha256sum package-lock.json | cut -d' ' -f1) node${node_major}"
stamp="node_modules/.bullbench-stamp"
have=""
if [ -f "$stamp" ]; then have="$(cat "$stamp")"; fi
if [ ! -d node_modules ] || [ "$have" != "$want" ] \
   || ! node -e 'require("bullmq"); require("ioredis")' >/dev/null 2>&1; then
  echo "install.sh: npm ci in $here" >&2
  npm ci --no-audit --no-fund
  node -e 'require("bullmq"); require("ioredis")'
  printf '%s\n' "$want" > "$stamp"
else
  echo "install.sh: node_modules up to date (bullmq $(node -p 'require("bullmq/package.json").version'), node $(node -v))" >&2
fi
