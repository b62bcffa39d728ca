//! Mail: composing problem, resolved and test messages from templates (text and
//! HTML, overridable by files in `[notify] templates_dir`), and sending them with
//! lettre over SMTP (STARTTLS, implicit TLS or plain), or writing them as `.eml`
//! files when no SMTP server is configured.
//!
//! The mails are written for a reader outside the MSP: what is wrong, on which
//! machine (hostname, site, tenant), since when (in the tenant's zone), what the MSP
//! is doing about it, whether they need to act, and a signed acknowledge link.
//!
//! Invariants: the Message-ID is derived from the first delivery's idempotency key,
//! so a retry after a crash between the server's accept and our record sends the
//! same Message-ID (receivers drop the duplicate); a resolved mail carries
//! `In-Reply-To`/`References` of the problem mail sent to the same recipient. The
//! SMTP password is never logged (it lives in a [`super::config::Secret`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::config::{NotifyConfig, SmtpTls};
use super::incident::IncidentRow;

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("cannot build the mail: {0}")]
    Build(String),
    #[error("smtp: {0}")]
    Smtp(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What kind of mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Problem,
    Resolved,
    Test,
}

/// The built-in templates (docs/NOTIFICATIONS.md lists the placeholders).
const BUILTIN: &[(&str, &str)] = &[
    (
        "problem.txt",
        "Hello,\n\n{{msp}} watches the computers of {{tenant}} with Tandem. {{count_text}}\n\n{{incidents}}\n--\nSent by Tandem for {{msp}}. You get this mail because you are an IT contact of {{tenant}}\nor of {{msp}}.\n",
    ),
    (
        "resolved.txt",
        "Hello,\n\nGood news: {{count_text}}\n\n{{incidents}}\n--\nSent by Tandem for {{msp}}.\n",
    ),
    (
        "test.txt",
        "Hello,\n\nThis is a test message from Tandem for {{msp}}, sent with `tandem-collector notify test`\nto every target of the escalation policy of {{tenant}}. Nothing is wrong.\nIf you can read this, alerts for {{tenant}} will reach you.\n",
    ),
    (
        "incident.txt",
        "What is wrong:   {{what}}\nWhich machine:   {{hostname}} (site {{site}}, {{tenant}})\nSince:           {{since}}{{duration}}\nSeverity:        {{severity}}\nWhat {{msp}} does: {{status}}\nDo you need to act? {{action}}\n{{ack}}\n",
    ),
    (
        "problem.html",
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"></head><body style=\"margin:0;padding:24px 8px;background:#f3f4f6;font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;font-size:15px;line-height:1.5;color:#1f2937\"><table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\"><tr><td align=\"center\"><table role=\"presentation\" width=\"640\" cellpadding=\"0\" cellspacing=\"0\" style=\"max-width:640px;width:100%;background:#ffffff;border:1px solid #e5e7eb;border-radius:8px\"><tr><td style=\"background:#1e3a5f;color:#ffffff;padding:14px 24px;font-size:14px;border-radius:8px 8px 0 0\"><b>{{msp}}</b> &middot; IT monitoring for {{tenant}}</td></tr><tr><td style=\"padding:24px\"><p style=\"margin:0 0 12px\">Hello,</p><p style=\"margin:0 0 20px\">{{msp}} watches the computers of {{tenant}} with Tandem. {{count_text}}</p>{{incidents}}</td></tr><tr><td style=\"padding:12px 24px;background:#f9fafb;color:#6b7280;font-size:12px;border-top:1px solid #e5e7eb;border-radius:0 0 8px 8px\">Sent by Tandem for {{msp}}.</td></tr></table></td></tr></table></body></html>",
    ),
    (
        "resolved.html",
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"></head><body style=\"margin:0;padding:24px 8px;background:#f3f4f6;font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;font-size:15px;line-height:1.5;color:#1f2937\"><table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\"><tr><td align=\"center\"><table role=\"presentation\" width=\"640\" cellpadding=\"0\" cellspacing=\"0\" style=\"max-width:640px;width:100%;background:#ffffff;border:1px solid #e5e7eb;border-radius:8px\"><tr><td style=\"background:#1e3a5f;color:#ffffff;padding:14px 24px;font-size:14px;border-radius:8px 8px 0 0\"><b>{{msp}}</b> &middot; IT monitoring for {{tenant}}</td></tr><tr><td style=\"padding:24px\"><p style=\"margin:0 0 12px\">Hello,</p><p style=\"margin:0 0 20px\">Good news: {{count_text}}</p>{{incidents}}</td></tr><tr><td style=\"padding:12px 24px;background:#f9fafb;color:#6b7280;font-size:12px;border-top:1px solid #e5e7eb;border-radius:0 0 8px 8px\">Sent by Tandem for {{msp}}.</td></tr></table></td></tr></table></body></html>",
    ),
    (
        "test.html",
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"></head><body style=\"margin:0;padding:24px 8px;background:#f3f4f6;font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;font-size:15px;line-height:1.5;color:#1f2937\"><table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\"><tr><td align=\"center\"><table role=\"presentation\" width=\"640\" cellpadding=\"0\" cellspacing=\"0\" style=\"max-width:640px;width:100%;background:#ffffff;border:1px solid #e5e7eb;border-radius:8px\"><tr><td style=\"background:#1e3a5f;color:#ffffff;padding:14px 24px;font-size:14px;border-radius:8px 8px 0 0\"><b>{{msp}}</b> &middot; IT monitoring for {{tenant}}</td></tr><tr><td style=\"padding:24px\"><p style=\"margin:0 0 12px\">Hello,</p><p style=\"margin:0\">This is a test message from Tandem for {{msp}} to every target of the escalation policy of {{tenant}}. Nothing is wrong. If you can read this, alerts for {{tenant}} will reach you.</p></td></tr><tr><td style=\"padding:12px 24px;background:#f9fafb;color:#6b7280;font-size:12px;border-top:1px solid #e5e7eb;border-radius:0 0 8px 8px\">Sent by Tandem for {{msp}}.</td></tr></table></td></tr></table></body></html>",
    ),
    (
        "incident.html",
        "<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"margin:0 0 20px;border:1px solid #e5e7eb;border-left:4px solid {{accent}};border-radius:4px\"><tr><td colspan=\"2\" style=\"padding:12px 16px 8px;font-size:17px;font-weight:600\"><span style=\"display:inline-block;padding:1px 8px;margin-right:6px;border-radius:4px;background:{{accent}};color:#ffffff;font-size:12px;text-transform:uppercase;letter-spacing:.05em;vertical-align:2px\">{{severity}}</span>{{what}}</td></tr><tr><th align=\"left\" style=\"padding:6px 16px;width:36%;color:#6b7280;font-weight:normal;vertical-align:top\">Which machine</th><td style=\"padding:6px 16px\"><b>{{hostname}}</b> (site {{site}}, {{tenant}})</td></tr><tr><th align=\"left\" style=\"padding:6px 16px;width:36%;color:#6b7280;font-weight:normal;vertical-align:top\">Since</th><td style=\"padding:6px 16px\">{{since}}{{duration}}</td></tr><tr><th align=\"left\" style=\"padding:6px 16px;width:36%;color:#6b7280;font-weight:normal;vertical-align:top\">What {{msp}} does</th><td style=\"padding:6px 16px\">{{status}}</td></tr><tr><th align=\"left\" style=\"padding:6px 16px;width:36%;color:#6b7280;font-weight:normal;vertical-align:top\">Do you need to act?</th><td style=\"padding:6px 16px\">{{action}}</td></tr><tr><td colspan=\"2\" style=\"padding:6px 16px 12px\">{{ack}}</td></tr></table>",
    ),
];

