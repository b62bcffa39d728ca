//! `pki issue-agent`: an agent's certificate, key, CA and `agent.toml` written to a
//! directory, the certificate recorded in the database.

use std::path::Path;

use super::{PkiError, Validity, load_ca, write_file};

/// Why `pki issue-agent` could not write an agent's bundle.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BundleError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("cannot open the database to record the certificate: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot record the certificate: {0}")]
    Record(#[from] crate::store::admin::AdminError),
}

/// `pki issue-agent`: writes an agent's certificate, key, CA and a ready
/// `agent.toml` into `out`, and records the certificate in the database (so
/// `device list` shows its expiry and `--replace` can revoke it). A new device id
/// unless `device_id` is given. Returns the device id.
pub(crate) fn write_agent_bundle(
    data_dir: &Path,
    tenant: &str,
    device_id: Option<&str>,
    collector_url: &str,
    out: &Path,
    validity: Validity,
) -> Result<String, BundleError> {
    let ca = load_ca(data_dir)?;
    let device_id = device_id.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let issued = ca.issue_agent(tenant, &device_id, validity)?;
    let conn = crate::store::open(&data_dir.join(crate::store::DB_FILE))?;
    crate::store::admin::record_certificate(
        &conn,
        &device_id,
        &crate::store::admin::IssuedCert {
            cert_pem: issued.cert_pem.clone(),
            serial_hex: issued.serial_hex.clone(),
            not_after_ms: validity.not_after_ms(),
        },
        "manual",
        tandem_proto::util::now_ms(),
    )?;
    drop(conn);
    write_file(&out.join("ca.pem"), &ca.cert_pem, false)?;
    write_file(&out.join("agent.pem"), &issued.cert_pem, false)?;
    write_file(&out.join("agent.key"), &issued.key_pem, true)?;
    let toml = format!(
        "# Written by `tandem-collector pki issue-agent` for device {device_id} (tenant {tenant}).\n\
         collector_url = \"{collector_url}\"\n\
         ca_cert = \"ca.pem\"\n\
         cert = \"agent.pem\"\n\
         key = \"agent.key\"\n\
         state_dir = \"state\"\n\
         interval_secs = 10\n"
    );
    write_file(&out.join("agent.toml"), &toml, false)?;
    Ok(device_id)
}
