//! The Linux packages, installed for real: `deploy/linux/build-packages.sh` builds
//! the .deb and .rpm from this build's binaries; the .deb is installed with
//! `dpkg -i` (as root) with `TANDEM_TOKEN` in the environment, the installed agent
//! is started the way its unit's `ExecStart` says (systemd is not PID 1 in CI) and
//! enrolls with and reports to a collector started from the build; a higher
//! revision is installed over it (same device, no lost seq, conffile edit kept);
//! remove and purge leave nothing of Tandem on disk. The collector's .deb gets its
//! system user and a 0700 data dir with 0600 keys and database. The .rpm is read with
//! `rpm -qlp` / `rpm -qp --scripts` and installed with `rpm -i` into a scratch root.
//!
//! Needs root (dpkg installs into /) and systemd-analyze; without them it fails,
//! saying which is missing ([`crate::msi::skip_or_fail`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_tests::{Site, bin, wait_for};
use tokio::process::{Child, Command};

const AGENT_STATE: &str = "/var/lib/tandem/agent";
const AGENT_UNIT: &str = "/usr/lib/systemd/system/tandem-agent.service";
const COLLECTOR_UNIT: &str = "/usr/lib/systemd/system/tandem-collector.service";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a command; returns (success, stdout + stderr).
async fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().await.expect("spawn");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

async fn run_ok(cmd: &mut Command) -> String {
    let (ok, text) = run(cmd).await;
    assert!(ok, "{cmd:?} failed:\n{text}");
    text
}

/// Builds the packages of this build's binaries into `out` with revision `release`.
async fn build_packages(out: &Path, release: u32) -> Vec<PathBuf> {
    let text = run_ok(
        Command::new("bash")
            .arg(repo().join("deploy/linux/build-packages.sh"))
            .arg("--out")
            .arg(out)
            .arg("--agent")
            .arg(bin("tandem-agent"))
            .arg("--collector")
            .arg(bin("tandem-collector"))
            .args(["--release", &release.to_string(), "--fast"]),
    )
    .await;
    text.lines()
        .filter(|l| l.ends_with(".deb") || l.ends_with(".rpm"))
        .map(PathBuf::from)
        .collect()
}

fn pick<'a>(pkgs: &'a [PathBuf], prefix: &str, ext: &str) -> &'a Path {
    pkgs.iter()
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(ext)
        })
        .unwrap_or_else(|| panic!("no {prefix}*{ext} in {pkgs:?}"))
}

