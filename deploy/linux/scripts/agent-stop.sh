# Shared by the .deb prerm and the .rpm %preun, on removal (not upgrade).
tandem_agent_stop() {
    if [ -d /run/systemd/system ]; then
        systemctl stop tandem-agent.service >/dev/null 2>&1 || true
        systemctl disable tandem-agent.service >/dev/null 2>&1 || true
    fi
}
