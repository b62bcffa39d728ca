//! Per-interface network counters (running totals since boot).

use super::Reading;

pub(super) fn sample(networks: &mut sysinfo::Networks, r: &mut Reading) {
    networks.refresh(true);
    for (name, n) in networks.iter() {
        let name = name.to_string_lossy().into_owned();
        if name == "lo" || name.starts_with("lo0") {
            continue;
        }
        r.push("net.rx.bytes", name.clone(), n.total_received() as f64);
        r.push("net.tx.bytes", name.clone(), n.total_transmitted() as f64);
        r.push(
            "net.rx.packets",
            name.clone(),
            n.total_packets_received() as f64,
        );
        r.push(
            "net.tx.packets",
            name.clone(),
            n.total_packets_transmitted() as f64,
        );
        r.push(
            "net.rx.errors",
            name.clone(),
            n.total_errors_on_received() as f64,
        );
        r.push(
            "net.tx.errors",
            name.clone(),
            n.total_errors_on_transmitted() as f64,
        );
    }
}
