//! The raw serde forms of a policy file (unknown keys refused; values keep their
//! spans for the checker).

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) tenant: Vec<Spanned<RawTenant>>,
    #[serde(default)]
    pub(super) policy: Vec<Spanned<RawPolicy>>,
    #[serde(default)]
    pub(super) webhook: Vec<Spanned<RawWebhook>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    pub(super) name: Spanned<String>,
    pub(super) zone: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) contacts: Vec<Spanned<String>>,
    pub(super) policy: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) calendar: Vec<Spanned<RawCalendar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCalendar {
    pub(super) name: Spanned<String>,
    pub(super) days: Spanned<Vec<String>>,
    pub(super) hours: Spanned<String>,
    #[serde(default)]
    pub(super) holidays: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) default: bool,
    #[serde(default)]
    pub(super) repeat_secs: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) ack_timeout_secs: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) max_loops: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) step: Vec<Spanned<RawStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub(super) after_secs: Option<Spanned<i64>>,
    pub(super) min_severity: Option<Spanned<String>>,
    pub(super) inside: Option<Spanned<String>>,
    pub(super) outside: Option<Spanned<String>>,
    pub(super) targets: Spanned<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    pub(super) name: Spanned<String>,
    pub(super) url: Spanned<String>,
    pub(super) format: Option<Spanned<String>>,
    pub(super) secret_env: Option<Spanned<String>>,
    pub(super) secret_file: Option<Spanned<String>>,
}
