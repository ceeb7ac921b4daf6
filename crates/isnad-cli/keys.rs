//! `isnad keygen`.

/// Arguments of `isnad keygen`.
#[derive(Debug, clap::Args)]
pub(crate) struct KeygenArgs {}

pub(crate) fn run(_args: KeygenArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("not implemented yet")
}
