//! The agent as a Windows service, through the Service Control Manager
//! (`windows-service` crate): install (auto start, recovery actions: restart after
//! 5 s, 30 s, 2 min), uninstall, start, stop, and the dispatcher the SCM starts
//! (`tandem-agent service run --config …`), which runs the agent until the SCM
//! sends Stop or Shutdown and reports Stopped with the agent's outcome.
//!
//! The MSI registers the service itself (ServiceInstall); `service run` then sets
//! the recovery actions on its own service, which the MSI tables cannot express.
//! Exercised under Wine 8 by the MSI test (tests/tests/e2e/msi.rs) where it runs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use windows_service::define_windows_service;
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_dispatcher;
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

use super::spec::{
    DESCRIPTION, DISPLAY_NAME, FAILURE_RESET, RESTART_DELAYS, SERVICE_NAME, ServiceError,
    launch_arguments, private_dir_acl_args,
};

fn scm(what: &'static str) -> impl FnOnce(windows_service::Error) -> ServiceError {
    move |e| ServiceError::Scm {
        what,
        detail: e.to_string(),
    }
}

fn manager(access: ServiceManagerAccess) -> Result<ServiceManager, ServiceError> {
    ServiceManager::local_computer(None::<&str>, access).map_err(scm(
        "open the Service Control Manager (run as Administrator)",
    ))
}

fn recovery() -> ServiceFailureActions {
    ServiceFailureActions {
        reset_period: ServiceFailureResetPeriod::After(FAILURE_RESET),
        reboot_msg: None,
        command: None,
        actions: Some(
            RESTART_DELAYS
                .iter()
                .map(|d| ServiceAction {
                    action_type: ServiceActionType::Restart,
                    delay: *d,
                })
                .collect(),
        ),
    }
}

/// Registers the service: auto start as LocalSystem, `exe service run --config`.
pub fn install(exe: &Path, config: &Path) -> Result<(), ServiceError> {
    let m = manager(ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE)?;
    let info = ServiceInfo {
        name: OsString::from(SERVICE_NAME),
        display_name: OsString::from(DISPLAY_NAME),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe.to_owned(),
        launch_arguments: launch_arguments(config),
        dependencies: vec![],
        account_name: None,
        account_password: None,
    };
    let service = m
        .create_service(&info, ServiceAccess::CHANGE_CONFIG | ServiceAccess::START)
        .map_err(scm("create the TandemAgent service"))?;
    service
        .set_description(DESCRIPTION)
        .map_err(scm("describe the service"))?;
    service
        .update_failure_actions(recovery())
        .map_err(scm("set the service's recovery actions"))?;
    service
        .set_failure_actions_on_non_crash_failures(true)
        .map_err(scm("set the service's recovery actions"))?;
    Ok(())
}

