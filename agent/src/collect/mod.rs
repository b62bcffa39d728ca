//! Health metrics from the operating system, sampled through sysinfo.
//!
//! One [`Sampler`] owns the sysinfo handles (they keep the previous counters that CPU
//! usage is computed from); each call to [`Sampler::sample`] returns one [`Reading`]:
//! a timestamp and a list of series with their values. Counters (network bytes)
//! are sent as running totals; rates are derived on the collector. Each concern is a
//! submodule, and one that cannot read its source contributes nothing rather than
//! failing the whole sample.

mod disks;
mod network;
pub mod services;
mod system;

use std::time::{SystemTime, UNIX_EPOCH};

use tandem_proto::v1::{MetricBatch, Sample, SeriesKey};

/// One instant's values.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reading {
    pub time_unix_ms: i64,
    pub values: Vec<Value>,
}

/// One series' value in a reading.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Value {
    pub name: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dimension: String,
    pub value: f64,
}

impl Reading {
    fn push(&mut self, name: &'static str, dimension: impl Into<String>, value: f64) {
        if value.is_finite() {
            self.values.push(Value {
                name,
                dimension: dimension.into(),
                value,
            });
        }
    }

    /// The reading as a batch with sequence number `seq`.
    pub fn to_batch(&self, seq: u64) -> MetricBatch {
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

/// Errors creating the sampler.
#[derive(Debug, thiserror::Error)]
#[error("cannot read system information: {0}")]
pub struct SamplerError(String);

/// Owns the sysinfo state between samples.
pub struct Sampler {
    sys: sysinfo::System,
    disks: sysinfo::Disks,
    networks: sysinfo::Networks,
    services: services::Services,
}

impl Sampler {
    pub fn new() -> Result<Self, SamplerError> {
        let mut sys = sysinfo::System::new().map_err(|e| SamplerError(format!("{e:?}")))?;
        // CPU usage is a difference between two refreshes: take the first now.
        sys.refresh_cpu_usage();
        let disks = sysinfo::Disks::new().map_err(|e| SamplerError(format!("{e:?}")))?;
        let networks = sysinfo::Networks::new().map_err(|e| SamplerError(format!("{e:?}")))?;
        Ok(Self {
            sys,
            disks,
            networks,
            services: services::Services::new(),
        })
    }

    /// Takes one reading. Blocking (reads /proc and friends): call it off the async
    /// runtime.
    pub fn sample(&mut self) -> Reading {
        let time_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut r = Reading {
            time_unix_ms,
            values: Vec::with_capacity(64),
        };
        system::sample(&mut self.sys, &mut r);
        disks::sample(&mut self.disks, &mut r);
        network::sample(&mut self.networks, &mut r);
        self.services.sample(&mut r);
        r
    }
}

/// Boot time of this machine, seconds since the epoch (0 if unknown).
pub fn boot_time_unix() -> i64 {
    sysinfo::System::boot_time().map(|t| t as i64).unwrap_or(0)
}

/// "Debian GNU/Linux 12 (bookworm)" and the like.
pub fn os_version() -> String {
    sysinfo::System::long_os_version().unwrap_or_default()
}
