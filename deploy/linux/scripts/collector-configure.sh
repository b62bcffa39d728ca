# Shared by the .deb postinst and the .rpm %post: $1 is "fresh" or "upgrade".
# The data dir (database, CA, server key) is the tandem user's, 0700, files 0600.
# A first install makes the CA and a server certificate for this host's names.
tandem_collector_configure() {
    install -d -m 0755 /var/lib/tandem
    install -d -m 0700 -o tandem -g tandem /var/lib/tandem/collector
    if [ ! -e /var/lib/tandem/collector/pki ]; then
        fqdn=$(hostname -f 2>/dev/null || hostname)
        (umask 077 && cd /var/lib/tandem/collector && runuser -u tandem -- \
            /usr/bin/tandem-collector pki init --data-dir /var/lib/tandem/collector \
            --name "$fqdn") || echo "tandem-collector: pki init failed; run it by hand as the tandem user"
    fi
    chmod -R go-rwx /var/lib/tandem/collector
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null 2>&1 || true
        systemctl enable tandem-collector.service >/dev/null 2>&1 || true
        if [ "$1" = upgrade ]; then
            systemctl try-restart tandem-collector.service || true
        else
            systemctl start tandem-collector.service || true
        fi
    fi
}
