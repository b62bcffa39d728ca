# Shared by the .deb postinst and the .rpm %post: $1 is "fresh" or "upgrade".
# Unattended enrollment: TANDEM_TOKEN in the installer's environment is written to
# /etc/tandem/enroll.token (root, 0600), as is a file placed there before install;
# the agent's first start enrolls with it and removes it.
tandem_agent_configure() {
    install -d -m 0755 /var/lib/tandem
    install -d -m 0700 /var/lib/tandem/agent
    install -d -m 0755 /etc/tandem
    if [ -n "${TANDEM_TOKEN:-}" ]; then
        (umask 077 && printf '%s\n' "$TANDEM_TOKEN" > /etc/tandem/enroll.token)
    fi
    if [ -f /etc/tandem/enroll.token ]; then
        chown root:root /etc/tandem/enroll.token
        chmod 0600 /etc/tandem/enroll.token
    fi
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null 2>&1 || true
        systemctl enable tandem-agent.service >/dev/null 2>&1 || true
        if [ "$1" = upgrade ]; then
            systemctl try-restart tandem-agent.service || true
        elif [ -s /etc/tandem/enroll.token ] || [ -f /var/lib/tandem/agent/agent.pem ]; then
            systemctl start tandem-agent.service || true
        else
            echo "tandem-agent: no enrollment token; run 'tandem-agent enroll --token TOKEN --config /etc/tandem/agent.toml' (or write it to /etc/tandem/enroll.token), then 'systemctl start tandem-agent'"
        fi
    fi
}
