//! Security posture: is the host firewall on, the system disk encrypted, the
//! antivirus running and current, are updates automatic, who is a local
//! administrator, may root log in over SSH with a password, is the screen locked.
//!
//! The layers, as for patches and the inventory:
//! - the parsers are pure functions from what a tool or file printed to a [`Check`],
//!   in `platform/facts/posture/` (`linux`, `windows`, `macos`, and `sshd`, shared by
//!   every OS that runs OpenSSH), tested on fixtures under `agent/tests/fixtures/posture/` (which are
//!   real captures and which are written from documentation is in `README.md` there);
//! - the platform facade (`crate::platform::posture`) runs the tools, bounded by a
//!   timeout, and feeds the parsers;
//! - [`report`] holds what the agent last found (posture, backups, custom checks),
//!   turns it into metrics for every sample and into a `PostureReport` frame that is
//!   spooled only when it changed.
//!
//! Invariant: a check is `Pass` only on evidence read from the system. Whatever
//! cannot be read is `Unknown` with the reason, never `Pass`; `Unknown` is not
//! counted as a pass anywhere (metrics, collector summary).

pub mod report;

pub(crate) use crate::platform::facts::posture::excerpt;
pub(crate) use crate::platform::facts::posture::{Check, State};

use tandem_proto::v1;

/// The wire form of a check (in this module, not the platform's, because it needs the
/// wire types and `patches::wire_text`).
impl Check {
    pub(crate) fn to_wire(&self) -> v1::PostureCheck {
        let t = crate::patches::wire_text;
        v1::PostureCheck {
            check: self.check.to_owned(),
            state: match self.state {
                State::Pass => v1::PostureState::Pass,
                State::Fail => v1::PostureState::Fail,
                State::Unknown => v1::PostureState::Unknown,
            } as i32,
            evidence: t(&self.evidence),
            reason: t(&self.reason),
        }
    }
}

/// Collects every posture check of this platform. Blocking (runs tools, each
/// bounded by `timeout`); sorted by check name.
pub fn collect(timeout: std::time::Duration) -> Vec<Check> {
    let mut checks = crate::platform::posture(timeout);
    checks.sort_by_key(|c| c.check);
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::facts::posture::*;

    #[test]
    fn unknown_is_never_pass_on_the_wire() {
        let u = Check::unknown(FIREWALL, "nft: permission denied").to_wire();
        assert_eq!(u.state, v1::PostureState::Unknown as i32);
        assert_eq!(u.reason, "nft: permission denied");
        let p = Check::verdict(FIREWALL, true, "ufw: active").to_wire();
        assert_eq!(p.state, v1::PostureState::Pass as i32);
        assert_eq!(excerpt("a\n\n b \nc", 100), "a / b / c");
        assert_eq!(excerpt("abcdef", 3), "abc…");
    }
}
