//! CPU and memory (where the platform does not read them itself: see
//! `super::kernel`), load, uptime and process count, through sysinfo.

use super::Reading;

/// `with_cpu`, `with_memory`: also refresh and send the CPU usage, the memory and
/// swap sizes (the platform gave none).
pub(super) fn sample(
    sys: &mut sysinfo::System,
    with_cpu: bool,
    with_memory: bool,
    r: &mut Reading,
) {
    if with_cpu {
        sys.refresh_cpu_usage();
        r.push("cpu.usage.percent", "", f64::from(sys.global_cpu_usage()));
        for (i, cpu) in sys.cpus().iter().enumerate() {
            r.push(
                "cpu.core.usage.percent",
                i.to_string(),
                f64::from(cpu.usage()),
            );
        }
    }
    if with_memory {
        sys.refresh_memory();
        let total = sys.total_memory() as f64;
        let available = sys.available_memory() as f64;
        r.push("mem.total.bytes", "", total);
        r.push("mem.available.bytes", "", available);
        r.push("mem.used.bytes", "", sys.used_memory() as f64);
        if total > 0.0 {
            r.push("mem.used.percent", "", 100.0 * (total - available) / total);
        }
        r.push("swap.total.bytes", "", sys.total_swap() as f64);
        r.push("swap.used.bytes", "", sys.used_swap() as f64);
    }
    if crate::platform::HAS_LOAD_AVERAGE
        && let Ok(load) = sysinfo::System::load_average()
    {
        r.push("load.1m", "", load.one);
        r.push("load.5m", "", load.five);
        r.push("load.15m", "", load.fifteen);
    }
    if let Ok(up) = sysinfo::System::uptime() {
        r.push("system.uptime.secs", "", up as f64);
    }
    if let Ok(boot) = sysinfo::System::boot_time() {
        r.push("system.boot.time.unix", "", boot as f64);
    }
    if let Some(n) = crate::platform::process_count() {
        r.push("system.processes", "", n as f64);
    }
}
