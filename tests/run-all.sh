#!/usr/bin/env bash
# Runs Tandem's whole test suite: unit tests of every crate and the end-to-end tests
# (real binaries, real mTLS on loopback, real SQLite files). Installs first whatever
# the tests need beyond the Rust toolchain (today: nothing — the SMTP server and the
# browser arrive with the alerting and console work, and will be installed here).
set -euo pipefail
cd "$(dirname "$0")/.."

# --- issue 16 (loss): libfaketime runs the agent with a skewed clock in
# tests/tests/e2e/loss.rs. As root, quietly, only when missing.
if [ ! -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null \
        || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null; }
fi
# --- end issue 16
# ---- Issue 13 (install at scale): packaging and MSI test tools -------------------
# tests/tests/e2e/packages.rs builds the .deb/.rpm (dpkg-deb, rpmbuild from Debian's
# `rpm`, python3 for cargo metadata) and installs the .deb as root; msi.rs builds the
# MSI with wixl, reads it with msiinfo and installs it under Wine (wine64), with
# shims built by mingw, around the agent built for x86_64-pc-windows-gnu (below).
pkg13=()
command -v rpmbuild >/dev/null 2>&1 || pkg13+=(rpm)
command -v python3 >/dev/null 2>&1 || pkg13+=(python3)
command -v wixl >/dev/null 2>&1 || pkg13+=(wixl)
command -v msiinfo >/dev/null 2>&1 || pkg13+=(msitools)
{ [ -x /usr/lib/wine/wine64 ] || command -v wine64 >/dev/null 2>&1; } || pkg13+=(wine64)
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || pkg13+=(gcc-mingw-w64-x86-64)
# packages.rs lints the units with systemd-analyze (a failure in CI when missing).
[ -x /usr/bin/systemd-analyze ] || pkg13+=(systemd)
if [ ${#pkg13[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${pkg13[@]}") >/dev/null 2>&1 ||
        echo "issue 13: could not install ${pkg13[*]}; the tests that need them say SKIPPED"
fi
if command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 &&
    { rustup target add x86_64-pc-windows-gnu >/dev/null 2>&1 ||
        rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu; }; then
    cargo build --locked --target x86_64-pc-windows-gnu -p tandem-agent --bin tandem-agent
    if command -v wixl >/dev/null 2>&1 && command -v msiinfo >/dev/null 2>&1 &&
        { [ -x /usr/lib/wine/wine64 ] || command -v wine64 >/dev/null 2>&1; }; then
        # Everything is here: the MSI test must run, not skip.
        export TANDEM_REQUIRE_WINE=1
    fi
else
    echo "issue 13: no x86_64-pc-windows-gnu toolchain; the MSI test says SKIPPED"
fi
# ---- end of issue 13 ---------------------------------------------------------------
# --- issue #12 (notifications): a real SMTP server for the e2e tests -------------
# Debian's python3-aiosmtpd, run by the tests as `/usr/bin/python3 -m aiosmtpd`
# (the system Python: a pyenv shim earlier on PATH may lack the package).
if ! /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y -qq python3-aiosmtpd >/dev/null ||
            { apt-get update -qq >/dev/null && apt-get install -y -qq python3-aiosmtpd >/dev/null; }
    else
        echo "python3-aiosmtpd is missing and this is not root: the notification e2e tests will fail" >&2
    fi
fi
# --- end issue #12 ------------------------------------------------------------------
# --- issue #12 (notifications): headless Debian Chromium for the screenshot e2e -----
# tests/tests/e2e/notify.rs renders the ack-link page and a real problem mail in it.
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null ||
            { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
    else
        echo "chromium is missing and this is not root: the notification screenshot e2e will fail" >&2
    fi
fi
# --- end issue #12 (chromium) -------------------------------------------------------

# --- issue 15 (console): headless Chromium and chromedriver for the browser test,
# and promtool (Debian's prometheus) to check the /metrics exposition ---
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] || [ ! -x /usr/bin/promtool ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends chromium chromium-driver prometheus >/dev/null ||
            { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends chromium chromium-driver prometheus >/dev/null; }
    else
        echo "chromium/chromium-driver/prometheus are missing and this is not root: the console tests will fail under CI" >&2
    fi
fi
# --- end issue 15 -------------------------------------------------------------------

# Downloaded .deb files are not needed once installed; CI disks can be small.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then apt-get clean || true; fi

# The end-to-end tests start the real binaries from target/debug.
cargo build --workspace --bins --locked
cargo test --workspace --locked