fn wait_for_state(
    service: &windows_service::service::Service,
    want: ServiceState,
    timeout: Duration,
) -> Result<(), ServiceError> {
    let start = Instant::now();
    loop {
        let s = service
            .query_status()
            .map_err(scm("query the service's state"))?;
        if s.current_state == want {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(ServiceError::Scm {
                what: "wait for the service",
                detail: format!("still {:?} after {timeout:?}", s.current_state),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stops (if running) and deletes the service.
pub fn uninstall() -> Result<(), ServiceError> {
    let m = manager(ServiceManagerAccess::CONNECT)?;
    let service = m
        .open_service(
            SERVICE_NAME,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
        )
        .map_err(scm("open the TandemAgent service"))?;
    let status = service
        .query_status()
        .map_err(scm("query the service's state"))?;
    if status.current_state != ServiceState::Stopped {
        let _ = service.stop();
        wait_for_state(&service, ServiceState::Stopped, Duration::from_secs(30))?;
    }
    service.delete().map_err(scm("delete the service"))
}

pub fn start() -> Result<(), ServiceError> {
    let m = manager(ServiceManagerAccess::CONNECT)?;
    let service = m
        .open_service(
            SERVICE_NAME,
            ServiceAccess::START | ServiceAccess::QUERY_STATUS,
        )
        .map_err(scm("open the TandemAgent service"))?;
    service
        .start::<&str>(&[])
        .map_err(scm("start the service"))?;
    wait_for_state(&service, ServiceState::Running, Duration::from_secs(30))
}

pub fn stop() -> Result<(), ServiceError> {
    let m = manager(ServiceManagerAccess::CONNECT)?;
    let service = m
        .open_service(
            SERVICE_NAME,
            ServiceAccess::STOP | ServiceAccess::QUERY_STATUS,
        )
        .map_err(scm("open the TandemAgent service"))?;
    service.stop().map_err(scm("stop the service"))?;
    wait_for_state(&service, ServiceState::Stopped, Duration::from_secs(30))
}

/// Leaves `dir` to SYSTEM and Administrators (`icacls`, by well-known SIDs).
pub fn restrict_dir(dir: &Path) -> Result<(), ServiceError> {
    let out = std::process::Command::new("icacls")
        .args(private_dir_acl_args(dir))
        .output()
        .map_err(|source| ServiceError::Io {
            path: PathBuf::from("icacls"),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ServiceError::Scm {
            what: "restrict the folder's ACL with icacls",
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// The config the dispatcher's service main runs with (set before it starts).
static CONFIG: OnceLock<PathBuf> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

/// Hands this process to the SCM, which calls the service main on its own thread;
/// returns when the service has stopped.
pub fn run_service(config: PathBuf) -> Result<(), ServiceError> {
    let _ = CONFIG.set(config);
    service_dispatcher::start(SERVICE_NAME, ffi_service_main).map_err(scm(
        "connect to the Service Control Manager (`service run` is started by the SCM; use `run` from a console)",
    ))
}

fn service_main(_args: Vec<OsString>) {
    if let Err(e) = serve() {
        tracing::error!(error = %e, "the service stopped with an error");
    }
}

fn status(state: ServiceState, exit: ServiceExitCode, wait: Duration) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code: exit,
        checkpoint: 0,
        wait_hint: wait,
        process_id: None,
    }
}

fn serve() -> Result<(), ServiceError> {
    let stop = CancellationToken::new();
    let on_control = stop.clone();
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown | ServiceControl::Preshutdown => {
            on_control.cancel();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let handle = service_control_handler::register(SERVICE_NAME, handler)
        .map_err(scm("register the service control handler"))?;
    let ok = ServiceExitCode::Win32(0);
    handle
        .set_service_status(status(ServiceState::Running, ok, Duration::ZERO))
        .map_err(scm("report the service running"))?;
    tracing::info!(service = SERVICE_NAME, "service started");
    set_own_recovery();
    let outcome = run_agent(stop);
    let exit = match &outcome {
        Ok(()) => ok,
        Err(_) => ServiceExitCode::ServiceSpecific(1),
    };
    let _ = handle.set_service_status(status(ServiceState::Stopped, exit, Duration::ZERO));
    tracing::info!(service = SERVICE_NAME, "service stopped");
    outcome
}

fn run_agent(stop: CancellationToken) -> Result<(), ServiceError> {
    let path = CONFIG
        .get()
        .cloned()
        .ok_or(ServiceError::Agent("no config path".into()))?;
    let cfg = crate::config::load(&path).map_err(|e| ServiceError::Agent(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_keep_alive(Duration::from_secs(120))
        .build()
        .map_err(|source| ServiceError::Io {
            path: path.clone(),
            source,
        })?;
    rt.block_on(crate::run(cfg, Some(path), stop.cancelled_owned()))
        .map_err(|e| ServiceError::Agent(e.to_string()))
}

/// The MSI's ServiceInstall row has no recovery actions: the service sets its own
/// (it runs as LocalSystem, which may). A failure is logged, not fatal.
fn set_own_recovery() {
    let set = || -> Result<(), ServiceError> {
        let m = manager(ServiceManagerAccess::CONNECT)?;
        let s = m
            .open_service(SERVICE_NAME, ServiceAccess::CHANGE_CONFIG)
            .map_err(scm("open the TandemAgent service"))?;
        s.update_failure_actions(recovery())
            .map_err(scm("set the service's recovery actions"))?;
        s.set_failure_actions_on_non_crash_failures(true)
            .map_err(scm("set the service's recovery actions"))
    };
    if let Err(e) = set() {
        tracing::warn!(error = %e, "cannot set the service's recovery actions");
    }
}
