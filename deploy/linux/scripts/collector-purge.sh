# The .deb postrm on purge: the database, the CA and the user go.
tandem_collector_purge() {
    rm -rf /var/lib/tandem/collector
    rmdir /var/lib/tandem 2>/dev/null || true
    rmdir /etc/tandem/rules 2>/dev/null || true
    rmdir /etc/tandem 2>/dev/null || true
    if getent passwd tandem >/dev/null 2>&1; then userdel tandem >/dev/null 2>&1 || true; fi
    if getent group tandem >/dev/null 2>&1; then groupdel tandem >/dev/null 2>&1 || true; fi
}
