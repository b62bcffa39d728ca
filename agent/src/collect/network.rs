//! Per-interface network counters (running totals since boot, as the collector
//! derives rates from them) and byte rates computed here between two samples.
//!
//! On Linux all counters come from one read of `/proc/net/dev` (parsed by
//! [`parse_proc_net_dev`]; sysinfo would read eight files per interface), drops
//! included; elsewhere from sysinfo, which has no drop counters (not sent).

use std::time::Instant;

use super::Reading;
use super::rates::Rates;

pub use crate::platform::facts::network::{NetCounters, parse_proc_net_dev};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_dev_captured_on_a_vm() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/proc/net-dev.debian12-vm.txt"),
        )
        .unwrap();
        let all = parse_proc_net_dev(&text);
        let names: Vec<&str> = all.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["lo", "ifb0", "ifb1", "eth0"]);
        let eth0 = &all[3];
        assert_eq!(eth0.rx_bytes, 292_440_684);
        assert_eq!(eth0.rx_packets, 9458);
        assert_eq!(eth0.tx_bytes, 518_222);
        assert_eq!(eth0.tx_packets, 5531);
        assert_eq!(eth0.drops, Some((0, 0)));
    }

    #[test]
    fn columns_land_where_the_kernel_puts_them() {
        let text =
            "Inter-| x\n face | y\n  wlan0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\nbad: x y\n";
        let n = &parse_proc_net_dev(text)[0];
        assert_eq!(
            (n.rx_bytes, n.rx_packets, n.rx_errors, n.drops),
            (1, 2, 3, Some((4, 12)))
        );
        assert_eq!((n.tx_bytes, n.tx_packets, n.tx_errors), (9, 10, 11));
        assert_eq!(parse_proc_net_dev(text).len(), 1);
    }
}
