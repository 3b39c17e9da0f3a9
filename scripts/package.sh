#!/usr/bin/env bash
# Builds the Debian package from a release build: target/debian/canhazgpu_VERSION_ARCH.deb
# (its path is the one line printed on stdout). What goes where, and why dpkg-deb rather
# than cargo-deb: docs/packaging.md. Needs dpkg-dev (dpkg-shlibdeps, dpkg-parsechangelog).
#
# Usage: scripts/package.sh [path/to/canhazgpu [output directory]]
# Without a binary it runs `cargo build --release --locked` and packages that one; the
# package goes to target/debian unless another directory is given.
# Completions, manual pages and shell scripts come from the packaged binary itself, so
# they always match it. File times are the changelog's date, so that two builds of the
# same commit give the same package.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in dpkg-deb dpkg-shlibdeps dpkg-parsechangelog gzip strip; do
    if ! command -v "$tool" >/dev/null; then
        echo "scripts/package.sh: $tool is missing; install dpkg-dev (apt-get install dpkg-dev)" >&2
        exit 1
    fi
done

bin=${1:-}
if [[ -z $bin ]]; then
    cargo build --release --locked --quiet >&2
    bin=target/release/canhazgpu
fi
bin=$(realpath "$bin")

changelog=packaging/deb/changelog
deb_version=$(dpkg-parsechangelog -l "$changelog" -S Version)
maintainer=$(dpkg-parsechangelog -l "$changelog" -S Maintainer)
SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$changelog" -S Timestamp)
export SOURCE_DATE_EPOCH
version=$("$bin" --version)
version=${version#canhazgpu }
if [[ ${deb_version%-*} != "$version" ]]; then
    echo "scripts/package.sh: the binary is version $version but $changelog's newest entry is" \
        "$deb_version; add an entry for $version-1 (dch -v $version-1, or by hand)" >&2
    exit 1
fi
arch=$(dpkg --print-architecture)

out=${2:-$PWD/target/debian}
mkdir -p "$out"
out=$(realpath "$out")
stage=$out/stage
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"
# The packaging user's umask must not leak into the package.
umask 022

put() { # put MODE SOURCE DESTINATION: one file into the package tree
    install -D -m "$1" "$2" "$stage/$3"
}
gz() { # gz SOURCE DESTINATION.gz: compressed the way Debian wants (no name, no time)
    mkdir -p "$(dirname "$stage/$2")"
    gzip -9 -n -c "$1" >"$stage/$2"
    chmod 0644 "$stage/$2"
}
generated=$(mktemp -d)
trap 'rm -rf "$generated"' EXIT

put 0755 "$bin" usr/bin/canhazgpu
# What dh_strip removes beyond the symbols that the release profile already strips.
strip --remove-section=.comment --remove-section=.note "$stage/usr/bin/canhazgpu"

"$bin" completions bash >"$generated/canhazgpu.bash"
"$bin" completions zsh >"$generated/_canhazgpu"
"$bin" completions fish >"$generated/canhazgpu.fish"
put 0644 "$generated/canhazgpu.bash" usr/share/bash-completion/completions/canhazgpu
put 0644 "$generated/_canhazgpu" usr/share/zsh/vendor-completions/_canhazgpu
put 0644 "$generated/canhazgpu.fish" usr/share/fish/vendor_completions.d/canhazgpu.fish

"$bin" generate-man "$generated/man"
for page in "$generated"/man/*.1; do
    gz "$page" "usr/share/man/man1/$(basename "$page").gz"
done

# What `canhazgpu init SHELL` prints, so that `source`-ing the file and eval-ing the
# command's output are the same thing whatever init renders.
for shell in bash zsh fish; do
    "$bin" init "$shell" >"$generated/init.$shell"
    put 0644 "$generated/init.$shell" "usr/share/canhazgpu/init.$shell"
done

put 0644 packaging/deb/config.toml etc/canhazgpu/config.toml
put 0644 packaging/deb/tmpfiles.conf usr/lib/tmpfiles.d/canhazgpu.conf

docs=usr/share/doc/canhazgpu
put 0644 packaging/deb/copyright "$docs/copyright"
gz "$changelog" "$docs/changelog.Debian.gz"
# Policy 12.3: documentation over 4 kB is compressed.
gz README.md "$docs/README.md.gz"
for doc in shell nvml status-json; do
    gz "docs/$doc.md" "$docs/$doc.md.gz"
done

put 0755 packaging/deb/postinst DEBIAN/postinst
put 0755 packaging/deb/postrm DEBIAN/postrm
echo /etc/canhazgpu/config.toml >"$stage/DEBIAN/conffiles"

# dpkg-shlibdeps wants to run in a source tree; a stub debian/control is all it reads.
mkdir -p "$generated/src/debian"
printf 'Source: canhazgpu\n\nPackage: canhazgpu\nArchitecture: any\n' >"$generated/src/debian/control"
depends=$(cd "$generated/src" && dpkg-shlibdeps -O -e"$stage/usr/bin/canhazgpu")
depends=${depends#shlibs:Depends=}
installed_kb=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
{
    echo "Package: canhazgpu"
    echo "Version: $deb_version"
    echo "Architecture: $arch"
    echo "Maintainer: $maintainer"
    echo "Installed-Size: $installed_kb"
    echo "Depends: $depends"
    cat packaging/deb/control
} >"$stage/DEBIAN/control"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"

find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
deb="$out/canhazgpu_${deb_version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
