//! The one-click acknowledge links of notification mails: `GET /ack/{token}` shows
//! the incident and a button, `POST` acknowledges it (see the invariants in
//! [`super`]). Split from `http/mod.rs`.

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use tandem_proto::util::now_ms;

use super::{HttpState, internal, with_store};
use crate::notify::incident::Outcome;
use crate::notify::link::LinkError;
use crate::store::api::NotifyStore;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The look of every page the listener serves to people (ack links): one card.
const PAGE_CSS: &str = "body{margin:0;background:#f3f4f6;color:#1f2937;\
font:16px/1.5 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif}\
.card{max-width:34em;margin:3em auto;background:#fff;border:1px solid #e5e7eb;border-radius:8px;overflow:hidden}\
.brand{background:#1e3a5f;color:#fff;padding:.7em 1.5em;font-size:.9em;font-weight:600;letter-spacing:.03em}\
.body{padding:1.5em}h1{font-size:1.4em;margin:0 0 .8em}\
.sev{display:inline-block;padding:0 .5em;border-radius:4px;color:#fff;font-size:.75em;font-weight:600;\
text-transform:uppercase;letter-spacing:.05em;vertical-align:.15em;margin-right:.4em;background:#b45309}\
.sev.critical{background:#b91c1c}\
dl{display:grid;grid-template-columns:9em 1fr;gap:.3em 1em;margin:0 0 1.2em}dt{color:#6b7280}dd{margin:0}\
label{display:block;color:#6b7280;margin-bottom:.3em}\
input{box-sizing:border-box;width:100%;padding:.55em .7em;border:1px solid #cbd5e1;border-radius:4px;font:inherit}\
button{margin-top:1em;background:#1e3a5f;color:#fff;border:0;border-radius:4px;padding:.65em 1.3em;font:inherit;font-weight:600;cursor:pointer}\
.note{color:#6b7280;font-size:.85em;margin-top:1.2em}";

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html><html><head><meta charset=utf-8>\
             <meta name=viewport content=\"width=device-width\"><title>{t}</title>\
             <style>{PAGE_CSS}</style></head><body><div class=card><div class=brand>Tandem</div>\
             <div class=body><h1>{t}</h1>{body}</div></div></body></html>",
            t = esc(title)
        )),
    )
        .into_response()
}

fn link_refused(e: &LinkError) -> Response {
    let msg = match e {
        LinkError::Expired => {
            "This acknowledge link has expired. Ask your IT service provider, or acknowledge the alert in Tandem."
        }
        _ => {
            "This acknowledge link is not valid (it may have been cut when the mail was forwarded)."
        }
    };
    tracing::info!(reason = %e, "ack link refused");
    page(
        StatusCode::FORBIDDEN,
        "Link not valid",
        &format!("<p>{msg}</p>"),
    )
}

pub(super) async fn ack_page(State(st): State<HttpState>, Path(token): Path<String>) -> Response {
    let link = match st.key.verify(&token, now_ms()) {
        Ok(l) => l,
        Err(e) => return link_refused(&e),
    };
    let id = link.incident;
    let inc = match with_store(st.pool.clone(), move |c| c.incident(id)).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                "No such alert",
                "<p>This alert no longer exists.</p>",
            );
        }
        Err(e) => return internal(e),
    };
    let host = if inc.hostname.is_empty() {
        &inc.device_id
    } else {
        &inc.hostname
    };
    let state = match (inc.state.as_str(), &inc.acked_by) {
        ("resolved", _) => "<p>This problem is already over.</p>".to_owned(),
        ("acked", Some(by)) => format!("<p>Already acknowledged by {}.</p>", esc(by)),
        _ => format!(
            "<form method=post><label for=note>Note for the other side (optional)</label>\
             <input id=note name=note maxlength=500 placeholder=\"e.g. rebooting it now\">\
             <button type=submit>Acknowledge as {}</button></form>\
             <p class=note>Acknowledging tells everyone watching this alert that it is taken in \
             hand, and stops further escalation mails.</p>",
            esc(&link.recipient)
        ),
    };
    let since = jiff::Timestamp::from_millisecond(inc.opened_ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let what = if inc.dimension.is_empty() {
        esc(&inc.rule)
    } else {
        format!("{} on {}", esc(&inc.rule), esc(&inc.dimension))
    };
    let site = inc.site.as_deref().unwrap_or("-");
    page(
        StatusCode::OK,
        "Acknowledge alert",
        &format!(
            "<dl><dt>What is wrong</dt><dd><span class=\"sev {sev}\">{sev}</span>{what} (value {value})</dd>\
             <dt>Which machine</dt><dd><b>{host}</b> (site {site}, {tenant})</dd>\
             <dt>Since</dt><dd>{since}</dd></dl>{state}",
            sev = esc(&inc.severity),
            value = inc.value,
            host = esc(host),
            site = esc(site),
            tenant = esc(&inc.tenant),
        ),
    )
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct AckForm {
    #[serde(default)]
    note: String,
}

pub(super) async fn ack_post(
    State(st): State<HttpState>,
    Path(token): Path<String>,
    form: Result<Form<AckForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let link = match st.key.verify(&token, now_ms()) {
        Ok(l) => l,
        Err(e) => return link_refused(&e),
    };
    let note: String = form
        .map(|f| f.0.note)
        .unwrap_or_default()
        .chars()
        .take(500)
        .collect();
    let note = (!note.trim().is_empty()).then_some(note);
    let (id, by) = (link.incident, format!("{} (mail link)", link.recipient));
    let by2 = by.clone();
    let out = with_store(st.pool.clone(), move |c| {
        c.ack_incident(id, &by2, note.as_deref(), now_ms())
    })
    .await;
    match out {
        Ok(Outcome::Done) => page(
            StatusCode::OK,
            "Acknowledged",
            &format!(
                "<p>Thank you. The alert is acknowledged by {}; escalation stops.</p>",
                esc(&by)
            ),
        ),
        Ok(Outcome::Already) => page(
            StatusCode::OK,
            "Already acknowledged",
            "<p>Someone acknowledged this alert already.</p>",
        ),
        Ok(Outcome::Resolved) => page(
            StatusCode::OK,
            "Already over",
            "<p>This problem is already over.</p>",
        ),
        Ok(Outcome::NoSuchIncident) => page(
            StatusCode::NOT_FOUND,
            "No such alert",
            "<p>This alert no longer exists.</p>",
        ),
        Err(e) => internal(e),
    }
}
