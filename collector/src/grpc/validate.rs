//! Checks of every frame an agent sends, as pure functions: no I/O, the clock passed
//! in. A frame that fails is refused with a message that says what and where
//! ("batch seq 12, sample 3: ..."), and nothing of it is stored.
//!
//! Invariant: every `u64` on the wire that the store keeps as an SQLite `INTEGER`
//! (i64) is at most [`MAX_STORED_U64`] once it passed these checks (seqs of batches,
//! gaps, inventories, patch reports and live copies; a gap's dropped range; an
//! inventory's memory size). Above it, the value would be stored as a negative
//! number (seq 2^64-1 as -1) and corrupt the device's ledger.

use tandem_proto::v1::{
    Gap, GapReason, Hello, Inventory, MetricBatch, OsFamily, PatchReport, PostureReport,
    PostureState, UpdateClassification,
};
use tandem_proto::{MAX_LABEL_BYTES, MAX_SAMPLES_PER_BATCH, MAX_SERIES_PER_BATCH, Refusal};

use crate::store::writer::DeviceFacts;

/// Most pending updates one patch report may list.
pub(crate) const MAX_UPDATES_PER_REPORT: usize = 20_000;
/// Most installed programs one inventory may list. A busy Windows desktop lists a
/// few hundred, a Linux server a few thousand packages; 50 000 leaves room while
/// keeping the message well under `MAX_MESSAGE_BYTES`.
pub(crate) const MAX_SOFTWARE_PER_INVENTORY: usize = 50_000;
/// Most logical CPUs an inventory may claim (a sanity bound, not a hardware limit
/// anyone reaches).
const MAX_CPU_CORES: u32 = 1 << 16;
/// Longest free-text field (hostname, OS version, error text) in bytes.
const MAX_TEXT_BYTES: usize = 1024;
/// Largest `u64` the store can keep: SQLite integers are i64.
pub(crate) const MAX_STORED_U64: u64 = i64::MAX as u64;

/// Refuses a `u64` the store could not keep as i64.
fn storable(what: &str, value: u64) -> Result<(), Refused> {
    if value > MAX_STORED_U64 {
        return Err(bad(format!(
            "{what} {value} is above 2^63-1, the largest value the collector stores"
        )));
    }
    Ok(())
}

/// How far sample timestamps may stray from the collector's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeLimits {
    /// A sample stamped more than this ahead of now is refused (agent clock wrong).
    pub(crate) max_future_ms: i64,
    /// A sample older than this is refused (spool bound plus margin).
    pub(crate) max_age_ms: i64,
}

/// A refused frame: the reason class and the message for the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) reason: Refusal,
    pub(crate) message: String,
}

fn bad(message: String) -> Refused {
    Refused {
        reason: Refusal::BadInput,
        message,
    }
}

fn text(field: &str, value: &str) -> Result<(), Refused> {
    if value.len() > MAX_TEXT_BYTES {
        return Err(bad(format!(
            "{field} is {} bytes, longer than the limit of {MAX_TEXT_BYTES}",
            value.len()
        )));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(bad(format!("{field} contains control characters")));
    }
    Ok(())
}

/// Checks a Hello against the identity from the certificate.
pub(crate) fn check_hello(hello: &Hello, cert_device_id: &str) -> Result<DeviceFacts, Refused> {
    if hello.protocol_version == 0 {
        return Err(bad("hello: protocol_version is missing".into()));
    }
    let os = OsFamily::try_from(hello.os_family).map_err(|_| {
        bad(format!(
            "hello: unknown os_family value {}",
            hello.os_family
        ))
    })?;
    if !hello.claimed_device_id.is_empty() && hello.claimed_device_id != cert_device_id {
        return Err(Refused {
            reason: Refusal::WrongIdentity,
            message: format!(
                "hello: claims device {:?} but the client certificate is for device {:?}",
                hello.claimed_device_id, cert_device_id
            ),
        });
    }
    text("hello: hostname", &hello.hostname)?;
    text("hello: os_version", &hello.os_version)?;
    text("hello: agent_version", &hello.agent_version)?;
    let os_family = match os {
        OsFamily::Unspecified => "",
        OsFamily::Linux => "linux",
        OsFamily::Windows => "windows",
        OsFamily::Macos => "macos",
        OsFamily::Other => "other",
    };
    Ok(DeviceFacts {
        hostname: hello.hostname.clone(),
        os_family: os_family.into(),
        os_version: hello.os_version.clone(),
        agent_version: hello.agent_version.clone(),
        boot_time_unix: hello.boot_time_unix,
    })
}

