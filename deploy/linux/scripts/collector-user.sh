# Shared by the .deb preinst and the .rpm %pre: the collector's own system user.
tandem_collector_user() {
    getent group tandem >/dev/null 2>&1 || groupadd --system tandem
    getent passwd tandem >/dev/null 2>&1 || useradd --system --gid tandem \
        --home-dir /var/lib/tandem/collector --no-create-home \
        --shell /usr/sbin/nologin --comment "Tandem collector" tandem
}
