//! Small pieces both binaries need and that belong to neither: watching files for
//! edits ([`fswatch`]), the process's stop signal ([`shutdown_signal`]) and the wall
//! clock in Unix milliseconds ([`now_ms`]). They live here, in the crate both sides
//! already depend on, so that the collector does not link the agent to get them
//! (issue 11) and each exists once.

pub mod fswatch;

/// The wall clock as Unix milliseconds (0 if the clock is before 1970). The unit of
/// every `*_unix_ms` field on the wire and in the store.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Resolves on Ctrl-C, or on SIGTERM on Unix (what a service manager sends to stop a
/// service). If the SIGTERM handler cannot be installed, only Ctrl-C stops.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_ms_is_the_unix_clock_in_milliseconds() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let now = super::now_ms();
        // 2020-01-01 in ms: a seconds or microseconds clock would fail one side.
        assert!(now > 1_577_836_800_000 && now < 10_000_000_000_000, "{now}");
        assert!(now >= before && now - before < 5_000);
    }
}