/// Checks that `seq` moves forward within one stream. Across reconnects a seq at or
/// below the stored one is a replay, handled by the store's ledger, not an error.
pub(crate) fn check_seq(
    what: &str,
    seq: u64,
    previous_in_stream: Option<u64>,
) -> Result<(), Refused> {
    if seq == 0 {
        return Err(bad(format!("{what}: seq must be 1 or more")));
    }
    storable(&format!("{what}: seq"), seq)?;
    if let Some(prev) = previous_in_stream
        && seq <= prev
    {
        let how = if seq == prev {
            "repeats"
        } else {
            "goes backwards from"
        };
        return Err(bad(format!(
            "{what} seq {seq} {how} seq {prev} sent earlier on this stream"
        )));
    }
    Ok(())
}

fn is_metric_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LABEL_BYTES
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

fn check_time(where_: &str, t: i64, now_ms: i64, limits: TimeLimits) -> Result<(), Refused> {
    if t > now_ms.saturating_add(limits.max_future_ms) {
        return Err(bad(format!(
            "{where_}: timestamp {t} ms is {} s ahead of the collector's clock (limit {} s)",
            (t - now_ms) / 1000,
            limits.max_future_ms / 1000
        )));
    }
    if t < now_ms.saturating_sub(limits.max_age_ms) {
        return Err(bad(format!(
            "{where_}: timestamp {t} ms is {} s in the past (limit {} s)",
            now_ms.saturating_sub(t) / 1000,
            limits.max_age_ms / 1000
        )));
    }
    Ok(())
}

/// Checks a metric batch's shape and contents.
pub(crate) fn check_batch(
    batch: &MetricBatch,
    previous_in_stream: Option<u64>,
    now_ms: i64,
    limits: TimeLimits,
) -> Result<(), Refused> {
    check_seq("batch", batch.seq, previous_in_stream)?;
    check_batch_body(&format!("batch seq {}", batch.seq), batch, now_ms, limits)
}

/// Checks a live copy of a batch: the same shape rules, no seq ordering (it is sent
/// ahead of the backlog, so its seq is above frames still to come).
pub(crate) fn check_live(
    batch: &MetricBatch,
    now_ms: i64,
    limits: TimeLimits,
) -> Result<(), Refused> {
    storable("live batch: seq", batch.seq)?;
    check_batch_body(
        &format!("live batch seq {}", batch.seq),
        batch,
        now_ms,
        limits,
    )
}

/// Checks a gap record.
pub(crate) fn check_gap(
    gap: &Gap,
    previous_in_stream: Option<u64>,
    now_ms: i64,
    limits: TimeLimits,
) -> Result<(), Refused> {
    check_seq("gap", gap.seq, previous_in_stream)?;
    let at = format!("gap seq {}", gap.seq);
    GapReason::try_from(gap.reason)
        .map_err(|_| bad(format!("{at}: unknown reason value {}", gap.reason)))?;
    storable(&format!("{at}: first_dropped_seq"), gap.first_dropped_seq)?;
    storable(&format!("{at}: last_dropped_seq"), gap.last_dropped_seq)?;
    if gap.first_dropped_seq == 0
        || gap.first_dropped_seq > gap.last_dropped_seq
        || gap.last_dropped_seq >= gap.seq
    {
        return Err(bad(format!(
            "{at}: dropped range {}..={} must be non-empty, start at 1 or more, and lie before the gap's own seq",
            gap.first_dropped_seq, gap.last_dropped_seq
        )));
    }
    // The timestamp is not checked: a gap record is the report of lost data, and
    // refusing it for a skewed agent clock lost the report too (issue 16). A
    // timestamp out of bounds is replaced by the collector's (see `gap_time`).
    let _ = (now_ms, limits);
    Ok(())
}

/// The time to store for a gap record: the agent's, unless it lies outside the
/// limits a sample would be held to, then the collector's `now_ms`.
pub(crate) fn gap_time(gap: &Gap, now_ms: i64, limits: TimeLimits) -> i64 {
    match check_time("gap", gap.time_unix_ms, now_ms, limits) {
        Ok(()) => gap.time_unix_ms,
        Err(_) => now_ms,
    }
}

