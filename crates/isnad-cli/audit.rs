//! `isnad audit …` (issue 2).

use clap::Subcommand;

/// Audit-log commands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {}

pub(crate) fn run(cmd: AuditCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {}
}
