//! `isnad trust …` (issue 3).

use clap::Subcommand;

/// Trust commands.
#[derive(Debug, Subcommand)]
pub(crate) enum TrustCommand {}

pub(crate) fn run(cmd: TrustCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {}
}
