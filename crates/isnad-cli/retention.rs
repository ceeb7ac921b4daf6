//! `isnad retention`: a retention pass on the running node, or a dry run
//! listing what would go (spec/audit-log.md §2.6). The node does the work
//! (it logs the `purged` entries with its log key); this asks it through
//! its local API, like `isnad backup`.

use std::process::ExitCode;

/// Arguments of `isnad retention`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  isnad retention --config /var/lib/isnad/config.toml --dry-run\n\n\
The periods and legal holds are the node's [retention] config. Without\n\
--dry-run the node purges now what it would purge at its next pass: each\n\
message's content (its envelope) is deleted after a content-free `purged`\n\
entry is logged; digests, receipts and log entries stay. Messages not yet\n\
delivered and messages under a legal hold are listed and kept."
)]
pub(crate) struct RetentionArgs {
    #[command(flatten)]
    node: crate::client::NodeRef,
    /// List what would be purged; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the node's JSON answer.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: RetentionArgs) -> anyhow::Result<ExitCode> {
    let c = crate::client::Client::new(&a.node)?;
    let v = c.json(
        "POST",
        "/v1/retention",
        Some(serde_json::json!({ "dry_run": a.dry_run })),
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if a.dry_run { "would purge" } else { "purged" };
    for (key, what) in [
        ("purged", verb),
        ("held", "kept (legal hold)"),
        ("undelivered", "kept (not delivered yet)"),
    ] {
        for i in v[key].as_array().into_iter().flatten() {
            println!(
                "{what}: {} {} {} {} ({})",
                i["id"].as_str().unwrap_or("?"),
                i["direction"].as_str().unwrap_or("?"),
                i["kind"].as_str().unwrap_or("?"),
                i["peer"].as_str().unwrap_or("?"),
                i["why"].as_str().unwrap_or("?"),
            );
        }
    }
    let n = |k: &str| v[k].as_array().map_or(0, Vec::len);
    println!(
        "{} {verb}, {} held, {} not delivered yet",
        crate::out::count(n("purged") as u64, "message", "messages"),
        n("held"),
        n("undelivered")
    );
    if let Some(i) = v["first_index"].as_u64().filter(|_| !a.dry_run) {
        println!("purged entries logged from index {i}");
    }
    Ok(ExitCode::SUCCESS)
}
