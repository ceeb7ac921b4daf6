//! `isnad`: the command-line glue over the Isnad libraries.
//!
//! Subcommands parse arguments into checked types, call library functions and
//! print. Each command group lives in its own module.

use clap::{Parser, Subcommand};

mod audit;
mod directory;
mod envelope;
mod keys;
mod trust;

/// Isnad: signed, encrypted and audited exchange of MLA requests and
/// intelligence between agencies.
#[derive(Debug, Parser)]
#[command(name = "isnad", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a node's signing and encryption keys.
    Keygen(keys::KeygenArgs),
    /// Seal and open envelopes (debugging and interoperability tools).
    #[command(subcommand)]
    Envelope(envelope::EnvelopeCommand),
    /// Export, verify and prove the audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Create, sign and inspect national directories.
    #[command(subcommand)]
    Directory(directory::DirectoryCommand),
    /// Manage trusted partner roots.
    #[command(subcommand)]
    Trust(trust::TrustCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(args) => keys::run(args),
        Command::Envelope(cmd) => envelope::run(cmd),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Directory(cmd) => directory::run(cmd),
        Command::Trust(cmd) => trust::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(1)
        }
    }
}
