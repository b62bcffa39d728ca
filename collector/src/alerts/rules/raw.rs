//! The raw serde forms of a rule file: what TOML parses into before checking.
//! Unknown keys are refused here (`deny_unknown_fields`); every value keeps its
//! span so [`super::check`] can point at it.

use serde::Deserialize;
use toml::Spanned;

/// `service = "sshd"` or `service = ["sshd", "nginx"]` in a rule file.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawServices {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    pub(super) maintenance: Vec<Spanned<RawWindow>>,
}

pub(super) type Num = Spanned<f64>;
pub(super) type Int = Spanned<i64>;
pub(super) type Str = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) name: Str,
    pub(super) kind: Str,
    #[serde(default)]
    pub(super) summary: String,
    pub(super) metric: Option<Str>,
    /// The metric is not one the agent sends (a custom check fed by other means):
    /// its name is not checked against the catalogue.
    #[serde(default)]
    pub(super) custom_metric: bool,
    pub(super) dimension: Option<Str>,
    pub(super) warning: Option<Spanned<RawBound>>,
    pub(super) critical: Option<Spanned<RawBound>>,
    pub(super) recover: Option<Spanned<RawBound>>,
    pub(super) severity: Option<Str>,
    pub(super) for_secs: Option<Int>,
    pub(super) min_samples: Option<Int>,
    pub(super) clear_for_secs: Option<Int>,
    pub(super) nodata_after_secs: Option<Int>,
    pub(super) flap_window_secs: Option<Int>,
    pub(super) flap_max: Option<Int>,
    pub(super) per_secs: Option<Num>,
    pub(super) window_secs: Option<Int>,
    pub(super) target: Option<Num>,
    pub(super) after_secs: Option<Int>,
    pub(super) server_after_secs: Option<Int>,
    pub(super) workstation_after_secs: Option<Int>,
    pub(super) group_share: Option<Num>,
    pub(super) group_min_devices: Option<Int>,
    pub(super) service: Option<Spanned<RawServices>>,
    #[serde(default)]
    pub(super) scope: RawScope,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBound {
    pub(super) above: Option<f64>,
    pub(super) below: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScope {
    #[serde(default)]
    pub(super) tenants: Vec<String>,
    #[serde(default)]
    pub(super) sites: Vec<String>,
    #[serde(default)]
    pub(super) tags: Vec<Str>,
    #[serde(default)]
    pub(super) os: Vec<Str>,
    #[serde(default)]
    pub(super) devices: Vec<String>,
    #[serde(default)]
    pub(super) rules: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindow {
    pub(super) name: Str,
    #[serde(default)]
    pub(super) tz: Option<Str>,
    pub(super) start: Option<Str>,
    pub(super) end: Option<Str>,
    #[serde(default)]
    pub(super) weekdays: Vec<Str>,
    pub(super) from: Option<Str>,
    pub(super) to: Option<Str>,
    /// RFC 5545 RRULE (subset); `start` is its DTSTART.
    pub(super) rrule: Option<Str>,
    /// Length of each occurrence of a recurring window.
    pub(super) duration_secs: Option<Int>,
    #[serde(default)]
    pub(super) scope: RawScope,
}
