//! Any other OS: the portable parts only.

use tandem_proto::v1::OsFamily;

pub const OS_FAMILY: OsFamily = OsFamily::Other;
pub const HAS_LOAD_AVERAGE: bool = false;

pub fn process_count() -> Option<usize> {
    None
}
