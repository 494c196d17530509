#!/usr/bin/env bash
# Build the Debian package of fedgate: target/debian/fedgate_<version>-1_<arch>.deb.
#   scripts/build-deb.sh                  release build (what you install; cargo's release profile)
#   scripts/build-deb.sh --profile dev    from the debug build (quick to build, an unoptimised
#                                         binary: the package test uses it; cargo-deb warns that it
#                                         is meant for releases; the package is otherwise the same)
#   --output PATH                         write the .deb to this file or directory
#   --deb-version VERSION                 the package's version (default: the crate's, revision 1)
# Needs cargo-deb (.ci/install-deps.sh installs it: cargo install cargo-deb --locked) and
# dpkg-dev and binutils. Prints the path of the .deb as its last line (after that of the
# fedgate-dbgsym .ddeb with the release build's line tables).
#
# Steps: cargo build the binary; run it to generate the man pages (fedgate generate-man) and the
# bash/zsh/fish completions (fedgate generate-completions) from the CLI definition, into
# target/<profile dir>/deb-assets; then cargo deb --no-build packs what
# crates/fedgate/Cargo.toml [package.metadata.deb] lists.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

profile=release
output=
deb_version=
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --profile=*) profile="${1#--profile=}"; shift ;;
        --output) output="$2"; shift 2 ;;
        --deb-version) deb_version="$2"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "build-deb.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$profile" in
    dev|debug) profile=dev; profile_dir=debug ;;
    *) profile_dir="$profile" ;;
esac

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb.sh: cargo-deb is missing: cargo install cargo-deb --locked (or bash .ci/install-deps.sh)" >&2
    exit 1
fi

target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
cargo build --profile "$profile" -p fedgate --bin fedgate >&2

bin="$target_dir/$profile_dir/fedgate"
assets="$target_dir/$profile_dir/deb-assets"
rm -rf "$assets"
mkdir -p "$assets/completions"
"$bin" generate-man "$assets/man"
# Debian policy: man pages gzipped (cargo-deb compresses only assets not under target/).
gzip -9n "$assets"/man/*.1
"$bin" generate-completions bash > "$assets/completions/fedgate.bash"
"$bin" generate-completions zsh > "$assets/completions/_fedgate"
"$bin" generate-completions fish > "$assets/completions/fedgate.fish"

# From the debug build: stripped (binutils' strip), no debug symbols package, lightly compressed,
# to keep it quick. The release build also writes fedgate-dbgsym_*.ddeb with the line tables
# [profile.release] debug = 1 asks for (dbgsym in [package.metadata.deb]; binutils' objcopy).
extra=()
[ "$profile" = dev ] && extra+=(--no-separate-debug-symbols --strip --fast)
[ -n "$output" ] && extra+=(--output "$output")
[ -n "$deb_version" ] && extra+=(--deb-version "$deb_version")
# cargo deb prints the paths of what it wrote: the .ddeb (if any) first, the .deb last.
written="$(cargo deb -p fedgate --no-build --profile "$profile" "${extra[@]}")"
grep -v '\.deb$' <<<"$written" || true
grep '\.deb$' <<<"$written"
