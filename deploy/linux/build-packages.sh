#!/usr/bin/env bash
# Builds the .deb and .rpm packages of tandem-agent and tandem-collector from
# staged trees with dpkg-deb and rpmbuild (Debian's `rpm` package has it), driven by
# `cargo metadata` (name, version, description, license, repository). No cargo-deb
# or cargo-generate-rpm: installing those takes 3-7 min of CI per run, and these
# packages need only a file list, two units and a few maintainer scripts.
#
#   deploy/linux/build-packages.sh --out DIR [--agent BIN] [--collector BIN]
#       [--release N] [--fast] [--only deb|rpm]
#
# --agent defaults to the shipping build (static musl, agent-release profile),
# --collector to the release build (`cargo build --release -p tandem-collector
# --no-default-features`: the shipped collector has no demo and no agent code).
# --release is the package revision (deb "0.1.0-N", rpm "Release: N"). --fast compresses with gzip -1 (tests). Binaries are
# stripped of debug info in the staged copy. Prints the paths of the packages built.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
agent_bin=$target/x86_64-unknown-linux-musl/agent-release/tandem-agent
collector_bin=$target/release/tandem-collector
out= release=1 fast=0 only=
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --agent) agent_bin=$2; shift 2 ;;
        --collector) collector_bin=$2; shift 2 ;;
        --release) release=$2; shift 2 ;;
        --fast) fast=1; shift ;;
        --only) only=$2; shift 2 ;;
        *) echo "build-packages.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$out" ] || { echo "build-packages.sh: --out DIR is required" >&2; exit 2; }
case "$release" in ''|*[!0-9]*) echo "build-packages.sh: --release must be a number, not $release" >&2; exit 2 ;; esac
for b in "$agent_bin" "$collector_bin"; do
    [ -x "$b" ] || { echo "build-packages.sh: $b is missing: build it first" >&2; exit 1; }
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# name version description license repository, one package per line.
meta=$(cd "$root" && cargo metadata --no-deps --format-version 1)
field() { # field PACKAGE KEY
    printf '%s' "$meta" | python3 -c '
import json, sys
m = json.load(sys.stdin)
p = next(p for p in m["packages"] if p["name"] == sys.argv[1])
v = p.get(sys.argv[2])
if not v and sys.argv[2] == "repository":
    v = "https://github.com/tandem-rmm/tandem"
print(v or "")' "$1" "$2"
}

stage_agent() { # DIR
    local d=$1
    install -D -m 0755 "$agent_bin" "$d/usr/bin/tandem-agent"
    install -D -m 0644 "$here/tandem-agent.service" "$d/usr/lib/systemd/system/tandem-agent.service"
    install -D -m 0644 "$here/agent.toml" "$d/etc/tandem/agent.toml"
}

