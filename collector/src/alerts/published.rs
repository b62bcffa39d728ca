//! The rule set each running alert engine has loaded, by database file, for readers
//! in the same process (the console's rules page). A leaf between the two: the
//! engine thread publishes when it starts and after every reload, the console reads,
//! and neither module depends on the other. Keyed by the database file because tests
//! run many collectors in one process.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::rules::RuleSet;

/// A loaded set and when it was published.
pub(crate) struct Published {
    pub(crate) loaded_ms: i64,
    pub(crate) set: RuleSet,
}

static LOADED: Mutex<Option<HashMap<PathBuf, Arc<Published>>>> = Mutex::new(None);

thread_local! {
    /// The database the engine of this thread serves (set by [`publish`]).
    static KEY: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

fn key(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned())
}

/// Called by the engine thread when it starts: publishes its set for the console of
/// the collector whose database is `db` (and remembers `db` for [`republish`]).
pub(crate) fn publish(db: Option<&str>, set: &RuleSet) {
    let Some(db) = db.filter(|d| !d.is_empty()) else {
        return;
    };
    let k = key(Path::new(db));
    KEY.with(|c| *c.borrow_mut() = Some(k.clone()));
    store(k, set);
}

/// Called by the engine thread after a reload.
pub(crate) fn republish(set: &RuleSet) {
    if let Some(k) = KEY.with(|c| c.borrow().clone()) {
        store(k, set);
    }
}

fn store(k: PathBuf, set: &RuleSet) {
    let p = Published {
        loaded_ms: tandem_proto::util::now_ms(),
        set: set.clone(),
    };
    let mut g = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(HashMap::new).insert(k, Arc::new(p));
}

/// The set the engine serving `db` has loaded, if it has.
pub(crate) fn loaded(db: &Path) -> Option<Arc<Published>> {
    let g = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    g.as_ref()?.get(&key(db)).cloned()
}
