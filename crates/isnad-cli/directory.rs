//! `isnad directory …` (issue 3).

use clap::Subcommand;

/// Directory commands.
#[derive(Debug, Subcommand)]
pub(crate) enum DirectoryCommand {}

pub(crate) fn run(cmd: DirectoryCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {}
}
