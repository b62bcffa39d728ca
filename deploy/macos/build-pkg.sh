#!/usr/bin/env bash
# Builds tandem-agent-<version>.pkg on macOS with pkgbuild and productbuild.
# NOT run in CI, and never built or tested so far: there is no macOS machine (and
# pkgbuild/productbuild exist only there). Signing needs a "Developer ID Installer"
# identity (--sign NAME) and notarization (xcrun notarytool) for Gatekeeper.
#
#   deploy/macos/build-pkg.sh --agent PATH/tandem-agent --out DIR [--version V] [--sign ID]
#
# The agent is a universal or per-arch build of `cargo build --profile agent-release
# --target aarch64-apple-darwin` (and x86_64-apple-darwin, joined with lipo).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
agent= out= version=0.1.0 sign=
while [ $# -gt 0 ]; do
    case "$1" in
        --agent) agent=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --version) version=$2; shift 2 ;;
        --sign) sign=$2; shift 2 ;;
        *) echo "build-pkg.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -x "$agent" ] && [ -n "$out" ] || { echo "usage: build-pkg.sh --agent BIN --out DIR [--version V] [--sign ID]" >&2; exit 2; }
command -v pkgbuild >/dev/null || { echo "build-pkg.sh: pkgbuild not found: this runs on macOS only" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
install -d "$work/root/usr/local/tandem/bin" "$work/root/Library/LaunchDaemons"
install -m 0755 "$agent" "$work/root/usr/local/tandem/bin/tandem-agent"
install -m 0644 "$here/com.tandem.agent.plist" "$work/root/Library/LaunchDaemons/"
mkdir -p "$out"
pkgbuild --root "$work/root" --scripts "$here/scripts" --identifier com.tandem.agent \
    --version "$version" --install-location / "$work/tandem-agent-component.pkg"
args=(--package "$work/tandem-agent-component.pkg")
[ -z "$sign" ] || args+=(--sign "$sign")
productbuild "${args[@]}" "$out/tandem-agent-$version.pkg"
echo "$out/tandem-agent-$version.pkg"