/// Templates: the built-in ones, replaced by any file of the same name in the
/// operator's folder.
#[derive(Debug, Clone)]
pub(crate) struct Templates(HashMap<String, String>);

impl Templates {
    pub(crate) fn load(dir: Option<&Path>) -> Templates {
        let mut t: HashMap<String, String> = BUILTIN
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if let Some(dir) = dir {
            for (name, _) in BUILTIN {
                let p = dir.join(name);
                match std::fs::read_to_string(&p) {
                    Ok(s) => {
                        t.insert((*name).to_owned(), s);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(file = %p.display(), error = %e, "cannot read a mail template; using the built-in one")
                    }
                }
            }
        }
        Templates(t)
    }

    fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }
}

/// Replaces `{{key}}` by its value (unknown keys are left as they are).
pub(crate) fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = template.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One incident in a mail: its row and (maybe) its acknowledge link.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) incident: IncidentRow,
    pub(crate) ack_link: Option<String>,
}

/// The time of `ms` in the tenant's zone, e.g. `2026-12-01 14:05 CET`.
pub(crate) fn local_time(ms: i64, tz: &jiff::tz::TimeZone) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t
            .to_zoned_datetime(tz.clone())
            .strftime("%Y-%m-%d %H:%M %Z")
            .to_string(),
        Err(_) => ms.to_string(),
    }
}