stage_collector() { # DIR
    local d=$1
    install -D -m 0755 "$collector_bin" "$d/usr/bin/tandem-collector"
    install -D -m 0644 "$here/tandem-collector.service" "$d/usr/lib/systemd/system/tandem-collector.service"
    mkdir -p "$d/etc/tandem/rules"
    {
        echo "# Installed by the tandem-collector package (a conffile: edits survive upgrades)."
        sed -e 's|^data_dir = "/var/lib/tandem"|data_dir = "/var/lib/tandem/collector"|' "$root/deploy/collector.toml"
    } > "$d/etc/tandem/collector.toml"
    chmod 0644 "$d/etc/tandem/collector.toml"
    install -m 0644 "$root"/deploy/rules/*.toml "$d/etc/tandem/rules/"
}

strip_bins() { # DIR
    if command -v objcopy >/dev/null 2>&1; then
        for f in "$1"/usr/bin/*; do objcopy --strip-debug "$f"; done
    fi
}

# Maintainer script: the shared functions, then the dispatch for this step.
script() { # OUT FUNCFILE... -- BODY
    local dst=$1; shift
    { echo '#!/bin/sh'; echo 'set -e'
      while [ "$1" != -- ]; do cat "$here/scripts/$1"; shift; done; shift
      printf '%s\n' "$1"; } > "$dst"
    chmod 0755 "$dst"
}

build_deb() { # PKG
    local pkg=$1 d=$work/deb-$1 version
    version=$(field "$pkg" version)-$release
    mkdir -p "$d/DEBIAN"
    "stage_${pkg#tandem-}" "$d"
    strip_bins "$d"
    (cd "$d" && find etc -type f | sed 's|^|/|' | sort) > "$d/DEBIAN/conffiles"
    local depends=""
    if [ "$pkg" = tandem-collector ]; then
        depends="Depends: libc6, passwd, util-linux"
        script "$d/DEBIAN/preinst" collector-user.sh -- 'case "$1" in install|upgrade) tandem_collector_user ;; esac'
        script "$d/DEBIAN/postinst" collector-configure.sh -- 'case "$1" in configure) if [ -n "${2:-}" ]; then tandem_collector_configure upgrade; else tandem_collector_configure fresh; fi ;; esac'
        script "$d/DEBIAN/prerm" collector-stop.sh -- 'case "$1" in remove|deconfigure) tandem_collector_stop ;; esac'
        script "$d/DEBIAN/postrm" collector-purge.sh -- 'case "$1" in purge) tandem_collector_purge ;; esac
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi'
    else
        script "$d/DEBIAN/postinst" agent-configure.sh -- 'case "$1" in configure) if [ -n "${2:-}" ]; then tandem_agent_configure upgrade; else tandem_agent_configure fresh; fi ;; esac'
        script "$d/DEBIAN/prerm" agent-stop.sh -- 'case "$1" in remove|deconfigure) tandem_agent_stop ;; esac'
        script "$d/DEBIAN/postrm" agent-purge.sh -- 'case "$1" in purge) tandem_agent_purge ;; esac
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi'
    fi
    {
        echo "Package: $pkg"
        echo "Version: $version"
        echo "Architecture: amd64"
        echo "Maintainer: Tandem developers <tandem@example.invalid>"
        echo "Installed-Size: $(du -sk --exclude=DEBIAN "$d" | cut -f1)"
        [ -z "$depends" ] || echo "$depends"
        echo "Section: admin"
        echo "Priority: optional"
        echo "Homepage: $(field "$pkg" repository)"
        echo "Description: $(field "$pkg" description)"
        if [ "$pkg" = tandem-agent ]; then
            echo " License: $(field "$pkg" license). Unattended enrollment (docs/INSTALL.md):"
            echo " TANDEM_TOKEN=... apt install ./$pkg.deb"
        else
            echo " License: $(field "$pkg" license). See docs/INSTALL.md."
        fi
    } > "$d/DEBIAN/control"
    local f=$out/${pkg}_${version}_amd64.deb
    if [ "$fast" = 1 ]; then
        dpkg-deb --root-owner-group -Zgzip -z1 --build "$d" "$f" >/dev/null
    else
        dpkg-deb --root-owner-group -Zxz --build "$d" "$f" >/dev/null
    fi
    echo "$f"
}

build_rpm() { # PKG
    local pkg=$1 d=$work/rpm-$1 version spec=$work/$1.spec
    version=$(field "$pkg" version)
    "stage_${pkg#tandem-}" "$d"
    strip_bins "$d"
    local fn=${pkg#tandem-}
    {
        echo "Name: $pkg"
        echo "Version: $version"
        echo "Release: $release"
        echo "Summary: $(field "$pkg" description)"
        echo "License: $(field "$pkg" license)"
        echo "URL: $(field "$pkg" repository)"
        echo "BuildArch: x86_64"
        echo "AutoReqProv: no"
        if [ "$pkg" = tandem-collector ]; then
            echo "Requires(pre): shadow-utils"
            echo "Requires(post): util-linux"
        fi
        echo "%global debug_package %{nil}"
        echo "%global __os_install_post %{nil}"
        echo "%global _build_id_links none"
        [ "$fast" = 1 ] && echo "%global _binary_payload w1.gzdio"
        echo "%description"
        if [ "$pkg" = tandem-agent ]; then
            echo "$(field "$pkg" description). Unattended enrollment (docs/INSTALL.md): TANDEM_TOKEN=... dnf install ./$pkg.rpm"
        else
            echo "$(field "$pkg" description). See docs/INSTALL.md."
        fi
        echo "%install"
        echo "cp -a $d/. %{buildroot}/"
        if [ "$pkg" = tandem-collector ]; then
            echo "%pre"; cat "$here/scripts/collector-user.sh"; echo "tandem_collector_user"
        fi
        echo "%post"; cat "$here/scripts/$fn-configure.sh"
        echo "if [ \"\$1\" -gt 1 ]; then tandem_${fn}_configure upgrade; else tandem_${fn}_configure fresh; fi"
        echo "%preun"; cat "$here/scripts/$fn-stop.sh"
        echo "if [ \"\$1\" -eq 0 ]; then tandem_${fn}_stop; fi"
        echo "%postun"
        echo "if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi"
        echo "%files"
        echo "%attr(0755,root,root) /usr/bin/$pkg"
        echo "%attr(0644,root,root) /usr/lib/systemd/system/$pkg.service"
        echo "%dir %attr(0755,root,root) /etc/tandem"
        (cd "$d" && find etc -type f | sort) | while read -r f; do
            echo "%config(noreplace) %attr(0644,root,root) /$f"
        done
        [ "$pkg" = tandem-collector ] && echo "%dir %attr(0755,root,root) /etc/tandem/rules"
    } > "$spec"
    rpmbuild -bb --quiet --define "_topdir $work/rpmbuild" --define "_rpmdir $work/rpms" \
        --define "_tmppath $work/tmp" "$spec" >/dev/null
    local f
    f=$(find "$work/rpms" -name "$pkg-$version-$release.*.rpm" | head -n1)
    mv "$f" "$out/"
    echo "$out/$(basename "$f")"
}

for pkg in tandem-agent tandem-collector; do
    [ "$only" = rpm ] || build_deb "$pkg"
    [ "$only" = deb ] || build_rpm "$pkg"
done
