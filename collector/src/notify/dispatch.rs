//! The dispatcher: a task that expands due escalation steps into outbox rows
//! ([`outbox::escalate_some`]), sends what is due (emails grouped per tenant and
//! recipient, webhooks one by one), and records every attempt, retrying with
//! exponential backoff and jitter. It also watches the policies directory and swaps
//! in a new set only when the whole directory checks clean (a bad edit is logged
//! with file:line:column and the running set stays).
//!
//! Scheduling ([`Schedule`]): incidents are not re-evaluated on every pass. Each
//! evaluation says when that incident next needs looking at (its next step, ack
//! timeout, snooze end or repeat); those times wait in a binary heap. New work is
//! found from the feed events every change writes (opening, ack, snooze,
//! resolution: a cheap read of rows after the last id seen, every 50 ms), and a
//! full sweep every 5 s catches changes that write none (a severity rise, a
//! suppression starting). A pass with nothing due writes nothing and reads almost
//! nothing; a pass with work writes it in one transaction.
//!
//! SQLite work runs on the blocking pool on the dispatcher's own connection (never
//! on the runtime's threads). Restart safety comes from the outbox: what is pending
//! in SQLite is sent after a restart; what was recorded as sent is not.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tandem_proto::util::now_ms;

use tokio_util::sync::CancellationToken;

use super::config::{HttpConfig, NotifyConfig};
use super::email::{self, Envelope, Item, Kind, Mailer, Templates};
use super::incident::IncidentRow;
use super::link::LinkKey;
use super::outbox::{self, Attempt, Delivery};
use super::policy::{self, Channel, PolicySet};
use crate::alerts::rules::RulesError;
use crate::store::api::NotifyStore;
use crate::store::{Db, StoreError};

/// Feed events read per query when catching up (all are read each pass).
const FEED_PAGE: i64 = 1000;