fn human_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=119 => format!("{s} seconds"),
        120..=7199 => format!("{} minutes", s / 60),
        _ => format!("{} hours {} minutes", s / 3600, (s % 3600) / 60),
    }
}

/// Everything a mail needs besides its incidents.
pub(crate) struct Envelope<'a> {
    pub(crate) kind: Kind,
    pub(crate) tenant: &'a str,
    pub(crate) recipient: &'a str,
    pub(crate) message_id: String,
    /// Problem mails this one answers (resolved mails).
    pub(crate) in_reply_to: Vec<String>,
    pub(crate) tz: &'a jiff::tz::TimeZone,
}

fn vars_for(
    item: &Item,
    msp: &str,
    kind: Kind,
    tz: &jiff::tz::TimeZone,
    html: bool,
) -> Vec<(&'static str, String)> {
    let i = &item.incident;
    let esc = |s: String| if html { html_escape(&s) } else { s };
    let what = if i.dimension.is_empty() {
        format!("{} (value {})", i.rule, i.value)
    } else {
        format!("{} on {} (value {})", i.rule, i.dimension, i.value)
    };
    let ack = match (&i.acked_by, i.acked_ms) {
        (Some(by), Some(at)) => format!(
            "acknowledged by {by} at {}{}",
            local_time(at, tz),
            i.ack_note
                .as_ref()
                .map(|n| format!(": \"{n}\""))
                .unwrap_or_default()
        ),
        _ => String::new(),
    };
    let status = match kind {
        Kind::Resolved if !ack.is_empty() => format!("It was {ack}. It is over now."),
        Kind::Resolved => "It ended on its own or was fixed; it is over now.".to_owned(),
        _ if !ack.is_empty() => format!("It was {ack}; {msp} is working on it."),
        _ => format!("Nobody at {msp} has acknowledged it yet."),
    };
    let action = match kind {
        Kind::Resolved | Kind::Test => "No.".to_owned(),
        _ if i.acked_by.is_some() => format!("No, {msp} is on it."),
        _ if i.severity == "critical" => format!(
            "Yes, please: this is critical and not yet taken in hand. Check the machine or call {msp}; use the link below to say you have seen it."
        ),
        _ => format!(
            "Not necessarily: {msp} will look into it. Use the link below if you take it in hand."
        ),
    };
    let duration = match i.resolved_ms {
        Some(r) => format!(", lasted {}", human_duration(r - i.opened_ms)),
        None => String::new(),
    };
    let ack_line = match (&item.ack_link, kind) {
        (Some(l), Kind::Problem) if html => format!(
            "<a href=\"{}\" style=\"display:inline-block;padding:10px 18px;background:#1e3a5f;color:#ffffff;text-decoration:none;border-radius:4px;font-weight:600\">I have seen it: acknowledge</a>",
            html_escape(l)
        ),
        (Some(l), Kind::Problem) => format!("Acknowledge (stops further escalation): {l}\n"),
        _ => String::new(),
    };
    vec![
        ("id", i.id.to_string()),
        ("what", esc(what)),
        ("rule", esc(i.rule.clone())),
        ("dimension", esc(i.dimension.clone())),
        ("severity", esc(i.severity.clone())),
        (
            "hostname",
            esc(if i.hostname.is_empty() {
                i.device_id.clone()
            } else {
                i.hostname.clone()
            }),
        ),
        ("device_id", esc(i.device_id.clone())),
        ("site", esc(i.site.clone().unwrap_or_else(|| "-".into()))),
        ("tenant", esc(i.tenant.clone())),
        ("value", i.value.to_string()),
        ("since", esc(local_time(i.opened_ms, tz))),
        ("duration", esc(duration)),
        ("status", esc(status)),
        ("action", esc(action)),
        ("ack", ack_line),
        ("msp", esc(msp.to_owned())),
        (
            "accent",
            match (kind, i.severity.as_str()) {
                (Kind::Resolved, _) => "#15803d",
                (_, "critical") => "#b91c1c",
                _ => "#b45309",
            }
            .to_owned(),
        ),
    ]
}

/// The subject of a mail.
pub(crate) fn subject(kind: Kind, tenant: &str, items: &[Item]) -> String {
    match (kind, items) {
        (Kind::Test, _) => format!("[Tandem] Test message for {tenant}"),
        (k, [one]) => {
            let i = &one.incident;
            let host = if i.hostname.is_empty() {
                &i.device_id
            } else {
                &i.hostname
            };
            let base = format!(
                "{}: {} on {host} ({tenant})",
                i.severity.to_uppercase(),
                i.rule
            );
            if k == Kind::Resolved {
                format!("Re: [Tandem] RESOLVED {base}")
            } else {
                format!("[Tandem] {base}")
            }
        }
        (Kind::Resolved, many) => format!("[Tandem] RESOLVED: {} alerts for {tenant}", many.len()),
        (_, many) => format!("[Tandem] {} alerts for {tenant}", many.len()),
    }
}

