# Shared by the .deb prerm and the .rpm %preun, on removal (not upgrade).
tandem_collector_stop() {
    if [ -d /run/systemd/system ]; then
        systemctl stop tandem-collector.service >/dev/null 2>&1 || true
        systemctl disable tandem-collector.service >/dev/null 2>&1 || true
    fi
}
