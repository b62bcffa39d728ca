#!/usr/bin/env bash
# Builds tandem-agent.msi from deploy/windows/tandem-agent.wxs with wixl (Debian's
# `wixl`, from msitools), around an agent built for x86_64-pc-windows-gnu.
#
#   deploy/windows/build-msi.sh --out DIR [--agent tandem-agent.exe] [--version X.Y.Z]
#
# --version defaults to the agent's version in `cargo metadata`; an MSI upgrade needs
# a higher one. The exe is stripped in a staged copy. Prints the MSI's path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
agent=$target/x86_64-pc-windows-gnu/release/tandem-agent.exe
out= version=
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --agent) agent=$2; shift 2 ;;
        --version) version=$2; shift 2 ;;
        *) echo "build-msi.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$out" ] || { echo "build-msi.sh: --out DIR is required" >&2; exit 2; }
[ -f "$agent" ] || { echo "build-msi.sh: $agent is missing: cargo build --target x86_64-pc-windows-gnu -p tandem-agent" >&2; exit 1; }
command -v wixl >/dev/null || { echo "build-msi.sh: wixl is not installed (apt-get install wixl)" >&2; exit 1; }
if [ -z "$version" ]; then
    version=$(cd "$root" && cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "tandem-agent"))')
fi
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$agent" "$work/tandem-agent.exe"
if command -v x86_64-w64-mingw32-strip >/dev/null; then
    x86_64-w64-mingw32-strip --strip-debug "$work/tandem-agent.exe"
fi
msi=$(cd "$out" && pwd)/tandem-agent-$version-x64.msi
# wixl resolves Source paths relative to the source file's folder (no absolute ones).
cp "$here/tandem-agent.wxs" "$work/"
(cd "$work" && wixl -a x64 -D Version="$version" -D AgentExe=tandem-agent.exe -o "$msi" tandem-agent.wxs)
echo "$msi"
