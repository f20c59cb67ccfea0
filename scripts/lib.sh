# lib.sh -- shared by scripts/*: install missing Debian packages, build,
# find a free loopback port, start and stop a private redis-server.
# Sourced, not run. Every function fails loudly.

FK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian packages the build, the tests and the demo need (names in README).
# openssl is a build package: tests/meson.build needs the program at setup
# (before, it came in only as a dependency of ca-certificates).
FK_BUILD_PKGS="gcc libc6-dev pkg-config meson ninja-build libhiredis-dev libuv1-dev libcjson-dev
  libcurl4-gnutls-dev libssl-dev nettle-dev libcmocka-dev libhttp-parser-dev openssl"
FK_RUN_PKGS="redis-server redis-tools curl ca-certificates"
FK_TEST_PKGS="valgrind"

fk_log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
fk_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Install whichever of the given Debian packages are missing
# (apt-get install -y, non-interactive). Needs root or sudo.
fk_ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  fk_log "installing missing Debian packages: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || fk_die "need root (or sudo) to install: ${missing[*]}"
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq || fk_die "apt-get update failed"
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    fk_die "apt-get install failed for: ${missing[*]}"
}

# fk_build DIR [meson options...]: configure once, then build.
fk_build() {
  local dir=$1
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    fk_log "configuring $dir $*"
    meson setup "$dir" "$FK_ROOT" "$@" >/dev/null || fk_die "meson setup $dir failed"
  fi
  fk_log "building $dir"
  ninja -C "$dir" >/dev/null || { ninja -C "$dir"; fk_die "build failed in $dir"; }
}

# A TCP port on 127.0.0.1 that nothing listens on.
fk_free_port() {
  local p i
  for i in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  fk_die "no free port found"
}

# fk_redis_start DIR PORT: a private redis-server with AOF (appendfsync
# always) in DIR; waits until it answers.
fk_redis_start() {
  local dir=$1 port=$2 i
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' \
    --appendonly yes --appendfsync always --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null ||
    fk_die "redis-server did not start (see $dir/redis.log)"
  for i in $(seq 1 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  fk_die "redis-server on port $port does not answer"
}

fk_redis_stop() {
  local dir=$1 port=$2
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  [ -f "$dir/redis.pid" ] && kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
}
