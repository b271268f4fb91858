# shellcheck shell=bash
# Install steps shared by build.sh, test.sh and tests/e2e/run.sh (source this file).
#
# The rule for every step: try the exact, locked install first; if the registry this machine
# reaches cannot serve it (registries lag, or lack a version a tool's own lockfile pins), install
# the same pinned top-level version without the lock, and say so in one line. Nothing here
# changes the system except the Debian packages, which ask for sudo when not root.

install_note() { printf 'install: %s\n' "$*" >&2; }

# Debian packages, installed only when missing. apt never pins versions here, so the fallback
# for a stale package list is to refresh it and retry.
install_apt() {
  local missing=() package
  for package in "$@"; do
    # Not `dpkg -s`: it succeeds for a removed package whose configuration files remain.
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null)" == installed ]] || missing+=("$package")
  done
  ((${#missing[@]})) || return 0
  local sudo_=""
  [[ $(id -u) -eq 0 ]] || sudo_=sudo
  install_note "apt-get install ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    install_note "apt-get install failed with the current package lists; refreshing them and retrying"
    $sudo_ apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -q --no-install-recommends --fix-missing "${missing[@]}"
  fi
}

# npm packages of DIR (package.json pins exact versions; package-lock.json pins the tree).
# `npm ci` when the lock resolves; otherwise `npm install` of the same exact top-level versions.
install_npm() {
  local dir=$1
  if [[ -d $dir/node_modules ]] && [[ ! $dir/package-lock.json -nt $dir/node_modules/.package-lock.json ]]; then
    return 0
  fi
  install_note "npm ci in $dir"
  if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error); then
    install_note "npm ci failed in $dir (the registry lacks a locked version); installing package.json's exact versions without the lock"
    (cd "$dir" && npm install --no-audit --no-fund --no-package-lock --loglevel=error)
  fi
}

# The wasm32 target of the current toolchain.
install_wasm_target() {
  rustup target list --installed | grep -qx wasm32-unknown-unknown && return 0
  install_note "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
}

# wasm-bindgen-cli at exactly VERSION (it must equal the wasm-bindgen crate's version), in the
# project's own tool folder (.tools/, or $SKINLENS_TOOLS), so a fresh clone always exercises
# this install. Sets WASM_BINDGEN to the binary.
install_wasm_bindgen() {
  local version=$1 root=${SKINLENS_TOOLS:-$PWD/.tools}
  WASM_BINDGEN=$root/bin/wasm-bindgen
  if [[ "$("$WASM_BINDGEN" --version 2>/dev/null)" == "wasm-bindgen $version" ]]; then
    return 0
  fi
  install_note "cargo install wasm-bindgen-cli $version into $root (about 1-2 min)"
  # --debug: the CLI only rewrites one module, and an unoptimised build installs in a third of the time.
  local log
  log=$(mktemp)
  if ! cargo install --quiet wasm-bindgen-cli --version "=$version" --locked --debug --root "$root" 2>"$log"; then
    install_note "the locked install failed ($(grep -m1 '^error' "$log" || echo 'see cargo'));" \
      "installing wasm-bindgen-cli $version unlocked"
    cargo install --quiet wasm-bindgen-cli --version "=$version" --debug --root "$root"
  fi
  rm -f "$log"
}
