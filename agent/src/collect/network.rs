//! Per-interface network counters (running totals since boot, as the collector
//! derives rates from them) and byte rates computed here between two samples.
//!
//! On Linux all counters come from one read of `/proc/net/dev` (parsed by
//! [`parse_proc_net_dev`]; sysinfo would read eight files per interface), drops
//! included; elsewhere from sysinfo, which has no drop counters (not sent).

use std::time::Instant;

use super::Reading;
use super::rates::Rates;

pub(crate) use crate::platform::facts::network::NetCounters;

fn is_loopback(name: &str) -> bool {
    name == "lo" || name.starts_with("lo0")
}

pub(super) struct NetSampler {
    networks: sysinfo::Networks,
    rates: Rates,
}

impl NetSampler {
    pub(super) fn new(networks: sysinfo::Networks) -> Self {
        NetSampler {
            networks,
            rates: Rates::new(),
        }
    }

    pub(super) fn sample(&mut self, r: &mut Reading) {
        let now = Instant::now();
        let all = crate::platform::net_counters().unwrap_or_else(|| {
            self.networks.refresh(true);
            self.networks
                .iter()
                .map(|(name, n)| NetCounters {
                    name: name.to_string_lossy().into_owned(),
                    rx_bytes: n.total_received(),
                    tx_bytes: n.total_transmitted(),
                    rx_packets: n.total_packets_received(),
                    tx_packets: n.total_packets_transmitted(),
                    rx_errors: n.total_errors_on_received(),
                    tx_errors: n.total_errors_on_transmitted(),
                    drops: None,
                })
                .collect()
        });
        let mut bytes = Vec::with_capacity(all.len());
        for n in all.into_iter().filter(|n| !is_loopback(&n.name)) {
            let name = n.name;
            r.push("net.rx.bytes", name.clone(), n.rx_bytes as f64);
            r.push("net.tx.bytes", name.clone(), n.tx_bytes as f64);
            r.push("net.rx.packets", name.clone(), n.rx_packets as f64);
            r.push("net.tx.packets", name.clone(), n.tx_packets as f64);
            r.push("net.rx.errors", name.clone(), n.rx_errors as f64);
            r.push("net.tx.errors", name.clone(), n.tx_errors as f64);
            if let Some((rx, tx)) = n.drops {
                r.push("net.rx.drops", name.clone(), rx as f64);
                r.push("net.tx.drops", name.clone(), tx as f64);
            }
            bytes.push((name, vec![n.rx_bytes, n.tx_bytes]));
        }
        for (name, rates) in self.rates.update(now, bytes) {
            if let [Some(rx), Some(tx)] = rates[..] {
                r.push("net.rx.bytes_per_sec", name.clone(), rx);
                r.push("net.tx.bytes_per_sec", name, tx);
            }
        }
    }
}
