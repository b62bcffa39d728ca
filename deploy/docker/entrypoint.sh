#!/bin/sh
# Container entrypoint: makes the CA on the first start (names from
# TANDEM_COLLECTOR_NAMES, comma-separated), then runs tandem-collector with the
# given arguments (default: serve). Files it creates are private (umask 077).
set -eu
umask 077
data=/var/lib/tandem
if [ "${1:-}" = serve ] && [ ! -e "$data/pki" ]; then
    names=""
    old_ifs=$IFS; IFS=,
    for n in ${TANDEM_COLLECTOR_NAMES:-}; do names="$names --name $n"; done
    IFS=$old_ifs
    # shellcheck disable=SC2086
    tandem-collector pki init --data-dir "$data" $names
fi
exec tandem-collector "$@"
