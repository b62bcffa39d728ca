#!/usr/bin/env bash
# Refreshes the console's vendored JavaScript libraries (collector/web/vendor/) from
# the npm registry, with their licence files. No Node build: only `npm pack` to fetch
# the published tarball. Usage: deploy/web/refresh-vendor.sh [uplot-version]
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
dest="$here/collector/web/vendor"
uplot="${1:-1.6.32}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && npm pack --silent "uplot@$uplot" >/dev/null && tar xzf uplot-"$uplot".tgz )
mkdir -p "$dest"
cp "$tmp/package/dist/uPlot.iife.min.js" "$dest/uPlot.iife.min.js"
cp "$tmp/package/dist/uPlot.min.css" "$dest/uPlot.min.css"
cp "$tmp/package/LICENSE" "$dest/uPlot.LICENSE"
echo "uplot $uplot" > "$dest/VERSIONS"
echo "vendored into $dest:"; ls -l "$dest"
