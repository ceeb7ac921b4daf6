//! `isnad user add|remove|reset`: the web console's accounts
//! (spec/console.md §3), kept in `console-users.json` in the node's state
//! directory. The node reads the file at every login, so a change takes
//! effect without a restart.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use isnad_console::i18n::Lang;
use isnad_console::users::{Role, User, UserFile};

/// `isnad user …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum UserCommand {
    /// Create an account; prints its TOTP secret for the person's authenticator app.
    #[command(
        after_help = "Example:\n  isnad user add amal --role officer --unit ahtd-1 --lang ar \\\n    --password-file /root/amal.pw --config /var/lib/isnad/config.toml"
    )]
    Add {
        /// Login name (a-z, 0-9, '.', '_', '-').
        name: String,
        /// officer, supervisor, operator or auditor.
        #[arg(long)]
        role: String,
        /// Unit of an officer or supervisor.
        #[arg(long)]
        unit: Option<String>,
        /// Interface language: ar, en or fr.
        #[arg(long, default_value = "en")]
        lang: String,
        /// File holding the initial password (first line; at least 12 characters).
        #[arg(long)]
        password_file: PathBuf,
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Delete an account (its sessions end at their next request).
    Remove {
        /// Login name.
        name: String,
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// New password and new TOTP secret (lost phone, locked account); the
    /// audit-log id stays.
    Reset {
        /// Login name.
        name: String,
        /// File holding the new password (first line).
        #[arg(long)]
        password_file: PathBuf,
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
    },
}

pub(crate) fn run(cmd: UserCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        UserCommand::Add {
            name,
            role,
            unit,
            lang,
            password_file,
            config,
        } => {
            let Some(role) = Role::parse(&role) else {
                bail!("--role must be officer, supervisor, operator or auditor, not {role:?}");
            };
            let Some(lang) = Lang::parse(&lang) else {
                bail!("--lang must be ar, en or fr, not {lang:?}");
            };
            let password = read_password(&password_file)?;
            let user = file(&config)?.add(&name, role, unit.as_deref(), lang, &password)?;
            print_enrolment(&user);
        }
        UserCommand::Remove { name, config } => {
            file(&config)?.remove(&name)?;
            println!("removed user {name}");
        }
        UserCommand::Reset {
            name,
            password_file,
            config,
        } => {
            let password = read_password(&password_file)?;
            let user = file(&config)?.reset(&name, &password)?;
            print_enrolment(&user);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn file(config: &std::path::Path) -> anyhow::Result<UserFile> {
    let cfg = isnad_node::config::Config::load(config)
        .with_context(|| format!("reading the node config {}", config.display()))?;
    Ok(UserFile::in_state_dir(&cfg.paths.state))
}

fn read_password(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the password file {}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// The TOTP secret and its `otpauth://` URI, printed once.
fn print_enrolment(user: &User) {
    println!("user: {}", user.name);
    println!("role: {}", user.role);
    println!("audit id: {}", user.id);
    println!("totp secret: {}", user.totp);
    println!(
        "otpauth uri: otpauth://totp/Isnad:{}?secret={}&issuer=Isnad&algorithm=SHA1&digits=6&period=30",
        user.name, user.totp
    );
}
