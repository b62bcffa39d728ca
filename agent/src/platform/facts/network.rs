//! Per-interface network counters as the platform reads them (running totals since
//! boot) and the pure parser of Linux's `/proc/net/dev`. Rates are computed by
//! the agent's `collect::network`.

/// Running totals of one interface.
#[derive(Debug, Clone, PartialEq)]
pub struct NetCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    /// `None` where the source does not count drops.
    pub drops: Option<(u64, u64)>,
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
