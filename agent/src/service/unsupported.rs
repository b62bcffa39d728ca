//! `tandem-agent service` outside Windows: refused with a pointer to the system's
//! own service manager (the packages install a systemd unit, macOS a launchd plist).

use std::path::{Path, PathBuf};

use super::spec::ServiceError;

pub fn install(_exe: &Path, _config: &Path) -> Result<(), ServiceError> {
    Err(ServiceError::Unsupported)
}

pub fn uninstall() -> Result<(), ServiceError> {
    Err(ServiceError::Unsupported)
}

pub fn start() -> Result<(), ServiceError> {
    Err(ServiceError::Unsupported)
}

pub fn stop() -> Result<(), ServiceError> {
    Err(ServiceError::Unsupported)
}

pub fn run_service(_config: PathBuf) -> Result<(), ServiceError> {
    Err(ServiceError::Unsupported)
}

pub fn restrict_dir(_dir: &Path) -> Result<(), ServiceError> {
    Err(ServiceError::Unsupported)
}
