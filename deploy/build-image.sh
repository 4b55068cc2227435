#!/usr/bin/env bash
# Build the ringmesh-proxy container image: static binaries (release,
# glibc crt-static, x86_64-unknown-linux-gnu), checked to be static, copied
# into a `FROM scratch` image with podman (buildah inside).
#
# Usage: deploy/build-image.sh [--tag IMAGE] [--testbed-tag IMAGE]
#   --tag IMAGE          the proxy image (default localhost/ringmesh-proxy:dev)
#   --testbed-tag IMAGE  also build the end-to-end tests' app image
#                        (ringmesh-testbed, deploy/testbed.Containerfile)
#
# Environment: RINGMESH_STATIC_TARGET_DIR (default target/static) keeps the
# static build apart from the normal target/ so neither invalidates the
# other's cache. Needs cargo, podman, file.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tag=localhost/ringmesh-proxy:dev
testbed_tag=
while [ $# -gt 0 ]; do
    case "$1" in
        --tag) tag=${2:?--tag needs a value}; shift 2 ;;
        --testbed-tag) testbed_tag=${2:?--testbed-tag needs a value}; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "build-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

for tool in cargo podman file; do
    command -v "$tool" >/dev/null || {
        echo "build-image: $tool is required (podman: apt-get install -y podman runc; file: apt-get install -y file)" >&2
        exit 1
    }
done

target=x86_64-unknown-linux-gnu
target_dir=${RINGMESH_STATIC_TARGET_DIR:-$root/target/static}
bins=(ringmesh-proxy)
packages=(-p ringmesh-proxy --bin ringmesh-proxy)
if [ -n "$testbed_tag" ]; then
    bins+=(ringmesh-testbed)
    packages+=(-p ringmesh-e2e --bin ringmesh-testbed)
fi

echo "==> cargo build --release --target $target (static: +crt-static) ${bins[*]}"
# --target is explicit so RUSTFLAGS apply to the binaries only, not to
# build scripts and proc macros (which must stay dynamic host programs).
# Debug info is stripped (symbols stay, so backtraces keep function names).
(cd "$root" && RUSTFLAGS='-C target-feature=+crt-static' CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    cargo build --release --target "$target" --target-dir "$target_dir" "${packages[@]}")

out=$target_dir/$target/release
for bin in "${bins[@]}"; do
    kind=$(file -b "$out/$bin")
    case "$kind" in
        *"statically linked"*|*"static-pie linked"*) ;;
        *) echo "build-image: $out/$bin is not static: $kind" >&2; exit 1 ;;
    esac
    # ldd on a static binary says "not a dynamic executable" (or "statically
    # linked" for static-pie); any "=>" line is a shared library it needs.
    if ldd "$out/$bin" 2>&1 | grep -q '=>'; then
        echo "build-image: $out/$bin needs shared libraries:" >&2
        ldd "$out/$bin" >&2
        exit 1
    fi
    echo "    $bin: $kind" | cut -c1-120
done

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || true)
version=${version:-0.0.0}${rev:++$rev}

ctx=$(mktemp -d /tmp/ringmesh-image.XXXXXX)
trap 'rm -rf "$ctx"' EXIT

build() { # IMAGE CONTAINERFILE FILES...
    local image=$1 containerfile=$2
    shift 2
    rm -rf "${ctx:?}"/*
    cp "$@" "$ctx/"
    local before
    before=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
    echo "==> podman build -t $image ($(basename "$containerfile"))"
    # --layers=false: commit the final image only, no intermediate images
    # left behind. No RUN step, so no OCI runtime is involved.
    podman build --quiet --pull=never --layers=false --build-arg "VERSION=$version" \
        -f "$containerfile" -t "$image" "$ctx" >/dev/null
    # The image this tag named before, now untagged: remove it unless a
    # container still uses it or another tag names it.
    if [ -n "$before" ] && [ "$before" != "$(podman image inspect --format '{{.Id}}' "$image")" ] \
        && [ -z "$(podman image inspect --format '{{join .RepoTags ","}}' "$before" 2>/dev/null)" ]; then
        podman rmi "$before" >/dev/null 2>&1 || true
    fi
    size=$(podman image inspect --format '{{.Size}}' "$image")
    echo "    $image: $((size / 1024)) KiB ($size bytes)"
}

build "$tag" "$root/deploy/Containerfile" "$out/ringmesh-proxy" "$root/deploy/proxy.yaml"
if [ -n "$testbed_tag" ]; then
    build "$testbed_tag" "$root/deploy/testbed.Containerfile" "$out/ringmesh-testbed"
fi
