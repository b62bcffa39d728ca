//! Child processes on unix: each external tool runs in a process group of its own,
//! so that at its deadline the whole tree dies, not just its first process
//! (`checkupdates` is a shell script that runs `pacman`; killing the shell alone
//! would leave `pacman` running and holding the output pipe).

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// Makes `cmd` start in a new process group led by the child.
pub(crate) fn isolate(cmd: &mut Command) {
    cmd.process_group(0);
}

/// Nothing to do after the start on unix: the process group made by [`isolate`]
/// holds the tree.
pub(crate) fn contain(_child: &Child) {}

/// Nothing to release on unix.
pub(crate) fn release(_child: &Child) {}

/// Kills `child`'s process group (through `kill(1)`: the agent has no unsafe code
/// to call kill(2) with), then the child itself in case that failed.
pub(crate) fn kill_tree(child: &mut Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &group])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
}