/// The unit's ExecStart, split into words (no quoting in our units).
fn exec_start(unit: &str) -> Vec<String> {
    let text = std::fs::read_to_string(unit).unwrap_or_else(|e| panic!("{unit}: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap_or_else(|| panic!("no ExecStart in {unit}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Starts the installed agent as its unit does (ExecStart, UMask=0077).
fn start_unit_agent(log: &Path) -> Child {
    let argv = exec_start(AGENT_UNIT);
    let logf = std::fs::File::create(log).unwrap();
    Command::new("sh")
        .arg("-c")
        .arg("umask 077; exec \"$@\"")
        .arg("sh")
        .args(&argv)
        .env("RUST_LOG", "info")
        .env_remove("TANDEM_ENROLL_TOKEN")
        .env_remove("TANDEM_TOKEN")
        .stderr(logf)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn stop(mut child: Child) -> bool {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
    }
    matches!(tokio::time::timeout(Duration::from_secs(30), child.wait()).await, Ok(Ok(s)) if s.success())
}

fn mode(path: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .permissions()
        .mode()
        & 0o777
}

fn device_of(enrollment: &str) -> Option<String> {
    enrollment
        .lines()
        .find_map(|l| l.strip_prefix("device_id = "))
        .map(|v| v.trim_matches('"').to_owned())
}

/// Every path of ours still on disk after a purge.
fn leftovers() -> Vec<String> {
    let mut found = Vec::new();
    for p in [
        "/usr/bin/tandem-agent",
        "/usr/bin/tandem-collector",
        AGENT_UNIT,
        COLLECTOR_UNIT,
        "/etc/tandem",
        "/var/lib/tandem",
    ] {
        if Path::new(p).exists() {
            found.push(p.to_owned());
        }
    }
    for db in ["/etc/passwd", "/etc/group"] {
        let text = std::fs::read_to_string(db).unwrap_or_default();
        if text.lines().any(|l| l.starts_with("tandem:")) {
            found.push(format!("tandem in {db}"));
        }
    }
    found
}

async fn dpkg_status(pkg: &str) -> String {
    let (_, text) =
        run(Command::new("dpkg-query").args(["-W", "-f=${Status} ${Version}", pkg])).await;
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deb_install_enroll_upgrade_purge_and_rpm_in_a_scratch_root() {
    crate::crypto();
    let _turn = crate::HOST_PACKAGES.lock().await;
    if !is_root() {
        crate::msi::skip_or_fail(
            "deb_install_enroll_upgrade_purge",
            "needs root (dpkg -i installs into /)",
        );
        return;
    }
    // A previous run that died half-way must not decide this one.
    let _ = run(Command::new("dpkg").args(["--purge", "tandem-agent", "tandem-collector"])).await;
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    if passwd
        .lines()
        .any(|l| l.starts_with("tandem:") && l.contains(":/var/lib/tandem/collector:"))
    {
        let _ = run(Command::new("userdel").arg("tandem")).await;
    }
    assert_eq!(
        leftovers(),
        Vec::<String>::new(),
        "Tandem files left from before"
    );

    let work = tempfile::tempdir().unwrap();
    let v1 = build_packages(&work.path().join("r1"), 1).await;
    let agent_deb = pick(&v1, "tandem-agent_", ".deb").to_owned();

    let site = Site::new().await.unwrap();
    let collector = site
        .start_collector("sample_interval_secs = 1")
        .await
        .unwrap();
    site.cli_ok(&["tenant", "create", "acme"]).await;
    let token = site
        .cli_ok(&[
            "token",
            "create",
            "--address",
            &collector.enroll_addr.to_string(),
            "--tenant",
            "acme",
        ])
        .await
        .trim()
        .to_owned();

    // Unattended install: the token comes from the environment.
    run_ok(
        Command::new("dpkg")
            .arg("-i")
            .arg(&agent_deb)
            .env("TANDEM_TOKEN", &token),
    )
    .await;
    assert!(
        dpkg_status("tandem-agent")
            .await
            .starts_with("install ok installed 0.1.0-1")
    );
    assert_eq!(mode("/etc/tandem/enroll.token"), 0o600, "token file mode");
    assert_eq!(mode(AGENT_STATE), 0o700, "state dir mode");
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let (ok, text) = run(Command::new("systemd-analyze").args(["verify", AGENT_UNIT])).await;
        assert!(
            ok && text.trim().is_empty(),
            "systemd-analyze verify:\n{text}"
        );
    } else {
        crate::msi::skip_or_fail(
            "systemd-analyze verify of the agent unit",
            "systemd-analyze is not installed",
        );
    }

    let log = work.path().join("agent.log");
    let agent = start_unit_agent(&log);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let enrollment = Path::new(AGENT_STATE).join("enrollment.toml");
    wait_for(
        Duration::from_secs(30),
        "the installed agent to enroll",
        || {
            let e = enrollment.exists();
            async move { e }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", read_log()));
    let device = device_of(&std::fs::read_to_string(&enrollment).unwrap()).expect("device id");
    wait_for(
        Duration::from_secs(30),
        "batches from the installed agent",
        || {
            let n = site.stored_seqs(&device).len();
            async move { n >= 3 }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", read_log()));
    assert!(
        !Path::new("/etc/tandem/enroll.token").exists(),
        "the used token file is removed"
    );
    assert_eq!(mode(&format!("{AGENT_STATE}/agent.key")), 0o600, "key mode");

    // The admin edits the config (a conffile); then a higher revision arrives
    // while the agent runs, and is restarted as `systemctl try-restart` would.
    let mut conf = std::fs::read_to_string("/etc/tandem/agent.toml").unwrap();
    conf.push_str("# local edit: kept across upgrades\n");
    std::fs::write("/etc/tandem/agent.toml", &conf).unwrap();
    let v2 = build_packages(&work.path().join("r2"), 2).await;
    run_ok(
        Command::new("dpkg")
            .args(["--force-confold", "-i"])
            .arg(pick(&v2, "tandem-agent_", ".deb")),
    )
    .await;
    assert!(
        dpkg_status("tandem-agent")
            .await
            .starts_with("install ok installed 0.1.0-2")
    );
    assert!(
        stop(agent).await,
        "the agent stops cleanly:\n{}",
        read_log()
    );
    let last_before = std::fs::read_to_string(format!("{AGENT_STATE}/last_seq"))
        .unwrap()
        .trim()
        .parse::<u64>()
        .unwrap();
    let agent = start_unit_agent(&work.path().join("agent2.log"));
    wait_for(Duration::from_secs(30), "batches after the upgrade", || {
        let max = site.stored_seqs(&device).last().copied().unwrap_or(0);
        async move { max >= last_before + 2 }
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nagent log:\n{}",
            std::fs::read_to_string(work.path().join("agent2.log")).unwrap_or_default()
        )
    });
    assert_eq!(
        device_of(&std::fs::read_to_string(&enrollment).unwrap()).as_deref(),
        Some(device.as_str()),
        "the upgrade keeps the device identity"
    );
    let seqs = site.stored_seqs(&device);
    let expected: Vec<u64> = (1..=*seqs.last().unwrap()).collect();
    assert_eq!(seqs, expected, "no seq lost across the upgrade");
    assert!(
        std::fs::read_to_string("/etc/tandem/agent.toml")
            .unwrap()
            .contains("local edit"),
        "the conffile edit survives the upgrade"
    );
    assert!(stop(agent).await);

    // Remove keeps config and state; purge removes everything.
    run_ok(Command::new("dpkg").args(["-r", "tandem-agent"])).await;
    assert!(!Path::new("/usr/bin/tandem-agent").exists());
    assert!(
        Path::new("/etc/tandem/agent.toml").exists(),
        "remove keeps conffiles"
    );
    assert!(
        Path::new(&format!("{AGENT_STATE}/agent.key")).exists(),
        "remove keeps identity"
    );
    run_ok(Command::new("dpkg").args(["--purge", "tandem-agent"])).await;
    assert_eq!(leftovers(), Vec::<String>::new(), "purge leaves nothing");

    // The collector's package: its own user, a private data dir, CA made.
    run_ok(
        Command::new("dpkg")
            .arg("-i")
            .arg(pick(&v1, "tandem-collector_", ".deb")),
    )
    .await;
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("tandem:"))
        .expect("the tandem system user");
    assert!(user.ends_with(":/usr/sbin/nologin"), "{user}");
    assert_eq!(mode("/var/lib/tandem/collector"), 0o700);
    let (_, owner) =
        run(Command::new("stat").args(["-c", "%U", "/var/lib/tandem/collector"])).await;
    assert_eq!(owner.trim(), "tandem");
    let (_, keys) = run(Command::new("find").args([
        "/var/lib/tandem/collector",
        "-type",
        "f",
        "-name",
        "*.key",
    ]))
    .await;
    assert!(
        !keys.trim().is_empty(),
        "pki init made the CA and server keys"
    );
    for k in keys.lines() {
        assert_eq!(mode(k), 0o600, "{k}");
    }
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let (ok, text) =
            run(Command::new("systemd-analyze").args(["verify", COLLECTOR_UNIT])).await;
        assert!(
            ok && text.trim().is_empty(),
            "systemd-analyze verify:\n{text}"
        );
    }
    // The installed collector, as its unit runs it (User=tandem, UMask=0077), makes
    // a 0600 database; the config is a copy with loopback ports.
    let conf = std::fs::read_to_string("/etc/tandem/collector.toml")
        .unwrap()
        .replace("0.0.0.0:4443", "127.0.0.1:0")
        .replace("0.0.0.0:4444", "127.0.0.1:0")
        .replace("rules_dir = \"rules\"", "rules_dir = \"/etc/tandem/rules\"");
    let conf_path = work.path().join("collector.toml");
    std::fs::write(&conf_path, conf).unwrap();
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut argv = exec_start(COLLECTOR_UNIT);
    let at = argv.iter().position(|a| a == "--config").unwrap() + 1;
    argv[at] = conf_path.display().to_string();
    // setpriv execs (runuser would fork and leave the collector behind on a kill).
    let mut served = Command::new("setpriv")
        .args([
            "--reuid=tandem",
            "--regid=tandem",
            "--init-groups",
            "sh",
            "-c",
            "umask 077; exec \"$@\"",
            "sh",
        ])
        .args(&argv)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(work.path().join("installed-collector.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Its first line on stdout names the listeners: it is serving.
    let stdout = served.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the installed collector starts within 30 s")
        .unwrap();
    assert!(
        first.as_deref().is_some_and(|l| l.contains("telemetry=")),
        "{first:?}\n{}",
        std::fs::read_to_string(work.path().join("installed-collector.log")).unwrap_or_default()
    );
    let db = "/var/lib/tandem/collector/tandem.db";
    assert_eq!(mode(db), 0o600, "database mode");
    if let Some(pid) = served.id() {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
    }
    let status = tokio::time::timeout(Duration::from_secs(30), served.wait()).await;
    assert!(
        matches!(status, Ok(Ok(s)) if s.success()),
        "the installed collector stops cleanly on SIGTERM ({status:?}):\n{}",
        std::fs::read_to_string(work.path().join("installed-collector.log")).unwrap_or_default()
    );
    run_ok(Command::new("dpkg").args(["--purge", "tandem-collector"])).await;
    assert_eq!(leftovers(), Vec::<String>::new(), "purge leaves nothing");

    // The .rpm: its files and scripts, then an install into a scratch root
    // (--nodeps: the scratch root has no libc; --noscripts: nor a shell to run them).
    let rpm = pick(&v1, "tandem-agent-", ".rpm");
    let files = run_ok(Command::new("rpm").arg("-qlp").arg(rpm)).await;
    for f in [
        "/usr/bin/tandem-agent",
        AGENT_UNIT,
        "/etc/tandem/agent.toml",
    ] {
        assert!(
            files.lines().any(|l| l == f),
            "{f} missing from the rpm:\n{files}"
        );
    }
    let scripts = run_ok(Command::new("rpm").args(["-qp", "--scripts"]).arg(rpm)).await;
    for want in [
        "postinstall",
        "TANDEM_TOKEN",
        "preuninstall",
        "tandem_agent_stop",
    ] {
        assert!(
            scripts.contains(want),
            "{want} missing from the scripts:\n{scripts}"
        );
    }
    let conf = run_ok(Command::new("rpm").args(["-qp", "--configfiles"]).arg(rpm)).await;
    assert!(
        conf.contains("/etc/tandem/agent.toml"),
        "config(noreplace): {conf}"
    );
    let crpm = pick(&v1, "tandem-collector-", ".rpm");
    let cscripts = run_ok(Command::new("rpm").args(["-qp", "--scripts"]).arg(crpm)).await;
    assert!(cscripts.contains("useradd --system"), "{cscripts}");
    let scratch = work.path().join("rpmroot");
    std::fs::create_dir_all(&scratch).unwrap();
    run_ok(
        Command::new("rpm")
            .arg("--root")
            .arg(&scratch)
            .arg("--initdb"),
    )
    .await;
    run_ok(
        Command::new("rpm")
            .arg("--root")
            .arg(&scratch)
            .args(["-i", "--nodeps", "--noscripts"])
            .arg(rpm)
            .arg(crpm),
    )
    .await;
    let listed = run_ok(
        Command::new("rpm")
            .arg("--root")
            .arg(&scratch)
            .args(["-qa"]),
    )
    .await;
    assert!(
        listed.contains("tandem-agent-0.1.0-1") && listed.contains("tandem-collector-0.1.0-1"),
        "{listed}"
    );
    assert!(scratch.join("usr/bin/tandem-agent").exists());
    assert!(scratch.join("etc/tandem/rules/system.toml").exists());
    let ok = collector.terminate().await;
    assert!(
        ok,
        "collector exit:\n{}",
        std::fs::read_to_string(site.dir.path().join("collector.log")).unwrap_or_default()
    );
}
