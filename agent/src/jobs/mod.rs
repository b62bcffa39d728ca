//! The agent's collection jobs: the sampler ([`sample`]), the patch check
//! ([`patch`]) and the inventory ([`inventory`]), each a loop that `crate::run` spawns
//! and owns, and the one shape they share: run the blocking work on a thread of its
//! own, then spool its frame and wake the uplink ([`spool_job`]).

pub(crate) mod inventory;
pub(crate) mod patch;
pub(crate) mod sample;

use tokio::sync::Notify;

use crate::spool;
use crate::spool_handle::{SpoolHandle, SpoolPanicked};
use crate::tasks;

/// What the sampler loop logs when a sample cannot be spooled (issue 16's loss
/// tests look for it).
pub(crate) const SAMPLE_LOST: &str = "sample lost (its seq is reported as an agent_disk gap)";

/// The one shape of the sampler, patch and inventory loops: run `job` on a blocking
/// thread, where it does its blocking work and spools its frame through the handle it
/// is given (returning the seq and what it spooled, or `None` for nothing to send).
/// A spooled frame wakes the uplink. A spool error is logged as
/// `cannot write to the spool; {lost}` and the loop goes on; a panic of the job is
/// returned, and the loop then ends, which ends the agent ([`tasks`]).
pub(crate) async fn spool_job<T: Send + 'static>(
    spool: &SpoolHandle,
    new_data: &Notify,
    lost: &'static str,
    job: impl FnOnce(&SpoolHandle) -> Result<Option<(u64, T)>, spool::SpoolError> + Send + 'static,
) -> Result<Option<(u64, T)>, SpoolPanicked> {
    let spool = spool.clone();
    match tokio::task::spawn_blocking(move || job(&spool)).await {
        Ok(Ok(Some(spooled))) => {
            new_data.notify_one();
            Ok(Some(spooled))
        }
        Ok(Ok(None)) => Ok(None),
        Ok(Err(err)) => {
            tracing::error!(error = %err, "cannot write to the spool; {lost}");
            Ok(None)
        }
        Err(e) => Err(SpoolPanicked::new(tasks::panic_text(e))),
    }
}