/// Builds the mail.
pub(crate) fn compose(
    cfg: &NotifyConfig,
    templates: &Templates,
    env: &Envelope<'_>,
    items: &[Item],
) -> Result<Message, EmailError> {
    let build = |e: String| EmailError::Build(e);
    let from: Mailbox = cfg.from.parse().map_err(|e| build(format!("from: {e}")))?;
    let to: Mailbox = env
        .recipient
        .parse()
        .map_err(|e| build(format!("to {:?}: {e}", env.recipient)))?;
    let name = match env.kind {
        Kind::Problem => "problem",
        Kind::Resolved => "resolved",
        Kind::Test => "test",
    };
    let count_text = match (env.kind, items.len()) {
        (Kind::Resolved, 1) => "the problem below is over.".to_owned(),
        (Kind::Resolved, n) => format!("the {n} problems below are over."),
        (_, 1) => "It noticed a problem:".to_owned(),
        (_, n) => format!("It noticed {n} problems at about the same time:"),
    };
    let body = |html: bool| {
        let ext = if html { "html" } else { "txt" };
        let blocks: Vec<String> = items
            .iter()
            .map(|it| {
                render(
                    templates.get(&format!("incident.{ext}")),
                    &vars_for(it, &cfg.msp_name, env.kind, env.tz, html),
                )
            })
            .collect();
        let esc = |s: &str| if html { html_escape(s) } else { s.to_owned() };
        render(
            templates.get(&format!("{name}.{ext}")),
            &[
                ("msp", esc(&cfg.msp_name)),
                ("tenant", esc(env.tenant)),
                ("count", items.len().to_string()),
                ("count_text", esc(&count_text)),
                ("incidents", blocks.join(if html { "" } else { "\n" })),
            ],
        )
    };
    let (text, html) = (body(false), body(true));
    let mut b = Message::builder()
        .from(from)
        .to(to)
        .subject(subject(env.kind, env.tenant, items))
        .message_id(Some(env.message_id.clone()));
    if let Some(first) = env.in_reply_to.first() {
        b = b
            .in_reply_to(first.clone())
            .references(env.in_reply_to.join(" "));
    }
    b.multipart(
        MultiPart::alternative()
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(text),
            )
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(html),
            ),
    )
    .map_err(|e| build(e.to_string()))
}

/// A Message-ID from an idempotency key (stable across retries).
pub(crate) fn message_id(idem_key: &str) -> String {
    let safe: String = idem_key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("<tandem.{safe}@tandem.invalid>")
}

/// Where mail goes: an SMTP server, or a folder of `.eml` files.
pub(crate) enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Folder(PathBuf),
}

