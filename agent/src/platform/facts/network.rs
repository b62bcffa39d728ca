//! Per-interface network counters as the platform reads them (running totals since
//! boot) and the pure parser of Linux's `/proc/net/dev`. Rates are computed by
//! the agent's `collect::network`.

/// Running totals of one interface.
#[derive(Debug, Clone, PartialEq)]
pub struct NetCounters {
    pub(crate) name: String,
    pub(crate) rx_bytes: u64,
    pub(crate) tx_bytes: u64,
    pub(crate) rx_packets: u64,
    pub(crate) tx_packets: u64,
    pub(crate) rx_errors: u64,
    pub(crate) tx_errors: u64,
    /// `None` where the source does not count drops.
    pub(crate) drops: Option<(u64, u64)>,
}

/// Parses `/proc/net/dev`: two header lines, then `name: rx_bytes rx_packets rx_errs
/// rx_drop fifo frame compressed multicast tx_bytes tx_packets tx_errs tx_drop …`.
/// Lines that do not parse are skipped.
pub fn parse_proc_net_dev(text: &str) -> Vec<NetCounters> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            if v.len() < 12 {
                return None;
            }
            Some(NetCounters {
                name: name.trim().to_owned(),
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                drops: Some((v[3], v[11])),
            })
        })
        .collect()
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
