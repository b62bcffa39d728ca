//! Makes a loaded config ready to run: enrolls the device first where it has no
//! certificate and a token is at hand, and fills what an enrolled agent's config may
//! leave out from `enrollment.toml`.

use crate::config::{self, AgentConfig};
use crate::{AgentError, enroll, identity};

/// Environment variable that may hold an enrollment token for the first `run`.
pub const TOKEN_ENV: &str = "TANDEM_ENROLL_TOKEN";

/// Makes `cfg` ready to stream: enrolls first if the device has no certificate and
/// a token is at hand (config, `TANDEM_ENROLL_TOKEN`, or the token file an
/// installer left), then fills the collector address from `enrollment.toml` where
/// the config does not give one.
///
/// While the collector cannot be reached (not up yet at boot, DNS or network not
/// ready) it retries with a doubling backoff up to `enroll_retry_max`, one warning
/// per attempt; it returns only on success or on a failure that a retry cannot fix
/// (refused, expired or damaged token, wrong CA). A token given to an enrolled
/// device is ignored with one info line. The token file is removed (or blanked)
/// once enrollment succeeded, or at once on an enrolled device.
pub async fn prepare(cfg: AgentConfig) -> Result<AgentConfig, AgentError> {
    use rand::Rng;
    let has_identity = cfg.cert.exists() && cfg.key.exists();
    let found = enroll::find_token(&cfg, std::env::var(TOKEN_ENV).ok());
    if has_identity {
        // A broken token file does not matter to an enrolled agent.
        if let Ok(Some((_, source))) = &found {
            let device = identity::Enrollment::load(&cfg.state_dir)
                .ok()
                .flatten()
                .map(|e| e.device_id)
                .unwrap_or_default();
            tracing::info!(%source, %device, "enrollment token ignored: this device is already enrolled (`tandem-agent enroll --force` enrolls again)");
        }
        enroll::consume_token_file(&cfg.enroll_token_file);
        return complete(cfg);
    }
    let Some((token, source)) = found? else {
        return Err(AgentError::NotEnrolled(cfg.cert.clone()));
    };
    let mut failed = 0u32;
    let done = loop {
        match enroll::enroll(&cfg, &token).await {
            Ok(done) => break done,
            Err(err) if err.is_transient() => {
                failed = failed.saturating_add(1);
                let jitter = rand::rng().random_range(0.8..=1.2);
                let wait = enroll::retry_delay(failed, cfg.enroll_retry_max, jitter);
                tracing::warn!(attempt = failed, retry_in_ms = wait.as_millis() as u64, error = %err, "cannot enroll yet; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(err) => return Err(err.into()),
        }
    };
    tracing::info!(device = %done.enrollment.device_id, tenant = %done.enrollment.tenant, %source, attempts = failed + 1, "enrolled");
    match enroll::consume_token_file(&cfg.enroll_token_file) {
        enroll::Consumed::Removed => {
            tracing::info!(file = %cfg.enroll_token_file.display(), "used enrollment token file removed")
        }
        enroll::Consumed::Blanked => {
            tracing::info!(file = %cfg.enroll_token_file.display(), "used enrollment token file blanked")
        }
        enroll::Consumed::Nothing | enroll::Consumed::Left => {}
    }
    complete(cfg)
}

/// Fills what an enrolled agent's config may leave out (the collector address, from
/// `enrollment.toml`). Used at start and on every config reload.
pub fn complete(mut cfg: AgentConfig) -> Result<AgentConfig, AgentError> {
    if cfg.collector_url.is_empty() {
        let e = identity::Enrollment::load(&cfg.state_dir)?
            .ok_or_else(|| AgentError::NoCollector(identity::Enrollment::path(&cfg.state_dir)))?;
        cfg.collector_url = e.collector_url;
    }
    if cfg.server_name.is_empty() {
        cfg.server_name = config::url_host(&cfg.collector_url)
            .unwrap_or_default()
            .to_owned();
    }
    Ok(cfg)
}
