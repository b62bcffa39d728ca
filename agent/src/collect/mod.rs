//! Health metrics from the operating system, sampled through sysinfo.
//!
//! One [`Sampler`] owns the sysinfo handles (they keep the previous counters that CPU
//! usage is computed from); each call to [`Sampler::sample`] returns one [`Reading`]:
//! a timestamp and a list of series with their values. Counters (network bytes)
//! are sent as running totals; rates are derived on the collector. Each concern is a
//! submodule, and one that cannot read its source contributes nothing rather than
//! failing the whole sample.

pub(crate) mod battery;
pub(crate) mod disks;
pub(crate) mod kernel;
pub(crate) mod network;
mod processes;
mod rates;
pub mod services;
mod system;
mod temps;

use std::time::{Duration, Instant};

use tandem_proto::v1::{MetricBatch, Sample, SeriesKey};

/// One instant's values.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Reading {
    pub(crate) time_unix_ms: i64,
    pub values: Vec<Value>,
}

/// One series' value in a reading.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Value {
    pub(crate) name: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) dimension: String,
    pub(crate) value: f64,
}

impl Reading {
    /// Adds a value; a non-finite one is left out (never sent as 0). The dimension is
    /// made acceptable to the collector: control characters become `?` and it is cut
    /// to [`tandem_proto::MAX_LABEL_BYTES`] at a character boundary (process names
    /// and hardware labels come from outside the agent).
    pub(crate) fn push(&mut self, name: &'static str, dimension: impl Into<String>, value: f64) {
        // Every name the agent sends is in the shared catalogue (rules are checked
        // against it); a debug build, and so every test, stops on one that is not.
        debug_assert!(
            tandem_proto::metrics::lookup(name).is_some(),
            "metric {name:?} is not in tandem_proto::metrics::CATALOGUE"
        );
        if value.is_finite() {
            self.values.push(Value {
                name,
                dimension: clean_dimension(dimension.into()),
                value,
            });
        }
    }

    /// Adds a value from outside the collectors (the agent's own metrics).
    pub fn push_value(&mut self, name: &'static str, dimension: impl Into<String>, value: f64) {
        self.push(name, dimension, value);
    }

    /// Keeps the first value of each (name, dimension): the collector refuses a batch
    /// that names a series twice, and one odd source must not cost the whole sample.
    fn dedupe(&mut self) {
        let mut seen = std::collections::HashSet::with_capacity(self.values.len());
        self.values
            .retain(|v| seen.insert((v.name, v.dimension.clone())));
    }

    /// The reading as a batch with sequence number `seq`.
    pub(crate) fn to_batch(&self, seq: u64) -> MetricBatch {
        MetricBatch {
            seq,
            series: self
                .values
                .iter()
                .map(|v| SeriesKey {
                    name: v.name.to_owned(),
                    dimension: v.dimension.clone(),
                })
                .collect(),
            samples: vec![Sample {
                time_unix_ms: self.time_unix_ms,
                values: self.values.iter().map(|v| v.value).collect(),
            }],
        }
    }
}

fn clean_dimension(mut d: String) -> String {
    if d.chars().any(char::is_control) {
        d = d
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
    }
    if d.len() > tandem_proto::MAX_LABEL_BYTES {
        let mut end = tandem_proto::MAX_LABEL_BYTES;
        while !d.is_char_boundary(end) {
            end -= 1;
        }
        d.truncate(end);
    }
    d
}

/// Errors creating the sampler.
#[derive(Debug, thiserror::Error)]
#[error("cannot read system information: {0}")]
pub struct SamplerError(String);

/// How often the optional, costlier collectors run: the top-process scan,
/// temperatures and batteries.
pub(crate) const SLOW_EVERY: Duration = Duration::from_secs(60);

/// Owns the sysinfo state between samples.
pub struct Sampler {
    sys: sysinfo::System,
    disks: disks::DiskSampler,
    kernel: kernel::KernelSampler,
    networks: network::NetSampler,
    services: services::Services,
    processes: processes::Processes,
    temps: temps::Temps,
    /// When the slow collectors last ran; `None`: at the next sample.
    slow_last: Option<Instant>,
    /// The agent is over its budget: the slow collectors are skipped.
    shedding: bool,
}

