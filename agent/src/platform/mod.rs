//! The platform facade: the same signatures on every OS; `#[cfg]` appears only on the
//! `mod` lines below, never in collection logic.
//!
//! A leaf: nothing here uses a module of the crate outside `platform`. The facade
//! returns its own value types (`facts`), parsed by the pure functions there, and
//! runs external tools through `tool`; the callers (`collect`, `patches`,
//! `inventory`, `posture`, `backup`, `budget`) turn the values into metrics and
//! reports. The OS service entry, which must call the agent's `run`, is in
//! the crate's `service` module, not here.
//!
//! `write_private_file` (the agent's private key) is shared by every unix in
//! `unix_files.rs`, and `isolate`/`kill_tree` (external tools) in
//! `unix_process.rs`, inode counts (`fs_inodes`) in `unix_statvfs.rs`; Windows and
//! unknown platforms have their own.

// Disk value types and the diskstats parser, the same on every OS.
mod disk;
pub use disk::{DiskIo, Inodes, parse_diskstats};

// What the facade returns and the pure parsers of what the OS prints (OS-neutral).
pub mod facts;
// External tools with a deadline and a killed process tree on timeout.
pub mod tool;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;
// Posture sources, native backup records, the custom checks' shell (issue #14).
#[cfg(target_os = "linux")]
mod linux_posture;
#[cfg(target_os = "linux")]
pub(crate) use linux_posture::*;
#[cfg(windows)]
mod windows_posture;
#[cfg(windows)]
pub(crate) use windows_posture::*;
#[cfg(target_os = "macos")]
mod macos_posture;
#[cfg(target_os = "macos")]
pub(crate) use macos_posture::*;

// The Win32 calls (service manager, process times, power status, job objects) need unsafe code;
// this is the one module where the agent allows it (the crate denies it elsewhere).
#[cfg(windows)]
#[allow(unsafe_code)]
mod windows;
#[cfg(windows)]
pub use windows::*;
// The Windows Update Agent over COM, used by `windows::check_patches` only.
#[cfg(windows)]
mod wua;

// glibc's allocator tuning is an FFI call: the other module allowed unsafe code.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod glibc;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub use glibc::tune_allocator;
/// Allocator tuning: nothing to do outside glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() {}

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
pub use macos::*;

#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
mod unsupported;
#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
pub use unsupported::*;

#[cfg(unix)]
mod unix_files;
#[cfg(unix)]
pub(crate) use unix_files::write_private_file;

#[cfg(unix)]
mod unix_statvfs;
#[cfg(unix)]
pub(crate) use unix_statvfs::fs_inodes;
/// Inode counts: a unix notion (NTFS has no fixed inode table).
#[cfg(not(unix))]
pub(crate) fn fs_inodes(_mount: &std::path::Path) -> Option<Inodes> {
    None
}

#[cfg(unix)]
mod unix_process;
#[cfg(unix)]
pub(crate) use unix_process::{contain, isolate, kill_tree, release};

/// The text of `agent/tests/fixtures/<dir>/<name>`: captured tool output and files
/// the pure parsers are tested on.
#[cfg(test)]
pub(crate) fn test_fixture(dir: &str, name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
