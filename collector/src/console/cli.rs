//! `tandem-collector user add/passwd/list/remove`: console users from the collector
//! host. The password never comes from argv (it would show in `ps` and shell
//! history): from `--password-file FILE` (its first line; `-` for stdin) or the
//! environment variable `TANDEM_PASSWORD`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use super::auth::{self, Role};
use crate::cli::DataDir;

/// Where a new password comes from.
#[derive(Args, Clone)]
pub struct PasswordSource {
    /// Read the password from this file's first line (`-`: standard input).
    /// Without it, from the environment variable TANDEM_PASSWORD.
    #[arg(long)]
    pub(crate) password_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a console user. Tenant roles need --tenant.
    Add {
        username: String,
        /// msp-admin, msp-tech, tenant-admin or tenant-viewer.
        #[arg(long)]
        role: String,
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        password: PasswordSource,
        #[command(flatten)]
        db: DataDir,
    },
    /// Set a user's password (ends the user's sessions).
    Passwd {
        username: String,
        #[command(flatten)]
        password: PasswordSource,
        #[command(flatten)]
        db: DataDir,
    },
    /// List console users.
    List {
        #[command(flatten)]
        db: DataDir,
    },
    /// Remove a console user.
    Remove {
        username: String,
        #[command(flatten)]
        db: DataDir,
    },
}

/// The environment variable a password may come from.
pub(crate) const PASSWORD_ENV: &str = "TANDEM_PASSWORD";

pub(crate) fn read_password(src: &PasswordSource) -> anyhow::Result<String> {
    let raw = match &src.password_file {
        Some(p) if p == Path::new("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_line(&mut s)
                .context("reading the password from stdin")?;
            s
        }
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading the password from {}", p.display()))?,
        None => std::env::var(PASSWORD_ENV).map_err(|_| {
            anyhow::anyhow!(
                "no password: pass --password-file FILE (or - for stdin), or set {PASSWORD_ENV}"
            )
        })?,
    };
    let pw = raw.lines().next().unwrap_or("").to_owned();
    auth::check_password(&pw).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    Ok(pw)
}

fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

fn open(data_dir: &Path) -> anyhow::Result<crate::store::Db> {
    if !data_dir.is_dir() {
        anyhow::bail!("{}: no such data dir", data_dir.display());
    }
    Ok(crate::store::Db::open(
        &data_dir.join(crate::store::DB_FILE),
    )?)
}

fn api(e: super::error::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{}", e.message)
}

/// Adds a user; used by `user add` and by `demo`.
pub(crate) fn add_user(
    data_dir: &Path,
    username: &str,
    role: Role,
    tenant: Option<&str>,
    password: &str,
) -> anyhow::Result<()> {
    let mut c = open(data_dir)?;
    let tid = tenant
        .map(|t| auth::tenant_id(&c, t))
        .transpose()
        .map_err(api)?;
    let hash = auth::hash_password(password).map_err(api)?;
    auth::add_user(
        &mut c,
        &actor(),
        username,
        &hash,
        role,
        tid,
        super::now_ms(),
    )
    .map_err(api)
}

pub fn user(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add {
            username,
            role,
            tenant,
            password,
            db,
        } => {
            let data_dir = db.dir()?;
            let r = Role::parse(&role).ok_or_else(|| {
                anyhow::anyhow!(
                    "--role {role:?}: use msp-admin, msp-tech, tenant-admin or tenant-viewer"
                )
            })?;
            let pw = read_password(&password)?;
            add_user(&data_dir, &username, r, tenant.as_deref(), &pw)?;
            println!(
                "user {username} added ({r}{})",
                tenant.map(|t| format!(", tenant {t}")).unwrap_or_default()
            );
        }
        UserCommand::Passwd {
            username,
            password,
            db,
        } => {
            let pw = read_password(&password)?;
            let mut c = open(&db.dir()?)?;
            let hash = auth::hash_password(&pw).map_err(api)?;
            auth::set_password(&mut c, &actor(), &username, &hash, None, super::now_ms())
                .map_err(api)?;
            println!("password of {username} set; its sessions ended");
        }
        UserCommand::List { db } => {
            let c = open(&db.dir()?)?;
            let mut out = format!("{:<24} {:<14} {:<20} CREATED\n", "USER", "ROLE", "TENANT");
            for u in auth::list_users(&c, None).map_err(api)? {
                writeln!(
                    out,
                    "{:<24} {:<14} {:<20} {}",
                    u.username,
                    u.role.as_str(),
                    u.tenant.as_deref().unwrap_or("-"),
                    crate::cli::format_ms(u.created_ms)
                )?;
            }
            crate::cli::print_out(&out)?;
        }
        UserCommand::Remove { username, db } => {
            let mut c = open(&db.dir()?)?;
            auth::remove_user(&mut c, &actor(), &username, None, super::now_ms()).map_err(api)?;
            println!("user {username} removed");
        }
    }
    Ok(())
}

/// `demo`: the admin user `admin` with a random password, kept in
/// `<data dir>/console-admin-password` (0600) so a reused demo dir logs in the same.
#[cfg(feature = "demo")]
pub(crate) fn demo_admin(data_dir: &Path) -> anyhow::Result<(String, String)> {
    let file = data_dir.join("console-admin-password");
    if let Ok(pw) = std::fs::read_to_string(&file) {
        return Ok(("admin".into(), pw.trim().to_owned()));
    }
    let (token, _) = crate::notify::link::new_api_token().map_err(|e| anyhow::anyhow!("{e}"))?;
    let pw: String = token
        .trim_start_matches("tdm_")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect();
    add_user(data_dir, "admin", Role::MspAdmin, None, &pw)?;
    crate::private_fs::create_file_if_missing(&file)?;
    std::fs::write(&file, format!("{pw}\n"))
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(("admin".into(), pw))
}