impl Sampler {
    pub fn new() -> Result<Self, SamplerError> {
        let mut sys = sysinfo::System::new().map_err(|e| SamplerError(format!("{e:?}")))?;
        // CPU usage is a difference between two refreshes: take the first now. (On
        // Linux the kernel sampler reads /proc/stat itself and this is never used
        // again: one read at start.)
        sys.refresh_cpu_usage();
        let disks = sysinfo::Disks::new().map_err(|e| SamplerError(format!("{e:?}")))?;
        let networks = sysinfo::Networks::new().map_err(|e| SamplerError(format!("{e:?}")))?;
        Ok(Self {
            sys,
            disks: disks::DiskSampler::new(disks),
            kernel: kernel::KernelSampler::new(),
            networks: network::NetSampler::new(networks),
            services: services::Services::new(),
            processes: processes::Processes::new(),
            temps: temps::Temps::new(),
            slow_last: None,
            shedding: false,
        })
    }

    /// The services to report as `service.up` (from the config; on every reload).
    pub fn set_services(&mut self, names: &[String]) {
        self.services.set_wanted(names);
    }

    /// Sheds (or resumes) optional work: the slow collectors stop and the process
    /// table is freed; service checks slow down (see `crate::budget`).
    pub(crate) fn set_shedding(&mut self, shedding: bool) {
        if shedding && !self.shedding {
            self.processes.forget();
        }
        self.shedding = shedding;
        self.services.set_shedding(shedding);
    }

    /// Waits (up to `timeout`) for the service check with the current list to answer
    /// (`collect --once`). Blocking.
    pub fn settle_services(&self, timeout: Duration) {
        self.services.settle(timeout);
    }

    /// Makes the next sample run the slow collectors whatever their cadence
    /// (`collect --once`).
    pub fn run_slow_next(&mut self) {
        self.slow_last = None;
    }

    /// Takes one reading. Blocking (reads /proc and friends): call it off the async
    /// runtime.
    pub fn sample(&mut self) -> Reading {
        let time_unix_ms = tandem_proto::util::now_ms();
        let mut r = Reading {
            time_unix_ms,
            values: Vec::with_capacity(128),
        };
        let covered = self
            .kernel
            .sample(crate::platform::kernel(), Instant::now(), &mut r);
        system::sample(&mut self.sys, !covered.cpu, !covered.memory, &mut r);
        self.disks.sample(&mut r);
        self.networks.sample(&mut r);
        self.services.sample(&mut r);
        let slow_due = self.slow_last.is_none_or(|t| t.elapsed() >= SLOW_EVERY);
        if slow_due && !self.shedding {
            self.slow_last = Some(Instant::now());
            self.processes.sample(&mut r);
            self.temps.sample(&mut r);
            for b in crate::platform::batteries() {
                b.push(&mut r);
            }
        }
        r.dedupe();
        r
    }
}

/// Boot time of this machine, seconds since the epoch (0 if unknown).
pub(crate) fn boot_time_unix() -> i64 {
    sysinfo::System::boot_time().map(|t| t as i64).unwrap_or(0)
}

/// "Debian GNU/Linux 12 (bookworm)" and the like.
pub(crate) fn os_version() -> String {
    sysinfo::System::long_os_version().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_are_cleaned_and_series_deduplicated() {
        let mut r = Reading {
            time_unix_ms: 1,
            values: Vec::new(),
        };
        r.push("temp.celsius", "x\ny", 1.0);
        r.push("temp.celsius", "x?y", 2.0);
        r.push("temp.celsius", "é".repeat(200), 3.0);
        r.push("load.1m", "", f64::NAN);
        r.dedupe();
        assert_eq!(r.values.len(), 2);
        assert_eq!(r.values[0].dimension, "x?y");
        assert_eq!(r.values[0].value, 1.0);
        assert_eq!(r.values[1].dimension.len(), 256);
        let b = r.to_batch(7);
        assert_eq!(b.series.len(), b.samples[0].values.len());
    }

    /// Shedding skips the slow collectors (here: the process scan, which every
    /// machine has); resuming runs them again.
    #[test]
    fn shedding_skips_the_slow_collectors() {
        let mut s = Sampler::new().unwrap();
        s.set_shedding(true);
        let r = s.sample();
        assert!(!r.values.iter().any(|v| v.name.starts_with("process.top.")));
        assert!(r.values.iter().any(|v| v.name == "mem.total.bytes"));
        s.set_shedding(false);
        s.run_slow_next();
        let r = s.sample();
        assert!(r.values.iter().any(|v| v.name == "process.top.mem.bytes"));
        // Not again before SLOW_EVERY.
        let r = s.sample();
        assert!(!r.values.iter().any(|v| v.name.starts_with("process.top.")));
    }
}
