//! `isnad`: the command-line glue over the Isnad libraries.
//!
//! Subcommands parse arguments into checked types, call library functions and
//! print. Each command group lives in its own module.
//!
//! Exit status, the same for every command (README, "Exit codes"):
//! [`exit::OK`] 0 verified / done, [`exit::USAGE`] 1 usage or I/O error
//! (argument errors included), [`exit::FAILED`] 2 verification failed,
//! [`exit::WARNING`] 3 verified, with a warning the command documents (a fork
//! shown, fork evidence recorded).

use clap::{Parser, Subcommand};

mod audit;
mod backup;
mod cases;
mod client;
mod demo;
mod directory;
mod envelope;
mod evidence;
mod exit;
mod keys;
mod manual;
mod node_cmd;
mod note;
mod out;
mod retention;
mod token;
mod trust;
mod user;
mod witness;

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
    /// Run a local demo federation of four nodes end to end (the main job).
    Demo(demo::DemoArgs),
    /// Create everything a new node needs (keys, TLS certificate, config).
    Init(node_cmd::InitArgs),
    /// Run the node daemon.
    #[command(subcommand)]
    Node(node_cmd::NodeCommand),
    /// Generate a node's signing and encryption keys.
    Keygen(keys::KeygenArgs),
    /// Seal and open envelopes (debugging and interoperability tools).
    #[command(subcommand)]
    Envelope(envelope::EnvelopeCommand),
    /// Export, verify and prove the audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Prove a file is an attachment the recipient acknowledged (offline).
    #[command(subcommand)]
    Evidence(evidence::EvidenceCommand),
    /// Create, sign and inspect national directories.
    #[command(subcommand)]
    Directory(directory::DirectoryCommand),
    /// Submit a message to the local node (durable before the id is printed).
    Send(client::SendArgs),
    /// List received messages.
    #[command(after_help = "Example:\n  isnad inbox --config /var/lib/isnad/config.toml --json")]
    Inbox(client::ListArgs),
    /// List sent messages and their delivery state.
    #[command(after_help = "Example:\n  isnad outbox --config /var/lib/isnad/config.toml")]
    Outbox(client::ListArgs),
    /// Show one message (received messages are decrypted on read).
    #[command(
        after_help = "Example:\n  isnad show --config /var/lib/isnad/config.toml 927346b685d2e1c0a17f2ca599382a41"
    )]
    Show(client::IdArgs),
    /// Delivery status and receipt of one message.
    #[command(
        after_help = "Example:\n  isnad status --config /var/lib/isnad/config.toml 927346b685d2e1c0a17f2ca599382a41"
    )]
    Status(client::IdArgs),
    /// Print (or, with --now, sign) the node's latest audit-log checkpoint.
    #[command(
        after_help = "Example:\n  isnad checkpoint --config /var/lib/isnad/config.toml --now"
    )]
    Checkpoint(client::CheckpointArgs),
    /// Back up a running node (state, audit log, keys, trust, config).
    Backup(backup::BackupArgs),
    /// Restore a node from a backup, checked against what it published.
    Restore(backup::RestoreArgs),
    /// Purge message contents past their retention period (or list them).
    Retention(retention::RetentionArgs),
    /// Web console accounts (password and TOTP second factor).
    #[command(subcommand)]
    User(user::UserCommand),
    /// Manage trusted partner roots.
    #[command(subcommand)]
    Trust(trust::TrustCommand),
    /// Witnessing: what this node witnesses, who witnessed it, fork evidence.
    #[command(subcommand)]
    Witness(witness::WitnessCommand),
    /// Verify C2SP signed notes (checkpoints of any log) against trusted keys.
    #[command(subcommand)]
    Note(note::NoteCommand),
    /// List MLA requests (with --overdue: those past their deadline).
    #[command(
        after_help = "Example:\n  isnad requests --config /var/lib/isnad/config.toml --overdue"
    )]
    Requests(cases::RequestsArgs),
    /// The whole history of a request or an intel share.
    #[command(subcommand)]
    Case(cases::CaseCommand),
    /// Change the status of an MLA request.
    #[command(subcommand)]
    Mla(cases::MlaCommand),
    /// Share, forward, retract and correct intelligence; permissions.
    #[command(subcommand)]
    Intel(cases::IntelCommand),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions(manual::CompletionsArgs),
    /// Print the manual page, or write one per command with --out.
    Man(manual::ManArgs),
}

fn main() -> std::process::ExitCode {
    out::quiet_broken_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return std::process::ExitCode::from(code);
        }
    };
    for (old, new) in deprecated_options() {
        eprintln!("warning: {old} is deprecated and will be removed; use {new}");
    }
    let result = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Init(a) => node_cmd::init(a),
        Command::Node(c) => node_cmd::run(c),
        Command::Keygen(args) => keys::run(args),
        Command::Envelope(cmd) => envelope::run(cmd),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Evidence(cmd) => evidence::run(cmd),
        Command::Directory(cmd) => directory::run(cmd),
        Command::Trust(cmd) => trust::run(cmd),
        Command::User(cmd) => user::run(cmd),
        Command::Send(a) => client::send(a),
        Command::Inbox(a) => client::inbox(a),
        Command::Outbox(a) => client::outbox(a),
        Command::Show(a) => client::show(a),
        Command::Status(a) => client::status(a),
        Command::Checkpoint(a) => client::checkpoint(a),
        Command::Witness(cmd) => witness::run(cmd),
        Command::Note(cmd) => note::run(cmd),
        Command::Backup(a) => backup::backup(a),
        Command::Restore(a) => backup::restore(a),
        Command::Retention(a) => retention::run(a),
        Command::Requests(a) => cases::requests(a),
        Command::Case(c) => cases::case(c),
        Command::Mla(c) => cases::mla(c),
        Command::Intel(c) => cases::intel(c),
        Command::Completions(a) => manual::completions(a),
        Command::Man(a) => manual::man(a),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", out::causes(&err));
            std::process::ExitCode::from(exit::USAGE)
        }
    }
}

/// Old option names still accepted (hidden aliases), with their new names.
/// `--log-key` meant the private key for `audit export` and the public key
/// everywhere else.
const DEPRECATED: [(&str, &str); 3] = [
    (
        "--log-key",
        "--signer-key (audit export: the private key) or --verifier-key (verification: the public key)",
    ),
    ("--log-key-a", "--verifier-key-a"),
    ("--log-key-b", "--verifier-key-b"),
];

/// The deprecated option names present on the command line.
fn deprecated_options() -> Vec<(&'static str, &'static str)> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    DEPRECATED
        .into_iter()
        .filter(|(old, _)| {
            args.iter()
                .take_while(|a| a.as_str() != "--")
                .any(|a| a == old || a.strip_prefix(old).is_some_and(|r| r.starts_with('=')))
        })
        .collect()
}
