//! `isnad envelope seal|open`.

use clap::Subcommand;

/// Envelope commands.
#[derive(Debug, Subcommand)]
pub(crate) enum EnvelopeCommand {}

pub(crate) fn run(cmd: EnvelopeCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {}
}
