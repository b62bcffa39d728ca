# The .deb postrm on purge: identity, spool, sequence state and an unused token go.
tandem_agent_purge() {
    rm -rf /var/lib/tandem/agent
    rm -f /etc/tandem/enroll.token
    rmdir /var/lib/tandem 2>/dev/null || true
    rmdir /etc/tandem 2>/dev/null || true
}
