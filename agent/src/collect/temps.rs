//! Temperatures the OS exposes, through sysinfo's components (Linux: hwmon under
//! `/sys/class/hwmon`; Windows: the ACPI thermal zone through WMI, often absent;
//! macOS: SMC sensors). `temp.celsius{label}`; a sensor without a reading sends
//! nothing. Run at the slow cadence and never while the agent sheds work.

use sysinfo::Components;

use super::Reading;

pub(super) struct Temps {
    /// sysinfo's sensor list, found once (a scan of hwmon) and then only refreshed.
    components: Option<Components>,
}

impl Temps {
    pub(super) fn new() -> Self {
        Temps { components: None }
    }

    pub(super) fn sample(&mut self, r: &mut Reading) {
        let comps = match &mut self.components {
            Some(c) => {
                c.refresh(false);
                c
            }
            None => match Components::new_with_refreshed_list() {
                Ok(c) => self.components.insert(c),
                Err(err) => {
                    tracing::debug!(error = ?err, "cannot list temperature sensors");
                    return;
                }
            },
        };
        let readings = comps
            .iter()
            .filter_map(|c| Some((c.label().to_owned(), f64::from(c.temperature()?))));
        for (label, t) in unique_labels(readings) {
            r.push("temp.celsius", label, t);
        }
    }
}

/// Two sensors may share a label (two NVMe drives both say "nvme Composite"):
/// the second becomes "nvme Composite #2", and so on.
fn unique_labels(readings: impl Iterator<Item = (String, f64)>) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for (label, t) in readings {
        let label = if label.is_empty() {
            "sensor".to_owned()
        } else {
            label
        };
        let mut name = label.clone();
        let mut k = 1;
        while out.iter().any(|(n, _)| *n == name) {
            k += 1;
            name = format!("{label} #{k}");
        }
        out.push((name, t));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_labels_are_numbered() {
        let got = unique_labels(
            [
                ("nvme Composite", 40.0),
                ("nvme Composite", 41.0),
                ("", 30.0),
                ("nvme Composite", 42.0),
            ]
            .into_iter()
            .map(|(l, t)| (l.to_owned(), t)),
        );
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "nvme Composite",
                "nvme Composite #2",
                "sensor",
                "nvme Composite #3"
            ]
        );
    }
}
