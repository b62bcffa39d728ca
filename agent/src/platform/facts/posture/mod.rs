//! What a posture check reports ([`Check`], [`State`], the checks' wire names), and
//! the pure parsers from what a tool or file printed to a check: [`linux`],
//! [`windows`], [`macos`] and [`sshd`] (shared by every OS that runs OpenSSH), tested
//! on fixtures under `agent/tests/fixtures/posture/`.
//!
//! The platform's `posture` runs the tools and feeds these parsers; the agent's `posture`
//! sorts the checks and turns them into the wire's `PostureReport`.

pub mod linux;
pub mod macos;
pub mod sshd;
pub mod windows;

/// The checks, by their wire name.
pub const FIREWALL: &str = "firewall";
pub const DISK_ENCRYPTION: &str = "disk_encryption";
pub const ANTIVIRUS: &str = "antivirus";
pub const AUTO_UPDATES: &str = "auto_updates";
pub const LOCAL_ADMINS: &str = "local_admins";
pub const SSH_ROOT_LOGIN: &str = "ssh_root_login";
pub const SSH_PASSWORD_AUTH: &str = "ssh_password_auth";
pub const SCREEN_LOCK: &str = "screen_lock";

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pass,
    Fail,
    Unknown,
}

/// One posture check.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Check {
    pub(crate) check: &'static str,
    pub(crate) state: State,
    /// What was read, from where.
    pub(crate) evidence: String,
    /// For `Unknown`: why. Empty otherwise.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) reason: String,
    /// Numbers the check found, sent as metrics: e.g. the antivirus signature age
    /// (`av.signature.age.days`) or the count of local administrators.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) values: Vec<(&'static str, f64)>,
}

impl Check {
    pub fn pass(check: &'static str, evidence: impl Into<String>) -> Check {
        Check {
            check,
            state: State::Pass,
            evidence: evidence.into(),
            reason: String::new(),
            values: Vec::new(),
        }
    }

    pub fn fail(check: &'static str, evidence: impl Into<String>) -> Check {
        Check {
            state: State::Fail,
            ..Check::pass(check, evidence)
        }
    }

    /// Cannot tell: `reason` says why (not readable without privileges, tool missing).
    pub fn unknown(check: &'static str, reason: impl Into<String>) -> Check {
        Check {
            state: State::Unknown,
            reason: reason.into(),
            ..Check::pass(check, "")
        }
    }

    /// Pass or fail on `ok`.
    pub fn verdict(check: &'static str, ok: bool, evidence: impl Into<String>) -> Check {
        if ok {
            Check::pass(check, evidence)
        } else {
            Check::fail(check, evidence)
        }
    }

    pub fn with_value(mut self, name: &'static str, value: f64) -> Check {
        self.values.push((name, value));
        self
    }
}

/// The first `n` characters of tool output, on one line, for evidence.
pub(crate) fn excerpt(text: &str, n: usize) -> String {
    let one: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let joined = one.join(" / ");
    if joined.chars().count() > n {
        let mut s: String = joined.chars().take(n).collect();
        s.push('…');
        s
    } else {
        joined
    }
}

/// Passes unless an account other than root has uid 0 (a second root is a classic
/// backdoor); the evidence lists every administrator either way.
pub fn admins_check(admins: Vec<(String, String)>, source: &str) -> Check {
    let extra_root: Vec<&str> = admins
        .iter()
        .filter(|(n, how)| how == "uid 0" && n != "root")
        .map(|(n, _)| n.as_str())
        .collect();
    let list: Vec<String> = admins
        .iter()
        .map(|(n, how)| format!("{n} ({how})"))
        .collect();
    let mut names: Vec<&str> = admins.iter().map(|(n, _)| n.as_str()).collect();
    names.dedup();
    let ev = format!("{source}: {}", list.join(", "));
    let c = if extra_root.is_empty() {
        Check::pass(LOCAL_ADMINS, ev)
    } else {
        Check::fail(
            LOCAL_ADMINS,
            format!(
                "accounts besides root with uid 0: {}; {ev}",
                extra_root.join(", ")
            ),
        )
    };
    c.with_value("posture.local_admins.count", names.len() as f64)
}