fn check_batch_body(
    at: &str,
    batch: &MetricBatch,
    now_ms: i64,
    limits: TimeLimits,
) -> Result<(), Refused> {
    if batch.series.is_empty() || batch.series.len() > MAX_SERIES_PER_BATCH {
        return Err(bad(format!(
            "{at}: declares {} series (allowed 1 to {MAX_SERIES_PER_BATCH})",
            batch.series.len()
        )));
    }
    if batch.samples.is_empty() || batch.samples.len() > MAX_SAMPLES_PER_BATCH {
        return Err(bad(format!(
            "{at}: carries {} samples (allowed 1 to {MAX_SAMPLES_PER_BATCH})",
            batch.samples.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(batch.series.len());
    for (i, key) in batch.series.iter().enumerate() {
        if !is_metric_name(&key.name) {
            return Err(bad(format!(
                "{at}, series {i}: metric name {:?} is empty, too long, or has characters outside [A-Za-z0-9_.:-]",
                truncate(&key.name)
            )));
        }
        if key.dimension.len() > MAX_LABEL_BYTES || key.dimension.chars().any(|c| c.is_control()) {
            return Err(bad(format!(
                "{at}, series {i} ({}): dimension is longer than {MAX_LABEL_BYTES} bytes or has control characters",
                key.name
            )));
        }
        if !seen.insert((key.name.as_str(), key.dimension.as_str())) {
            return Err(bad(format!(
                "{at}, series {i}: {} {:?} is declared twice",
                key.name, key.dimension
            )));
        }
    }
    let mut last_t = i64::MIN;
    for (j, sample) in batch.samples.iter().enumerate() {
        let where_ = format!("{at}, sample {j}");
        if sample.values.len() != batch.series.len() {
            return Err(bad(format!(
                "{where_}: has {} values but the batch declares {} series",
                sample.values.len(),
                batch.series.len()
            )));
        }
        if sample.time_unix_ms <= last_t {
            return Err(bad(format!(
                "{where_}: timestamps must increase within a batch"
            )));
        }
        last_t = sample.time_unix_ms;
        check_time(&where_, sample.time_unix_ms, now_ms, limits)?;
        if let Some(i) = sample.values.iter().position(|v| v.is_infinite()) {
            return Err(bad(format!(
                "{where_}: value for series {i} ({}) is infinite",
                batch.series[i].name
            )));
        }
    }
    Ok(())
}

/// Checks a patch report.
pub(crate) fn check_patch(
    report: &PatchReport,
    previous_in_stream: Option<u64>,
    now_ms: i64,
    limits: TimeLimits,
) -> Result<(), Refused> {
    check_seq("patch report", report.seq, previous_in_stream)?;
    let at = format!("patch report seq {}", report.seq);
    check_time(&at, report.time_unix_ms, now_ms, limits)?;
    text(&format!("{at}: source"), &report.source)?;
    text(&format!("{at}: error"), &report.error)?;
    if report.updates.len() > MAX_UPDATES_PER_REPORT {
        return Err(bad(format!(
            "{at}: lists {} updates (limit {MAX_UPDATES_PER_REPORT})",
            report.updates.len()
        )));
    }
    for (i, u) in report.updates.iter().enumerate() {
        let w = format!("{at}, update {i}");
        UpdateClassification::try_from(u.classification).map_err(|_| {
            bad(format!(
                "{w}: unknown classification value {}",
                u.classification
            ))
        })?;
        if u.name.is_empty() {
            return Err(bad(format!("{w}: name is empty")));
        }
        for (f, v) in [
            ("name", &u.name),
            ("current_version", &u.current_version),
            ("new_version", &u.new_version),
            ("advisory_id", &u.advisory_id),
        ] {
            text(&format!("{w}: {f}"), v)?;
        }
    }
    Ok(())
}

/// Checks an inventory: seq and time like a batch, every text field within the
/// text limits, at most [`MAX_SOFTWARE_PER_INVENTORY`] programs, each with a name.
pub(crate) fn check_inventory(
    inv: &Inventory,
    previous_in_stream: Option<u64>,
    now_ms: i64,
    limits: TimeLimits,
) -> Result<(), Refused> {
    check_seq("inventory", inv.seq, previous_in_stream)?;
    let at = format!("inventory seq {}", inv.seq);
    check_time(&at, inv.time_unix_ms, now_ms, limits)?;
    for (f, v) in [
        ("os_name", &inv.os_name),
        ("os_version", &inv.os_version),
        ("os_build", &inv.os_build),
        ("kernel", &inv.kernel),
        ("arch", &inv.arch),
        ("hw_vendor", &inv.hw_vendor),
        ("hw_model", &inv.hw_model),
        ("hw_serial", &inv.hw_serial),
        ("cpu_model", &inv.cpu_model),
        ("software_source", &inv.software_source),
        ("software_error", &inv.software_error),
    ] {
        text(&format!("{at}: {f}"), v)?;
    }
    storable(&format!("{at}: memory_bytes"), inv.memory_bytes)?;
    if inv.cpu_cores > MAX_CPU_CORES {
        return Err(bad(format!(
            "{at}: cpu_cores {} is more than {MAX_CPU_CORES}",
            inv.cpu_cores
        )));
    }
    if inv.software.len() > MAX_SOFTWARE_PER_INVENTORY {
        return Err(bad(format!(
            "{at}: lists {} programs (limit {MAX_SOFTWARE_PER_INVENTORY})",
            inv.software.len()
        )));
    }
    for (i, sw) in inv.software.iter().enumerate() {
        let w = format!("{at}, software {i}");
        if sw.name.is_empty() {
            return Err(bad(format!("{w}: name is empty")));
        }
        for (f, v) in [
            ("name", &sw.name),
            ("version", &sw.version),
            ("publisher", &sw.publisher),
        ] {
            text(&format!("{w}: {f}"), v)?;
        }
    }
    Ok(())
}

/// Most posture checks, backups or custom checks one posture report may list.
pub(crate) const MAX_POSTURE_ITEMS: usize = 256;

/// Checks a posture report: seq and time like a batch; every check named (a
/// metric-name-like word), with a known state, an `unknown` one saying why; every
/// backup and custom check named (a valid dimension), a custom-check status 0..=3,
/// no name twice; every text within the limits.
pub(crate) fn check_posture(
    r: &PostureReport,
    previous_in_stream: Option<u64>,
    now_ms: i64,
    limits: TimeLimits,
) -> Result<(), Refused> {
    check_seq("posture report", r.seq, previous_in_stream)?;
    let at = format!("posture report seq {}", r.seq);
    check_time(&at, r.time_unix_ms, now_ms, limits)?;
    for (what, n) in [
        ("checks", r.checks.len()),
        ("backups", r.backups.len()),
        ("custom checks", r.custom_checks.len()),
    ] {
        if n > MAX_POSTURE_ITEMS {
            return Err(bad(format!(
                "{at}: lists {n} {what} (limit {MAX_POSTURE_ITEMS})"
            )));
        }
    }
    let name_ok =
        |kind: &str, i: usize, name: &str, seen: &mut std::collections::HashSet<String>| {
            let w = format!("{at}, {kind} {i}");
            if name.is_empty() || name.len() > MAX_LABEL_BYTES || name.chars().any(char::is_control)
            {
                return Err(bad(format!(
                    "{w}: name {:?} is empty, too long or has control characters",
                    truncate(name)
                )));
            }
            if !seen.insert(name.to_owned()) {
                return Err(bad(format!(
                    "{w}: name {:?} is listed twice",
                    truncate(name)
                )));
            }
            Ok(w)
        };
    let mut seen = std::collections::HashSet::new();
    for (i, c) in r.checks.iter().enumerate() {
        let w = name_ok("check", i, &c.check, &mut seen)?;
        if !is_metric_name(&c.check) {
            return Err(bad(format!(
                "{w}: check name {:?} is not a word",
                truncate(&c.check)
            )));
        }
        match PostureState::try_from(c.state) {
            Ok(PostureState::Pass | PostureState::Fail) => {}
            Ok(PostureState::Unknown) if c.reason.trim().is_empty() => {
                return Err(bad(format!("{w}: state unknown without a reason")));
            }
            Ok(PostureState::Unknown) => {}
            _ => return Err(bad(format!("{w}: unknown state value {}", c.state))),
        }
        text(&format!("{w}: evidence"), &c.evidence)?;
        text(&format!("{w}: reason"), &c.reason)?;
    }
    let mut seen = std::collections::HashSet::new();
    for (i, b) in r.backups.iter().enumerate() {
        let w = name_ok("backup", i, &b.name, &mut seen)?;
        if !matches!(
            b.source.as_str(),
            "path" | "command" | "wbadmin" | "time_machine"
        ) {
            return Err(bad(format!(
                "{w}: unknown source {:?}",
                truncate(&b.source)
            )));
        }
        if b.last_success_unix_ms < 0 || b.max_age_secs <= 0 {
            return Err(bad(format!("{w}: negative time or window")));
        }
        if b.last_success_unix_ms == 0 && b.error.trim().is_empty() {
            return Err(bad(format!("{w}: no last success and no error saying why")));
        }
        text(&format!("{w}: error"), &b.error)?;
        text(&format!("{w}: evidence"), &b.evidence)?;
    }
    let mut seen = std::collections::HashSet::new();
    for (i, c) in r.custom_checks.iter().enumerate() {
        let w = name_ok("custom check", i, &c.name, &mut seen)?;
        if c.status > 3 {
            return Err(bad(format!("{w}: status {} is not 0 to 3", c.status)));
        }
        text(&format!("{w}: reason"), &c.reason)?;
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_proto::v1::{PendingUpdate, Sample, SeriesKey};

    const NOW: i64 = 1_800_000_000_000;
    const LIM: TimeLimits = TimeLimits {
        max_future_ms: 300_000,
        max_age_ms: 30 * 86_400_000,
    };

    fn batch(seq: u64) -> MetricBatch {
        MetricBatch {
            seq,
            series: vec![
                SeriesKey {
                    name: "cpu.percent".into(),
                    dimension: String::new(),
                },
                SeriesKey {
                    name: "fs.used.bytes".into(),
                    dimension: "/".into(),
                },
            ],
            samples: vec![Sample {
                time_unix_ms: NOW,
                values: vec![1.0, f64::NAN],
            }],
        }
    }

    fn refused(r: Result<(), Refused>) -> String {
        let e = r.expect_err("should be refused");
        assert_eq!(e.reason, Refusal::BadInput);
        e.message
    }

    #[test]
    fn a_good_batch_passes() {
        check_batch(&batch(1), None, NOW, LIM).unwrap();
        check_batch(&batch(8), Some(7), NOW, LIM).unwrap();
    }

    #[test]
    fn seq_must_move_forward_within_a_stream() {
        assert!(refused(check_batch(&batch(0), None, NOW, LIM)).contains("seq must be 1 or more"));
        assert!(refused(check_batch(&batch(5), Some(5), NOW, LIM)).contains("seq 5 repeats seq 5"));
        assert!(refused(check_batch(&batch(4), Some(5), NOW, LIM)).contains("goes backwards"));
    }

    #[test]
    fn shape_errors_name_where() {
        let mut b = batch(3);
        b.samples[0].values.push(2.0);
        assert!(
            refused(check_batch(&b, None, NOW, LIM))
                .contains("batch seq 3, sample 0: has 3 values")
        );

        let mut b = batch(3);
        b.series[1].name = "bad name".into();
        assert!(refused(check_batch(&b, None, NOW, LIM)).contains("series 1"));

        let mut b = batch(3);
        b.series[1] = b.series[0].clone();
        assert!(refused(check_batch(&b, None, NOW, LIM)).contains("declared twice"));

        let mut b = batch(3);
        b.samples.push(b.samples[0].clone());
        assert!(refused(check_batch(&b, None, NOW, LIM)).contains("must increase"));

        let mut b = batch(3);
        b.samples[0].values[0] = f64::INFINITY;
        assert!(refused(check_batch(&b, None, NOW, LIM)).contains("infinite"));

        let mut b = batch(3);
        b.series.clear();
        b.samples[0].values.clear();
        assert!(refused(check_batch(&b, None, NOW, LIM)).contains("declares 0 series"));

        let mut b = batch(3);
        b.samples.clear();
        assert!(refused(check_batch(&b, None, NOW, LIM)).contains("carries 0 samples"));
    }

    #[test]
    fn timestamps_far_off_are_refused() {
        let mut b = batch(1);
        b.samples[0].time_unix_ms = NOW + 301_000;
        assert!(
            refused(check_batch(&b, None, NOW, LIM)).contains("ahead of the collector's clock")
        );
        b.samples[0].time_unix_ms = NOW + 299_000;
        check_batch(&b, None, NOW, LIM).unwrap();
        b.samples[0].time_unix_ms = NOW - 31 * 86_400_000;
        assert!(refused(check_batch(&b, None, NOW, LIM)).contains("in the past"));
    }

    #[test]
    fn live_copies_skip_seq_order_but_not_shape() {
        check_live(&batch(3), NOW, LIM).unwrap();
        let mut b = batch(3);
        b.samples[0].time_unix_ms = NOW + 3_600_000;
        assert!(refused(check_live(&b, NOW, LIM)).contains("live batch seq 3, sample 0"));
    }

    #[test]
    fn gap_records_are_checked() {
        let gap = Gap {
            seq: 10,
            first_dropped_seq: 2,
            last_dropped_seq: 8,
            reason: GapReason::SpoolFull as i32,
            time_unix_ms: NOW,
            ..Default::default()
        };
        check_gap(&gap, Some(1), NOW, LIM).unwrap();
        let mut g = gap;
        g.last_dropped_seq = 10;
        assert!(refused(check_gap(&g, None, NOW, LIM)).contains("dropped range 2..=10"));
        let mut g = gap;
        g.reason = 99;
        assert!(refused(check_gap(&g, None, NOW, LIM)).contains("unknown reason value 99"));
        // A skewed agent clock does not lose the report: it is accepted, stamped
        // with the collector's time.
        let mut g = gap;
        g.time_unix_ms = NOW + 86_400_000;
        check_gap(&g, Some(1), NOW, LIM).unwrap();
        assert_eq!(gap_time(&g, NOW, LIM), NOW);
        assert_eq!(gap_time(&gap, NOW, LIM), gap.time_unix_ms);
    }

    #[test]
    fn hello_checks_enum_and_identity() {
        let mut h = Hello {
            protocol_version: 1,
            os_family: OsFamily::Linux as i32,
            hostname: "web-1".into(),
            ..Default::default()
        };
        assert_eq!(check_hello(&h, "d1").unwrap().os_family, "linux");
        h.os_family = 42;
        let e = check_hello(&h, "d1").unwrap_err();
        assert_eq!(e.reason, Refusal::BadInput);
        assert!(e.message.contains("unknown os_family value 42"));
        h.os_family = 1;
        h.claimed_device_id = "d2".into();
        assert_eq!(
            check_hello(&h, "d1").unwrap_err().reason,
            Refusal::WrongIdentity
        );
        h.claimed_device_id = "d1".into();
        check_hello(&h, "d1").unwrap();
        h.protocol_version = 0;
        assert!(
            check_hello(&h, "d1")
                .unwrap_err()
                .message
                .contains("protocol_version")
        );
        h.protocol_version = 1;
        h.hostname = "a\u{0}b".into();
        assert!(
            check_hello(&h, "d1")
                .unwrap_err()
                .message
                .contains("control characters")
        );
    }

    #[test]
    fn patch_report_checks_classification() {
        let mut r = PatchReport {
            seq: 2,
            time_unix_ms: NOW,
            source: "apt".into(),
            updates: vec![PendingUpdate {
                name: "openssl".into(),
                classification: UpdateClassification::Security as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        check_patch(&r, Some(1), NOW, LIM).unwrap();
        r.updates[0].classification = 9;
        assert!(
            refused(check_patch(&r, Some(1), NOW, LIM))
                .contains("update 0: unknown classification value 9")
        );
    }

    /// Seqs at or above 2^63 were stored as negative numbers (2^64-1 as -1) and
    /// 2^63-1 ... became a device's permanent acked seq: every u64 the store keeps as
    /// i64 is refused above i64::MAX, on every kind of frame.
    #[test]
    fn u64s_above_i64_max_are_refused_on_every_frame() {
        let max = i64::MAX as u64;
        for seq in [max + 1, u64::MAX] {
            let m = refused(check_batch(&batch(seq), None, NOW, LIM));
            assert!(
                m.contains("batch: seq") && m.contains("above 2^63-1"),
                "{m}"
            );
            let m = refused(check_live(&batch(seq), NOW, LIM));
            assert!(m.contains("live batch: seq"), "{m}");
            let m = refused(check_inventory(&inventory(seq), None, NOW, LIM));
            assert!(m.contains("inventory: seq"), "{m}");
            let report = PatchReport {
                seq,
                time_unix_ms: NOW,
                ..Default::default()
            };
            let m = refused(check_patch(&report, None, NOW, LIM));
            assert!(m.contains("patch report: seq"), "{m}");
            let gap = Gap {
                seq,
                first_dropped_seq: 1,
                last_dropped_seq: 2,
                reason: GapReason::SpoolFull as i32,
                time_unix_ms: NOW,
                ..Default::default()
            };
            assert!(refused(check_gap(&gap, None, NOW, LIM)).contains("gap: seq"));
            let mut inv = inventory(3);
            inv.memory_bytes = seq;
            assert!(refused(check_inventory(&inv, None, NOW, LIM)).contains("memory_bytes"));
        }
        // The largest storable value itself is fine.
        check_batch(&batch(max), None, NOW, LIM).unwrap();
        check_live(&batch(max), NOW, LIM).unwrap();
        check_inventory(&inventory(max), None, NOW, LIM).unwrap();
    }

    fn inventory(seq: u64) -> Inventory {
        Inventory {
            seq,
            time_unix_ms: NOW,
            os_name: "Debian GNU/Linux".into(),
            software_source: "dpkg".into(),
            software: vec![tandem_proto::v1::Software {
                name: "bash".into(),
                version: "5.2.15-2+b7".into(),
                publisher: String::new(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn inventory_checks_name_what_and_where() {
        check_inventory(&inventory(3), Some(2), NOW, LIM).unwrap();
        assert!(refused(check_inventory(&inventory(2), Some(2), NOW, LIM)).contains("repeats"));
        let mut inv = inventory(3);
        inv.software[0].name.clear();
        assert_eq!(
            refused(check_inventory(&inv, None, NOW, LIM)),
            "inventory seq 3, software 0: name is empty"
        );
        let mut inv = inventory(3);
        inv.hw_serial = "a\nb".into();
        assert_eq!(
            refused(check_inventory(&inv, None, NOW, LIM)),
            "inventory seq 3: hw_serial contains control characters"
        );
        let mut inv = inventory(3);
        inv.software = vec![inv.software[0].clone(); MAX_SOFTWARE_PER_INVENTORY + 1];
        assert!(refused(check_inventory(&inv, None, NOW, LIM)).contains("programs (limit 50000)"));
        let mut inv = inventory(3);
        inv.cpu_cores = u32::MAX;
        assert!(refused(check_inventory(&inv, None, NOW, LIM)).contains("cpu_cores"));
        let mut inv = inventory(3);
        inv.time_unix_ms = NOW + 3_600_000;
        assert!(refused(check_inventory(&inv, None, NOW, LIM)).contains("ahead"));
    }

    #[test]
    fn posture_reports_name_what_and_where() {
        use tandem_proto::v1::{BackupStatus, CustomCheckStatus, PostureCheck};
        let ok = || PostureReport {
            seq: 4,
            time_unix_ms: NOW,
            checks: vec![PostureCheck {
                check: "firewall".into(),
                state: PostureState::Unknown as i32,
                evidence: String::new(),
                reason: "nft: permission denied".into(),
            }],
            backups: vec![BackupStatus {
                name: "nas".into(),
                source: "path".into(),
                last_success_unix_ms: NOW - 1000,
                max_age_secs: 60,
                error: String::new(),
                evidence: "newest file".into(),
            }],
            custom_checks: vec![CustomCheckStatus {
                name: "raid".into(),
                status: 2,
                reason: String::new(),
            }],
        };
        check_posture(&ok(), Some(3), NOW, LIM).unwrap();
        let mut r = ok();
        r.checks[0].reason.clear();
        assert_eq!(
            refused(check_posture(&r, None, NOW, LIM)),
            "posture report seq 4, check 0: state unknown without a reason"
        );
        let mut r = ok();
        r.checks[0].state = 9;
        assert!(refused(check_posture(&r, None, NOW, LIM)).contains("unknown state value 9"));
        let mut r = ok();
        r.checks.push(r.checks[0].clone());
        assert!(refused(check_posture(&r, None, NOW, LIM)).contains("listed twice"));
        let mut r = ok();
        r.backups[0].last_success_unix_ms = 0;
        assert!(refused(check_posture(&r, None, NOW, LIM)).contains("no error saying why"));
        let mut r = ok();
        r.backups[0].source = "tape".into();
        assert!(refused(check_posture(&r, None, NOW, LIM)).contains("unknown source"));
        let mut r = ok();
        r.custom_checks[0].status = 4;
        assert!(refused(check_posture(&r, None, NOW, LIM)).contains("status 4"));
        let mut r = ok();
        r.custom_checks[0].reason = "a\u{7}b".into();
        assert!(refused(check_posture(&r, None, NOW, LIM)).contains("control characters"));
        assert!(refused(check_posture(&ok(), Some(4), NOW, LIM)).contains("repeats"));
    }
}
