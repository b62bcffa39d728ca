//! The Windows Update Agent (WUA) over COM: `IUpdateSession` →
//! `CreateUpdateSearcher` → `Search("IsInstalled=0 and IsHidden=0")`, and
//! `QueryHistory` for the last installation.
//!
//! This module only moves properties out of COM objects into plain values
//! (`patches::windows_update::{Update, HistoryEntry}`); every decision (security or
//! not, advisory id, last successful install) is made by the pure functions in
//! `facts/patches/windows_update.rs`, which are tested on Linux.
//!
//! It is the agent's only `unsafe` code: the `windows` crate marks every COM call
//! `unsafe`. Each call is made on a COM-initialised thread (this module initialises
//! it and uninitialises it after every interface pointer is released), with
//! arguments owned for the duration of the call.
//!
//! **Type-checked and cross-built only.** CI builds this for x86_64-pc-windows-gnu;
//! it has not run on a real Windows machine (Wine has no Windows Update Agent).
#![allow(unsafe_code)]

use windows::Win32::System::Com::{
    CLSCTX_INPROC_SERVER, COINIT_MULTITHREADED, CoCreateInstance, CoInitializeEx, CoUninitialize,
};
use windows::Win32::System::UpdateAgent::{
    IStringCollection, IUpdateSearcher, IUpdateSession, UpdateSession, orcSucceeded,
    orcSucceededWithErrors,
};
use windows::core::BSTR;

use crate::platform::facts::patches::windows_update::{HistoryEntry, Update};

/// Most history entries read: the newest come first, and a successful install is
/// among them on any machine that installs updates at all.
const HISTORY_ENTRIES: i32 = 200;

/// Calls `CoUninitialize` when dropped; declared before any COM object so it is
/// dropped after all of them.
struct ComApartment;

impl Drop for ComApartment {
    fn drop(&mut self) {
        // SAFETY: paired with the successful CoInitializeEx in `search`, on the
        // same thread; every COM object of this thread is released by now.
        unsafe { CoUninitialize() }
    }
}

fn strings(c: &IStringCollection) -> windows::core::Result<Vec<String>> {
    // SAFETY: `c` is a live interface on this COM thread; indexes are in range.
    unsafe {
        let n = c.Count()?;
        (0..n).map(|i| Ok(c.get_Item(i)?.to_string())).collect()
    }
}

/// Why the Windows Update Agent gave no list of pending updates.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WuaError {
    #[error("cannot initialise COM: {0}")]
    InitCom(String),
    /// A COM call failed: `what` names it, the source holds its HRESULT and text.
    #[error("{what}: {source}")]
    Call {
        what: &'static str,
        #[source]
        source: windows::core::Error,
    },
    #[error("windows update search ended with result code {0}")]
    ResultCode(i32),
}

/// The pending updates and the update history, or the failing call (HRESULT and
/// its text) naming what failed.
pub(crate) fn search() -> Result<(Vec<Update>, Vec<HistoryEntry>), WuaError> {
    // SAFETY: initialises COM on this thread (a thread of its own, see
    // `windows::check_patches`); uninitialised by `_apartment`.
    let init = unsafe { CoInitializeEx(None, COINIT_MULTITHREADED) };
    if init.is_err() {
        return Err(WuaError::InitCom(init.message().to_string()));
    }
    let _apartment = ComApartment;
    let ctx =
        |what: &'static str| move |source: windows::core::Error| WuaError::Call { what, source };
    // SAFETY: COM is initialised on this thread; every object below is released
    // before `_apartment` (declared first, dropped last).
    unsafe {
        let session: IUpdateSession = CoCreateInstance(&UpdateSession, None, CLSCTX_INPROC_SERVER)
            .map_err(ctx("cannot create the Windows Update session"))?;
        // Shown in Windows Update's own logs as the caller.
        let _ = session.SetClientApplicationID(&BSTR::from("tandem-agent"));
        let searcher: IUpdateSearcher = session
            .CreateUpdateSearcher()
            .map_err(ctx("cannot create an update searcher"))?;
        let result = searcher
            .Search(&BSTR::from("IsInstalled=0 and IsHidden=0"))
            .map_err(ctx("windows update search failed"))?;
        let code = result
            .ResultCode()
            .map_err(ctx("cannot read the search result"))?;
        if code != orcSucceeded && code != orcSucceededWithErrors {
            return Err(WuaError::ResultCode(code.0));
        }
        let list = result
            .Updates()
            .map_err(ctx("cannot read the found updates"))?;
        let n = list
            .Count()
            .map_err(ctx("cannot count the found updates"))?;
        let mut updates = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        for i in 0..n {
            let read = || -> windows::core::Result<Update> {
                let u = list.get_Item(i)?;
                let cats = u.Categories()?;
                let mut categories = Vec::new();
                for j in 0..cats.Count()? {
                    categories.push(cats.get_Item(j)?.Name()?.to_string());
                }
                let severity = u.MsrcSeverity()?.to_string();
                Ok(Update {
                    title: u.Title()?.to_string(),
                    kb_article_ids: strings(&u.KBArticleIDs()?)?,
                    security_bulletin_ids: strings(&u.SecurityBulletinIDs()?)?,
                    msrc_severity: (!severity.is_empty()).then_some(severity),
                    categories,
                    is_hidden: u.IsHidden()?.as_bool(),
                    is_installed: u.IsInstalled()?.as_bool(),
                })
            };
            updates.push(read().map_err(ctx("cannot read a found update"))?);
        }
        // The history only dates the last install: losing it must not lose the
        // pending list, so its errors give an empty history.
        let history = (|| -> windows::core::Result<Vec<HistoryEntry>> {
            let total = searcher.GetTotalHistoryCount()?;
            if total <= 0 {
                return Ok(Vec::new());
            }
            let entries = searcher.QueryHistory(0, total.min(HISTORY_ENTRIES))?;
            let mut out = Vec::new();
            for i in 0..entries.Count()? {
                let e = entries.get_Item(i)?;
                out.push(HistoryEntry {
                    operation: e.Operation()?.0,
                    result_code: e.ResultCode()?.0,
                    date: e.Date()?,
                });
            }
            Ok(out)
        })()
        .unwrap_or_else(|err| {
            tracing::warn!(error = %err, "cannot read the windows update history");
            Vec::new()
        });
        Ok((updates, history))
    }
}