impl Mailer {
    /// Builds the transport (must be called inside the Tokio runtime, and dropped
    /// there: lettre's pool panics otherwise, see shared/TOOLCHAIN.md).
    pub(crate) fn new(cfg: &NotifyConfig) -> Result<Mailer, EmailError> {
        let Some(s) = &cfg.smtp else {
            std::fs::create_dir_all(&cfg.mail_dir).map_err(|source| EmailError::Write {
                path: cfg.mail_dir.clone(),
                source,
            })?;
            return Ok(Mailer::Folder(cfg.mail_dir.clone()));
        };
        let smtp = |e: lettre::transport::smtp::Error| EmailError::Smtp(e.to_string());
        let mut b = match s.tls {
            SmtpTls::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host).map_err(smtp)?
            }
            SmtpTls::Implicit => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host).map_err(smtp)?
            }
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host),
        }
        .port(s.port)
        .timeout(Some(std::time::Duration::from_secs(20)));
        if let (Some(u), Some(p)) = (&s.username, &s.password) {
            b = b.credentials(Credentials::new(u.clone(), p.0.clone()));
        }
        Ok(Mailer::Smtp(b.build()))
    }

    /// Sends one mail; returns the server's answer (or the file written).
    pub(crate) async fn send(&self, msg: &Message, file_stem: &str) -> Result<String, EmailError> {
        match self {
            Mailer::Smtp(t) => match t.send(msg.clone()).await {
                Ok(r) => Ok(format!(
                    "{} {}",
                    r.code(),
                    r.message().collect::<Vec<_>>().join(" ")
                )),
                Err(e) => Err(EmailError::Smtp(e.to_string())),
            },
            Mailer::Folder(dir) => {
                let path = dir.join(format!("{file_stem}.eml"));
                let tmp = dir.join(format!(".{file_stem}.eml.tmp"));
                let bytes = msg.formatted();
                let write = std::fs::write(&tmp, &bytes).and_then(|_| std::fs::rename(&tmp, &path));
                write.map_err(|source| EmailError::Write {
                    path: path.clone(),
                    source,
                })?;
                Ok(format!("written to {}", path.display()))
            }
        }
    }

    /// Whether a failure is worth retrying (a permanent SMTP refusal is not).
    pub(crate) fn is_permanent(e: &EmailError) -> bool {
        match e {
            EmailError::Build(_) => true,
            EmailError::Smtp(m) => m.contains("permanent"),
            EmailError::Write { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> IncidentRow {
        IncidentRow {
            id: 7,
            tenant: "acme".into(),
            site: Some("HQ".into()),
            device_id: "d1".into(),
            hostname: "pc-17".into(),
            rule: "disk-free".into(),
            dimension: "C:".into(),
            severity: "critical".into(),
            state: "open".into(),
            value: 3.5,
            suppressed: false,
            opened_ms: 1_764_590_400_000,
            acked_ms: None,
            acked_by: None,
            ack_note: None,
            snoozed_until_ms: None,
            resolved_ms: None,
            resolved_by: None,
            loop_no: 0,
            loop_start_ms: 0,
        }
    }

    #[test]
    fn a_problem_mail_says_what_where_since_when_and_whether_to_act() {
        let cfg = NotifyConfig::new("p".into(), "m".into());
        let tz = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        let env = Envelope {
            kind: Kind::Problem,
            tenant: "acme",
            recipient: "it@acme.example",
            message_id: message_id("7:step0.0:email:it@acme.example"),
            in_reply_to: vec![],
            tz: &tz,
        };
        let items = [Item {
            incident: row(),
            ack_link: Some("http://127.0.0.1:8080/ack/abc".into()),
        }];
        let m = compose(&cfg, &Templates::load(None), &env, &items).unwrap();
        let text = String::from_utf8(m.formatted()).unwrap();
        assert!(
            text.contains("Subject: [Tandem] CRITICAL: disk-free on pc-17 (acme)"),
            "{text}"
        );
        assert!(
            text.contains("Message-ID: <tandem.7-step0.0-email-it-acme.example@tandem.invalid>"),
            "{text}"
        );
        assert!(text.contains("pc-17 (site HQ, acme)"), "{text}");
        assert!(
            text.contains("2025-12-01 13:00 CET"),
            "since, in the tenant's zone: {text}"
        );
        assert!(text.contains("Do you need to act? Yes, please"), "{text}");
        assert!(text.contains("http://127.0.0.1:8080/ack/abc"), "{text}");
    }

    #[test]
    fn a_resolved_mail_threads_and_says_how_long_and_who_acked() {
        let cfg = NotifyConfig::new("p".into(), "m".into());
        let mut r = row();
        r.resolved_ms = Some(r.opened_ms + 45 * 60_000);
        r.acked_by = Some("alice".into());
        r.acked_ms = Some(r.opened_ms + 60_000);
        r.ack_note = Some("replacing the disk".into());
        let env = Envelope {
            kind: Kind::Resolved,
            tenant: "acme",
            recipient: "it@acme.example",
            message_id: message_id("7:resolved:email:it@acme.example"),
            in_reply_to: vec!["<tandem.first@tandem.invalid>".into()],
            tz: &jiff::tz::TimeZone::UTC,
        };
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("resolved.txt");
        std::fs::write(&t, "OVERRIDDEN {{tenant}}\n{{incidents}}").unwrap();
        let m = compose(
            &cfg,
            &Templates::load(Some(dir.path())),
            &env,
            &[Item {
                incident: r,
                ack_link: None,
            }],
        )
        .unwrap();
        let text = String::from_utf8(m.formatted()).unwrap();
        assert!(
            text.contains("In-Reply-To: <tandem.first@tandem.invalid>"),
            "{text}"
        );
        assert!(
            text.contains("References: <tandem.first@tandem.invalid>"),
            "{text}"
        );
        assert!(
            text.contains("Subject: Re: [Tandem] RESOLVED CRITICAL"),
            "{text}"
        );
        assert!(text.contains("lasted 45 minutes"), "{text}");
        assert!(
            text.contains("OVERRIDDEN acme"),
            "the operator's template: {text}"
        );
        assert!(text.contains("acknowledged by alice"), "{text}");
    }
}
