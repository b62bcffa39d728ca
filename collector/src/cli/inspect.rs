//! `inspect`: devices, their patch status, inventory, posture and latest values.

use std::path::Path;

use super::{age, fmt_ms, now_ms, open_store_read, print_json, print_out, require_device};
use crate::store;
use crate::store::console_query::ConsoleQuery;
use crate::store::query::MetricQuery;

/// `inspect`: prints every device (or one) with its latest values; a closed pipe
/// (`inspect | head`) is not an error.
pub fn inspect(
    data_dir: &Path,
    device: Option<&str>,
    json: bool,
    software: bool,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match inspect_to(&mut out, data_dir, device, json, software) {
        // `inspect | head` closing the pipe early is not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        r => r,
    }
}

fn inspect_to(
    w: &mut impl std::io::Write,
    data_dir: &Path,
    device: Option<&str>,
    json: bool,
    with_software: bool,
) -> anyhow::Result<()> {
    let db = open_store_read(data_dir)?;
    if let Some(id) = device {
        require_device(&db, id)?;
    }
    let devices = db.all_devices()?;
    let metrics = db.metric_query(store::compact::StorageConfig::default());
    let mut out = Vec::new();
    for d in devices
        .into_iter()
        .filter(|d| device.is_none_or(|id| id == d.id))
    {
        let latest: Vec<_> = metrics
            .latest_values(&d.id)?
            .into_iter()
            .map(|l| (l.series.name, l.series.dimension, l.ts_ms, l.value))
            .collect();
        let patches = db.patch_status(&d.id)?;
        let inventory = db.inventory(&d.id)?;
        let posture = db.device_posture(&d.id, now_ms())?;
        let software = if with_software {
            Some(db.software(&d.id)?)
        } else {
            None
        };
        out.push((d, latest, patches, inventory, software, posture));
    }
    let now = now_ms();
    if json {
        let v: Vec<_> = out
            .iter()
            .map(|(d, latest, patches, inventory, software, posture)| {
                let mut v = serde_json::json!({
                    "device": d,
                    "patches": patches,
                    "inventory": inventory,
                    "posture": posture,
                    "latest": latest.iter().map(|(n, dim, ts, v)| serde_json::json!({"name": n, "dimension": dim, "ts_ms": ts, "value": v})).collect::<Vec<_>>(),
                });
                if let Some(sw) = software {
                    v["software"] = serde_json::json!(sw);
                }
                v
            })
            .collect();
        writeln!(w, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    if out.is_empty() {
        writeln!(w, "no devices yet")?;
    }
    for (d, latest, patches, inventory, software, posture) in out {
        writeln!(
            w,
            "device {} tenant {} host {} ({} {}) agent {} acked_seq {}",
            d.id, d.tenant, d.hostname, d.os_family, d.os_version, d.agent_version, d.acked_seq
        )?;
        writeln!(w, "  {}", patch_line(patches.as_ref(), now))?;
        writeln!(w, "  {}", inventory_line(inventory.as_ref()))?;
        for line in store::posture::lines(posture.as_ref()) {
            writeln!(w, "  {line}")?;
        }
        for s in software.iter().flatten() {
            if s.publisher.is_empty() {
                writeln!(w, "    {} {}", s.name, s.version)?;
            } else {
                writeln!(w, "    {} {} ({})", s.name, s.version, s.publisher)?;
            }
        }
        for (name, dim, _ts, v) in latest {
            let unit = tandem_proto::metrics::lookup(&name).map_or("", |m| m.unit);
            let label = if dim.is_empty() {
                name
            } else {
                format!("{name}{{{dim}}}")
            };
            writeln!(w, "  {label:<40} {}", super::format_value(v, unit))?;
        }
    }
    Ok(())
}

/// The patch-status line of `inspect`.
fn patch_line(p: Option<&store::query::PatchStatus>, now: i64) -> String {
    let Some(p) = p else {
        return "patches: no report yet".into();
    };
    let checked = format!("checked {} via {}", fmt_ms(p.time_ms), p.source);
    if !p.error.is_empty() {
        return format!(
            "patches: UNKNOWN, the source could not be read: {} ({checked})",
            p.error
        );
    }
    let mut s = format!("patches: {} pending, {} security", p.pending, p.security);
    if let Some(oldest) = p.oldest_security_first_seen_ms {
        s += &format!(" (oldest pending {})", age(oldest, now));
    }
    if p.reboot_required {
        if p.reboot_required_since_ms > 0 {
            s += &format!(
                "; reboot required since {} ({})",
                fmt_ms(p.reboot_required_since_ms),
                age(p.reboot_required_since_ms, now)
            );
        } else {
            s += "; reboot required";
        }
    }
    if p.last_install_ms > 0 {
        s += &format!("; last install {}", fmt_ms(p.last_install_ms));
    }
    format!("{s} ({checked})")
}

/// The inventory line of `inspect`.
fn inventory_line(i: Option<&store::query::InventoryRow>) -> String {
    let Some(i) = i else {
        return "inventory: none yet".into();
    };
    let mut s = format!("inventory: {} {}", i.os_name, i.os_version);
    if !i.os_build.is_empty() {
        s += &format!(" (build {})", i.os_build);
    }
    s += &format!(", kernel {} {}", i.kernel, i.arch);
    let hw = [i.hw_vendor.as_str(), i.hw_model.as_str()]
        .iter()
        .filter(|x| !x.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    if !hw.is_empty() {
        s += &format!("; {hw}");
    }
    if !i.hw_serial.is_empty() {
        s += &format!(" serial {}", i.hw_serial);
    }
    s += &format!(
        "; {} x{}, {:.1} GiB RAM",
        i.cpu_model,
        i.cpu_cores,
        i.memory_bytes as f64 / (1u64 << 30) as f64
    );
    if i.software_error.is_empty() {
        s += &format!("; {} programs ({})", i.software_count, i.software_source);
    } else {
        s += &format!(
            "; software UNKNOWN, {} could not be read: {}",
            i.software_source, i.software_error
        );
    }
    format!("{s} (as of {})", fmt_ms(i.time_ms))
}

/// `posture`: pass / fail / unknown counts per tenant (or of one tenant).
pub fn posture(data_dir: &Path, tenant: Option<&str>, json: bool) -> anyhow::Result<()> {
    let db = store::Db::open_read_only(&data_dir.join(store::DB_FILE))?;
    let all = db.tenant_posture(tenant, now_ms())?;
    if let Some(t) = tenant
        && all.is_empty()
    {
        anyhow::bail!("no tenant {t:?} (see `tandem-collector tenant list`)");
    }
    if json {
        print_json(&all)?;
    } else {
        print_out(&store::posture::summary_text(&all))?;
    }
    Ok(())
}
