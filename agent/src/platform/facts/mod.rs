//! The value types the platform facade returns, and the pure parsers from what an OS
//! file or tool printed to them. OS-neutral: every parser is compiled and tested on
//! every OS (on captured real output under `agent/tests/fixtures/`), whichever OS
//! feeds it.
//!
//! These modules use nothing in the crate outside `platform` (the facade is a leaf:
//! `collect`, `patches`, `inventory`, `posture`, `backup` and `budget` use it, never
//! the other way round). Those modules re-export what their callers name, so
//! the paths `patches::apt` and `collect::kernel::Snapshot` still resolve.

pub mod backup;
pub mod battery;
pub mod inventory;
pub mod kernel;
pub mod network;
pub mod patches;
pub mod posture;
pub mod registry;
pub mod services;
pub mod usage;
