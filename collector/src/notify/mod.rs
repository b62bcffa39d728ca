//! Notifications (issue #12, machine B of shared/ALERTING.md): incidents and their
//! workflow, escalation policies, the outbox and its dispatcher, email and webhooks.
//!
//! Layers, from pure to wired:
//! - [`policy`]: policy files → checked [`policy::PolicySet`] (errors with file:line:col);
//! - [`escalation`]: which steps fire when, pure, clock injected (calendars, DST);
//! - [`incident`]: incidents in SQLite, opened and resolved in the engine's transaction;
//! - [`outbox`]: delivery rows with idempotency keys, attempts and the delivery log;
//! - [`email`], [`webhook`]: composing and sending one delivery;
//! - [`dispatch`]: the task that expands due steps into the outbox and delivers it.

pub mod cli;
pub(crate) mod config;
pub(crate) mod dispatch;
pub(crate) mod email;
pub(crate) mod escalation;
pub(crate) mod incident;
pub(crate) mod link;
pub(crate) mod outbox;
pub(crate) mod policy;
pub(crate) mod service;
pub(crate) mod webhook;