/// The longest the dispatcher sleeps between passes (new feed events are looked
/// for this often).
const PASS: Duration = Duration::from_millis(50);
/// Every incident with work left is evaluated at least this often.
const SWEEP_MS: i64 = 5_000;
/// Deliveries (mails or webhook calls) in flight at once.
const IN_FLIGHT: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("escalation policies: {0}")]
    Policies(#[from] RulesError),
    #[error("notifications: {0}")]
    Email(#[from] email::EmailError),
    #[error("notifications: {0}")]
    Link(#[from] super::link::LinkError),
    #[error("notifications database: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// What sending needs, shared by the dispatcher and `notify test`.
pub(crate) struct Sender {
    pub(crate) cfg: NotifyConfig,
    pub(crate) http: Option<HttpConfig>,
    pub(crate) key: LinkKey,
    pub(crate) mailer: Mailer,
    pub(crate) templates: Templates,
}

impl Sender {
    pub(crate) fn new(
        cfg: NotifyConfig,
        http: Option<HttpConfig>,
        data_dir: &Path,
    ) -> Result<Sender, DispatchError> {
        Ok(Sender {
            key: LinkKey::load_or_create(data_dir)?,
            mailer: Mailer::new(&cfg)?,
            templates: Templates::load(cfg.templates_dir.as_deref()),
            cfg,
            http,
        })
    }

    fn ack_link(&self, incident: i64, recipient: &str) -> Option<String> {
        let h = self.http.as_ref()?;
        let expires = now_ms() + h.ack_link_ttl.as_millis() as i64;
        Some(format!(
            "{}/ack/{}",
            h.public_url,
            self.key.ack_token(incident, recipient, expires)
        ))
    }

    /// Sends one group (one mail, or one webhook call) and says how it went.
    pub(crate) async fn send_group(
        &self,
        set: &PolicySet,
        group: &[Delivery],
        incidents: &[IncidentRow],
        in_reply_to: Vec<String>,
    ) -> Attempt {
        let Some(first) = group.first() else {
            return Attempt::Dead {
                answer: "empty group".into(),
            };
        };
        let kind = match first.transition.as_str() {
            "resolved" => Kind::Resolved,
            "test" => Kind::Test,
            _ => Kind::Problem,
        };
        match first.channel {
            Channel::Email => {
                let tenant = set.tenant(&first.tenant);
                let items: Vec<Item> = incidents
                    .iter()
                    .map(|i| Item {
                        incident: i.clone(),
                        ack_link: (i.state != "resolved" && i.id > 0)
                            .then(|| self.ack_link(i.id, &first.recipient))
                            .flatten(),
                    })
                    .collect();
                let env = Envelope {
                    kind,
                    tenant: &first.tenant,
                    recipient: &first.recipient,
                    message_id: email::message_id(&first.idem_key),
                    in_reply_to,
                    tz: &tenant.zone,
                };
                let msg = match email::compose(&self.cfg, &self.templates, &env, &items) {
                    Ok(m) => m,
                    Err(e) => {
                        return Attempt::Dead {
                            answer: e.to_string(),
                        };
                    }
                };
                let stem = format!("{}-{}", first.created_ms, first.id);
                match self.mailer.send(&msg, &stem).await {
                    Ok(answer) => Attempt::Sent {
                        answer,
                        message_id: Some(env.message_id),
                    },
                    Err(e) if Mailer::is_permanent(&e) => Attempt::Dead {
                        answer: e.to_string(),
                    },
                    Err(e) => Attempt::Retry {
                        answer: e.to_string(),
                    },
                }
            }
            Channel::Webhook => {
                let Some(hook) = set.webhooks.get(&first.recipient) else {
                    return Attempt::Dead {
                        answer: format!("no webhook named {:?} in the policies", first.recipient),
                    };
                };
                let Some(i) = incidents.first() else {
                    return Attempt::Dead {
                        answer: "incident gone".into(),
                    };
                };
                let event = match (kind, first.transition.split('.').next()) {
                    (_, Some(w @ ("acked" | "snoozed" | "reopened"))) => w,
                    (Kind::Resolved, _) => "resolved",
                    (Kind::Test, _) => "test",
                    (Kind::Problem, _) => "opened",
                };
                let link = self.ack_link(i.id, &first.recipient);
                let body =
                    super::webhook::payload(hook.format, event, i, link.as_deref()).to_string();
                super::webhook::deliver(hook, body.as_bytes(), &first.idem_key, now_ms() / 1000)
                    .await
            }
        }
    }
}

/// Runs until `stop` is cancelled.
pub(crate) async fn run(
    sender: Sender,
    db_path: PathBuf,
    policies: PolicySet,
    stop: CancellationToken,
) -> Result<(), DispatchError> {
    let mut conn = tokio::task::spawn_blocking(move || Db::open(&db_path))
        .await
        .map_err(|e| StoreError::CommitFailed(e.to_string()))??;
    // Under full ingest the store writer is in a transaction almost all the time;
    // the default busy handler sleeps up to 100 ms between tries and misses the
    // short gaps between its commits (as the alert engine's connection does).
    if let Err(e) = conn.retry_busy_briefly() {
        tracing::warn!(error = %e, "cannot set the dispatcher connection's busy handler");
    }
    let conn = Arc::new(Mutex::new(conn));
    let mut set = Arc::new(policies);
    // Policy edits: one wake-up per burst is enough (bounded channel of one).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let dir = sender.cfg.policies_dir.clone();
    let _watcher = match tandem_proto::util::fswatch::watch_dir(
        &dir,
        |p| p.extension().is_some_and(|x| x == "toml"),
        move || {
            let _ = tx.try_send(());
        },
    ) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the policies directory; edits apply on restart only");
            None
        }
    };
    let mut reload_at: Option<tokio::time::Instant> = None;
    tracing::info!(
        policies = set.policies.len(),
        tenants = set.tenants.len(),
        mail = %match &sender.mailer { Mailer::Smtp(_) => "smtp".to_owned(), Mailer::Folder(d) => d.display().to_string() },
        "notification dispatcher starting"
    );
    let mut failures_logged = 0u64;
    let mut sched = Some(Schedule::default());
    let mut sleep = Duration::ZERO;
    loop {
        let pass = tokio::select! {
            _ = stop.cancelled() => break,
            Some(()) = rx.recv() => {
                reload_at = Some(tokio::time::Instant::now() + tandem_proto::util::fswatch::SETTLE);
                false
            }
            _ = tokio::time::sleep(sleep) => true,
        };
        if reload_at.is_some_and(|t| tokio::time::Instant::now() >= t) {
            reload_at = None;
            let d = dir.clone();
            match tokio::task::spawn_blocking(move || policy::load_dir(&d)).await {
                Ok(Ok(new)) if new == *set => {}
                Ok(Ok(new)) => {
                    tracing::info!(
                        policies = new.policies.len(),
                        tenants = new.tenants.len(),
                        "escalation policies reloaded"
                    );
                    set = Arc::new(new);
                    // Every incident is looked at again under the new policies.
                    if let Some(s) = sched.as_mut() {
                        s.next_sweep_ms = 0;
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(dir = %dir.display(), problems = %e, "escalation policies not reloaded: the running set stays")
                }
                Err(e) => tracing::error!(error = %e, "policy reload task failed"),
            }
        }
        if !pass {
            continue;
        }
        let st = sched.take().unwrap_or_default();
        let (st, r) = one_pass(&sender, &conn, &set, st).await;
        sleep = st.sleep(now_ms());
        sched = Some(st);
        if let Err(e) = r {
            sleep = PASS;
            failures_logged += 1;
            // A database that stays locked would log every quarter second.
            if failures_logged.is_power_of_two() {
                tracing::warn!(error = %e, failures = failures_logged, "notification pass failed; retrying");
            }
        }
    }
    tracing::info!("notification dispatcher stopped");
    Ok(())
}

/// Work a pass hands to the async side: groups with their incidents and threading.
type Prepared = Vec<(Vec<Delivery>, Vec<IncidentRow>, Vec<String>)>;

async fn blocking<T: Send + 'static>(
    conn: &Arc<Mutex<Db>>,
    f: impl FnOnce(&mut Db) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = conn
            .lock()
            .map_err(|_| "notification connection poisoned".to_owned())?;
        f(&mut c).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// What the dispatcher knows about when work is next due (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    /// (due, incident), earliest first; stale entries are skipped via `next`.
    heap: BinaryHeap<Reverse<(i64, i64)>>,
    next: HashMap<i64, i64>,
    /// The last feed event seen (None: not read yet; the first pass sweeps).
    last_feed_id: Option<i64>,
    next_sweep_ms: i64,
    /// When the outbox next has something due (None: nothing pending).
    outbox_wake: Option<i64>,
    /// The outbox changed since it was last read: read it on the next pass.
    outbox_dirty: bool,
}

impl Schedule {
    /// How long to sleep before the next pass.
    fn sleep(&self, now: i64) -> Duration {
        let mut at = now + PASS.as_millis() as i64;
        if let Some(Reverse((t, _))) = self.heap.peek() {
            at = at.min(*t);
        }
        if let Some(t) = self.outbox_wake {
            at = at.min(t);
        }
        if self.outbox_dirty {
            at = now;
        }
        Duration::from_millis((at - now).max(0) as u64)
    }

    fn wake(&mut self, id: i64, at: Option<i64>) {
        match at {
            Some(t) => {
                if self.next.insert(id, t) != Some(t) {
                    self.heap.push(Reverse((t, id)));
                }
            }
            None => {
                self.next.remove(&id);
            }
        }
    }

    /// The incidents whose time has come.
    fn take_due(&mut self, now: i64, into: &mut BTreeSet<i64>) {
        while let Some(&Reverse((t, id))) = self.heap.peek() {
            if t > now {
                break;
            }
            self.heap.pop();
            if self.next.get(&id) == Some(&t) {
                self.next.remove(&id);
                into.insert(id);
            }
        }
    }
}

/// One pass: find what is due, escalate it, send what is due, record.
pub(crate) async fn one_pass(
    sender: &Sender,
    conn: &Arc<Mutex<Db>>,
    set: &Arc<PolicySet>,
    sched: Schedule,
) -> (Schedule, Result<usize, String>) {
    let sched = Arc::new(Mutex::new(sched));
    let r = pass_inner(sender, conn, set, &sched).await;
    let st = Arc::try_unwrap(sched)
        .ok()
        .and_then(|m| m.into_inner().ok())
        .unwrap_or_default();
    (st, r)
}

async fn pass_inner(
    sender: &Sender,
    conn: &Arc<Mutex<Db>>,
    set: &Arc<PolicySet>,
    sched: &Arc<Mutex<Schedule>>,
) -> Result<usize, String> {
    let s2 = set.clone();
    let group_wait = sender.cfg.group_wait.as_millis() as i64;
    let sc = sched.clone();
    let prepared: Prepared = blocking(conn, move |c| {
        let now = now_ms();
        let mut st = sc.lock().map_err(|_| {
            StoreError::CommitFailed("the dispatcher's schedule is poisoned".into())
        })?;
        let mut ids = BTreeSet::new();
        let mut news = false;
        match st.last_feed_id {
            None => {
                st.last_feed_id = Some(c.feed_head()?);
                st.next_sweep_ms = 0;
            }
            Some(mut last) => loop {
                // Every event since the last pass, a page at a time.
                let page = c.feed_after(last, FEED_PAGE)?;
                let full = page.len() as i64 == FEED_PAGE;
                for ev in page {
                    last = ev.id;
                    st.last_feed_id = Some(ev.id);
                    ids.insert(ev.incident_id);
                    news = true;
                }
                if !full {
                    break;
                }
            },
        }
        st.take_due(now, &mut ids);
        let swept = now >= st.next_sweep_ms;
        let e = if swept {
            st.next_sweep_ms = now + SWEEP_MS;
            Some(outbox::escalate_some(c, &s2, now, None)?)
        } else if !ids.is_empty() {
            let v: Vec<i64> = ids.into_iter().collect();
            Some(outbox::escalate_some(c, &s2, now, Some(&v))?)
        } else {
            None
        };
        if let Some(e) = &e {
            for &(id, w) in &e.wakes {
                st.wake(id, w);
            }
        }
        // Rows other processes add (an ack's webhook notices) come with a feed event.
        let outbox_due = st.outbox_dirty
            || news
            || swept
            || e.is_some_and(|e| e.deliveries > 0)
            || st.outbox_wake.is_some_and(|t| t <= now);
        if !outbox_due {
            return Ok(Vec::new());
        }
        st.outbox_dirty = false;
        let (groups, wake) = outbox::due(c, now, group_wait)?;
        st.outbox_wake = wake;
        drop(st);
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            let mut incidents = Vec::new();
            let mut replies = Vec::new();
            for d in &g {
                if let Some(i) = c.incident(d.incident_id)?
                    && !incidents.iter().any(|x: &IncidentRow| x.id == i.id)
                {
                    incidents.push(i);
                }
                if d.is_resolved()
                    && let Some(m) = c.problem_message_id(d.incident_id, &d.recipient)?
                {
                    replies.push(m);
                }
            }
            out.push((g, incidents, replies));
        }
        Ok(out)
    })
    .await?;
    if prepared.is_empty() {
        return Ok(0);
    }
    // Several mails and webhook calls in flight at once (lettre's pool keeps
    // connections): one slow receiver does not hold up every other tenant.
    use futures::StreamExt;
    let sent: Vec<(Vec<Delivery>, Attempt, i64)> = futures::stream::iter(prepared)
        .map(|(g, incidents, replies)| async move {
            let a = sender.send_group(set, &g, &incidents, replies).await;
            (g, a, now_ms())
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let mut results = Vec::new();
    for (g, a, at) in sent {
        crate::counters::notification(
            g[0].channel.as_str(),
            match &a {
                Attempt::Sent { .. } => "sent",
                Attempt::Retry { .. } => "failed",
                Attempt::Dead { .. } => "dead",
            },
        ); // issue 15: /metrics
        match &a {
            Attempt::Sent { .. } => {
                tracing::debug!(channel = g[0].channel.as_str(), recipient = %g[0].recipient, incidents = g.len(), "notification delivered")
            }
            Attempt::Retry { answer } => {
                tracing::warn!(channel = g[0].channel.as_str(), recipient = %g[0].recipient, attempt = g[0].attempts + 1, answer = %answer, "notification failed; will retry")
            }
            Attempt::Dead { answer } => {
                tracing::error!(channel = g[0].channel.as_str(), recipient = %g[0].recipient, answer = %answer, "notification dead-lettered")
            }
        }
        for d in g {
            results.push((d, a.clone(), at));
        }
    }
    let n = results.len();
    let (base, max, attempts) = (
        sender.cfg.retry_base.as_millis() as i64,
        sender.cfg.retry_max.as_millis() as i64,
        sender.cfg.max_attempts,
    );
    blocking(conn, move |c| {
        let retry =
            move |attempt: i64| outbox::backoff_ms(attempt, base, max, rand::random::<f64>());
        outbox::record_at(c, &results, &retry, attempts)
    })
    .await?;
    // Retries got new times, and groups that waited may have grown: read again.
    if let Ok(mut st) = sched.lock() {
        st.outbox_dirty = true;
    }
    Ok(n)
}

/// `notify test --tenant T`: a test message to every target of the tenant's
/// policy, sent now; each result is recorded in the delivery log and returned.
pub(crate) async fn send_test(
    sender: &Sender,
    set: &PolicySet,
    db_path: &Path,
    tenant: &str,
) -> Result<Vec<(String, Attempt)>, String> {
    let Some(policy) = set.policy_for(tenant) else {
        return Err(format!(
            "no escalation policy applies to tenant {tenant:?} (and there is no default)"
        ));
    };
    let mut targets = std::collections::BTreeSet::new();
    for step in &policy.steps {
        for t in &step.targets {
            for r in set.expand(tenant, t) {
                targets.insert(r);
            }
        }
    }
    let now = now_ms();
    let fake = IncidentRow {
        id: 0,
        tenant: tenant.to_owned(),
        site: None,
        device_id: "test".into(),
        hostname: "test-message".into(),
        rule: "notify-test".into(),
        dimension: String::new(),
        severity: "warning".into(),
        state: "open".into(),
        value: 0.0,
        suppressed: false,
        opened_ms: now,
        acked_ms: None,
        acked_by: None,
        ack_note: None,
        snoozed_until_ms: None,
        resolved_ms: None,
        resolved_by: None,
        loop_no: 0,
        loop_start_ms: now,
    };
    let mut conn = Db::open(db_path).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (ch, rcpt) in targets {
        let d = Delivery::from_row(
            conn.queue_test_delivery(tenant, ch.as_str(), &rcpt, now)
                .map_err(|e| e.to_string())?,
        );
        let a = sender
            .send_group(
                set,
                std::slice::from_ref(&d),
                std::slice::from_ref(&fake),
                vec![],
            )
            .await;
        // A test is tried once: a failure is shown, not retried.
        let recorded = match &a {
            Attempt::Retry { answer } => Attempt::Dead {
                answer: answer.clone(),
            },
            other => other.clone(),
        };
        outbox::record(&mut conn, &[(d, recorded)], now_ms(), &|_| 0, 1)
            .map_err(|e| e.to_string())?;
        out.push((format!("{} {rcpt}", ch.as_str()), a));
    }
    Ok(out)
}
