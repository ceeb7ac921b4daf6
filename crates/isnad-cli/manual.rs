//! `isnad completions SHELL` and `isnad man`: shell completions and manual
//! pages generated from the command-line definition itself, so they never
//! disagree with `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory as _;

/// Arguments of `isnad completions`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  isnad completions bash > /usr/share/bash-completion/completions/isnad\n  \
isnad completions zsh > /usr/local/share/zsh/site-functions/_isnad\n  \
isnad completions fish > /usr/share/fish/vendor_completions.d/isnad.fish"
)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Arguments of `isnad man`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  isnad man | man -l -\n  isnad man --out /usr/local/share/man/man1   # isnad.1 and one page per command"
)]
pub(crate) struct ManArgs {
    /// Write isnad.1 and a page per command (isnad-node-run.1, …) into this
    /// existing directory instead of printing isnad.1.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(crate) fn completions(a: CompletionsArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let mut cmd = crate::Cli::command();
    // Into memory first: the generator panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "isnad", &mut script);
    std::io::stdout()
        .write_all(&script)
        .context("cannot write the completions to stdout")?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn man(a: ManArgs) -> anyhow::Result<ExitCode> {
    let cmd = crate::Cli::command();
    match a.out {
        Some(dir) => {
            if !dir.is_dir() {
                anyhow::bail!(
                    "{} is not a directory (create it first, e.g. install -d {})",
                    dir.display(),
                    dir.display()
                );
            }
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("cannot write manual pages into {}", dir.display()))?;
            println!("manual pages written to {}", dir.display());
        }
        None => clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout())
            .context("cannot write the manual page to stdout")?,
    }
    Ok(ExitCode::SUCCESS)
}
