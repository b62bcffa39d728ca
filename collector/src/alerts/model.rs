//! The alert vocabulary every layer of `alerts` (and `notify`) speaks: severities,
//! thresholds, verdicts, timing parameters, scopes and maintenance schedules. A leaf:
//! it uses nothing of `alerts` but the RRULE series type, so rule checking
//! ([`super::rules`]), the state machine ([`super::machine`]) and maintenance
//! evaluation ([`super::maintenance`]) can all use it without using each other.

use jiff::civil::{DateTime, Time, Weekday};
use jiff::tz::TimeZone;

use super::rrule::Series;

/// Severity of a firing alert; a rule may have a ladder (warning, then critical).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Severity> {
        match s {
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// A one-sided threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Above(f64),
    Below(f64),
}

impl Bound {
    pub(crate) fn holds(self, v: f64) -> bool {
        match self {
            Bound::Above(t) => v > t,
            Bound::Below(t) => v < t,
        }
    }
}

/// Which devices (and, for maintenance, which rules) something applies to. An empty
/// list means "any". A device's site is the one it enrolled into; its tags are the
/// ones an operator gave it (`device tag`); `tags` matches a device with any of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    pub(crate) tenants: Vec<String>,
    pub(crate) sites: Vec<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) os: Vec<String>,
    pub(crate) devices: Vec<String>,
    pub(crate) rules: Vec<String>,
}

/// What a scope is matched against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Target<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) device_id: &'a str,
    pub(crate) os_family: &'a str,
    pub(crate) site: Option<&'a str>,
    pub(crate) tags: &'a [String],
    pub(crate) rule: &'a str,
}

impl<'a> Target<'a> {
    /// A device with no site and no tags (set them on the result if it has any).
    pub(crate) fn device(
        tenant: &'a str,
        device_id: &'a str,
        os_family: &'a str,
        rule: &'a str,
    ) -> Self {
        Target {
            tenant,
            device_id,
            os_family,
            site: None,
            tags: &[],
            rule,
        }
    }
}

impl Scope {
    pub(crate) fn matches(&self, t: &Target<'_>) -> bool {
        fn any_or(list: &[String], v: &str) -> bool {
            list.is_empty() || list.iter().any(|x| x == v)
        }
        any_or(&self.tenants, t.tenant)
            && any_or(&self.os, t.os_family)
            && any_or(&self.devices, t.device_id)
            && any_or(&self.rules, t.rule)
            && (self.sites.is_empty() || t.site.is_some_and(|s| self.sites.iter().any(|x| x == s)))
            && (self.tags.is_empty() || t.tags.iter().any(|tag| self.tags.contains(tag)))
    }
}

/// Timing parameters of a rule, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// The breach must hold this long before firing.
    pub(crate) for_ms: i64,
    /// ... and be seen in at least this many samples.
    pub(crate) min_samples: u32,
    /// The recover condition must hold this long before OK.
    pub(crate) clear_for_ms: i64,
    /// No sample for this long: the instance is stale (and a pending breach ends).
    pub(crate) nodata_after_ms: i64,
    /// Window in which state changes are counted for flapping.
    pub(crate) flap_window_ms: i64,
    /// More state changes than this within the window: flapping.
    pub(crate) flap_max: u32,
}

/// What the rule says about one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The trigger holds, at this severity.
    Breach(Severity),
    /// The recover condition holds.
    Recover,
    /// Neither (between the trigger and the recover threshold: hysteresis).
    Hold,
}

/// When a window applies.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Once {
        start: DateTime,
        end: DateTime,
    },
    Weekly {
        days: Vec<Weekday>,
        from: Time,
        to: Time,
    },
    /// By an RRULE from a DTSTART, each occurrence lasting a fixed time.
    Recurring(Series),
}

/// A named maintenance window (or silence) with its scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub(crate) name: String,
    pub(crate) tz: TimeZone,
    pub(crate) schedule: Schedule,
    pub(crate) scope: Scope,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_match_on_what_devices_have() {
        let s = Scope {
            tenants: vec!["acme".into()],
            os: vec!["windows".into()],
            ..Scope::default()
        };
        let t = Target {
            tenant: "acme",
            device_id: "d",
            os_family: "windows",
            site: None,
            tags: &[],
            rule: "r",
        };
        assert!(s.matches(&t));
        assert!(!s.matches(&Target {
            tenant: "globex",
            ..t
        }));
        assert!(!s.matches(&Target {
            os_family: "linux",
            ..t
        }));
        let by_site = Scope {
            sites: vec!["hq".into()],
            ..Scope::default()
        };
        assert!(!by_site.matches(&t), "no device has a site yet");
        assert!(by_site.matches(&Target {
            site: Some("hq"),
            ..t
        }));
        assert!(Scope::default().matches(&t));
    }
}
