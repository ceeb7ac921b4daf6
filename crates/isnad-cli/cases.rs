//! `isnad requests | case show | mla status | intel …`: the local API's case
//! operations from the command line (spec/api.yaml, "Cases").

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use isnad_envelope::{AgencyId, MessageId, MlaState, PermissionDecision, RefusalGround};
use serde_json::{json, Value};

use crate::client::{read_json, Client, NodeRef};

/// Arguments of `isnad requests`.
#[derive(Debug, clap::Args)]
pub(crate) struct RequestsArgs {
    #[command(flatten)]
    node: NodeRef,
    /// Only requests past their deadline and still waiting for results.
    #[arg(long)]
    overdue: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `isnad case …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum CaseCommand {
    /// Every status event, message, receipt and log index of a request or share.
    #[command(
        after_help = "Example:\n  isnad case show --config /var/lib/isnad/config.toml 927346b685d2e1c0a17f2ca599382a41 --json"
    )]
    Show {
        #[command(flatten)]
        node: NodeRef,
        /// Request id (the mla-request's message id) or share id.
        id: String,
        /// Print JSON instead of a timeline.
        #[arg(long)]
        json: bool,
    },
}

/// `isnad mla …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum MlaCommand {
    /// Move a request to a new state: a signed mla-status to the other party.
    #[command(
        after_help = "Example:\n  isnad mla status --config node/config.toml 927346b685d2e1c0a17f2ca599382a41 refused \\\n      --ground dual-criminality --reason \"not an offence here\"\n\n\
States: registered under-review supplement-requested accepted conditions-proposed in-execution\n\
partially-executed results-transmitted closed postponed refused withdrawn.\n\
Only the requested side registers, reviews, accepts, refuses and executes; only the requesting side withdraws."
    )]
    Status {
        #[command(flatten)]
        node: NodeRef,
        /// Request id.
        id: String,
        /// The new state.
        state: String,
        /// Reason or note.
        #[arg(long)]
        reason: Option<String>,
        /// Refusal ground (UN Model Treaty art. 4), repeatable; required with `refused`.
        #[arg(long = "ground")]
        grounds: Vec<String>,
    },
}

/// `isnad intel …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum IntelCommand {
    /// Share intelligence with one or more agencies (one envelope each, one share id).
    #[command(
        after_help = "Example:\n  isnad intel share --config node/config.toml --to fr.pn.ocrtis --to de.bka --payload share.json"
    )]
    Share {
        #[command(flatten)]
        node: NodeRef,
        /// Recipient agency, repeatable.
        #[arg(long, required = true)]
        to: Vec<String>,
        /// JSON file with the intel-share body (spec/messages.cddl).
        #[arg(long)]
        payload: PathBuf,
    },
    /// Pass a received share on to another agency (refused for H2/H3,
    /// TLP:RED and TLP:AMBER+STRICT without the originator's permission).
    #[command(
        after_help = "Example:\n  isnad intel forward --config node/config.toml 5a5a…5a --to de.bka"
    )]
    Forward {
        #[command(flatten)]
        node: NodeRef,
        /// Share id.
        id: String,
        /// The agency to pass it to.
        #[arg(long)]
        to: String,
    },
    /// Ask for, grant or deny permission to pass a share on.
    #[command(subcommand)]
    Permission(PermissionCommand),
    /// Retract a share at every agency this node sent it to.
    Retract {
        #[command(flatten)]
        node: NodeRef,
        /// Share id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Correct a share at every agency this node sent it to.
    Correct {
        #[command(flatten)]
        node: NodeRef,
        /// Share id.
        id: String,
        /// The corrected intelligence.
        #[arg(long)]
        content: String,
        /// The corrected one-line summary.
        #[arg(long)]
        summary: Option<String>,
        /// What was wrong.
        #[arg(long)]
        reason: String,
    },
}

/// `isnad intel permission …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum PermissionCommand {
    /// Ask the originator of a received share for permission to pass it on.
    #[command(
        after_help = "Example:\n  isnad intel permission request --config node/config.toml 5a5a…5a --target de.bka --purpose \"joint team\""
    )]
    Request {
        #[command(flatten)]
        node: NodeRef,
        /// Share id.
        id: String,
        /// The agency it would go to.
        #[arg(long)]
        target: String,
        /// Why.
        #[arg(long)]
        purpose: String,
    },
    /// Grant permission (originator only).
    Grant(AnswerArgs),
    /// Deny permission, or revoke a grant (originator only).
    Deny(AnswerArgs),
}

/// Arguments of `isnad intel permission grant|deny`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  isnad intel permission grant --config node/config.toml 5a5a…5a --request 0f1e…77\n  \
isnad intel permission deny --config node/config.toml 5a5a…5a --to fr.pn.ocrtis --target de.bka"
)]
pub(crate) struct AnswerArgs {
    #[command(flatten)]
    node: NodeRef,
    /// Share id.
    id: String,
    /// The permission-request message answered (gives requester and target).
    #[arg(long)]
    request: Option<String>,
    /// The agency that asked (without --request).
    #[arg(long)]
    to: Option<String>,
    /// The agency the share would go to (without --request).
    #[arg(long)]
    target: Option<String>,
    /// Conditions of a grant, or the reason of a denial.
    #[arg(long)]
    conditions: Option<String>,
}

fn id(s: &str) -> anyhow::Result<MessageId> {
    MessageId::from_hex(s).with_context(|| format!("{s:?} is not an id of 32 hex characters"))
}

fn agency(s: &str) -> anyhow::Result<String> {
    Ok(AgencyId::new(s)
        .with_context(|| format!("{s:?} is not an agency id"))?
        .to_string())
}

fn word<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> anyhow::Result<Value> {
    serde_json::from_value::<T>(json!(s)).with_context(|| format!("{s:?} is not a {what}"))?;
    Ok(json!(s))
}

pub(crate) fn requests(a: RequestsArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.node)?;
    let path = if a.overdue {
        "/v1/requests?overdue=true"
    } else {
        "/v1/requests"
    };
    let v = c.json("GET", path, None)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    for r in v.as_array().map(Vec::as_slice).unwrap_or_default() {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_owned();
        println!(
            "{}  {:<24} {:<10} {:<20} {} → {}  deadline {}{}",
            s("id"),
            s("reference"),
            s("urgency"),
            s("state"),
            s("requesting"),
            s("requested"),
            s("deadline"),
            if r["overdue"] == true {
                "  OVERDUE"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn case(cmd: CaseCommand) -> anyhow::Result<ExitCode> {
    let CaseCommand::Show {
        node,
        id: raw,
        json,
    } = cmd;
    let c = Client::new(&node)?;
    let v = c.json("GET", &format!("/v1/cases/{}", id(&raw)?.to_hex()), None)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let s = |x: &Value, k: &str| x[k].as_str().unwrap_or("-").to_owned();
    if v["type"] == "mla-request" {
        println!(
            "request {} ({})  {} → {}  state {}  urgency {}  deadline {}{}",
            s(&v, "id"),
            s(&v, "reference"),
            s(&v, "requesting"),
            s(&v, "requested"),
            s(&v, "state"),
            s(&v, "urgency"),
            s(&v, "deadline"),
            if v["overdue"] == true {
                "  OVERDUE"
            } else {
                ""
            }
        );
    } else {
        println!(
            "share {}  originator {}  {} {}  {}{}",
            s(&v, "id"),
            s(&v, "originator"),
            s(&v, "handling"),
            s(&v, "tlp"),
            s(&v, "summary"),
            if v["retracted"] == true {
                "  RETRACTED"
            } else {
                ""
            }
        );
    }
    for e in v["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let what = if v["type"] == "mla-request" {
            format!("{} → {}  by {}", s(e, "from"), s(e, "to"), s(e, "by"))
        } else {
            format!("{}  {} → {}", s(e, "event"), s(e, "from"), s(e, "to"))
        };
        let m = &e["message"];
        let msg = match m["direction"].as_str() {
            Some("out") => format!(
                "sent log#{}  {}  receipt log#{} (peer log#{})",
                m["sent_log_index"],
                s(m, "delivery"),
                m["receipt_log_index"],
                m["peer_log_index"]
            ),
            Some("in") => format!("received log#{}", m["received_log_index"]),
            _ => String::new(),
        };
        let via: Vec<&str> = m["via"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let msg = if via.is_empty() {
            msg
        } else if m["direction"] == "out" {
            format!(
                "{msg}  via {}  end-to-end peer log#{}",
                via.join(" → "),
                m["end_to_end_log_index"]
            )
        } else {
            format!("{msg}  via {}", via.join(" → "))
        };
        println!(
            "  {}  log#{:<5} {what}  {msg}{}",
            utc(e["at_ms"].as_u64().unwrap_or(0)),
            e["log_index"],
            e["reason"]
                .as_str()
                .or(e["note"].as_str())
                .map(|r| format!("  \"{r}\""))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn mla(cmd: MlaCommand) -> anyhow::Result<ExitCode> {
    let MlaCommand::Status {
        node,
        id: raw,
        state,
        reason,
        grounds,
    } = cmd;
    let c = Client::new(&node)?;
    let grounds = grounds
        .iter()
        .map(|g| word::<RefusalGround>("refusal ground", g))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let body = json!({
        "status": word::<MlaState>("state", &state)?,
        "reason": reason,
        "refusal_grounds": grounds,
    });
    let v = c.json(
        "POST",
        &format!("/v1/requests/{}/status", id(&raw)?.to_hex()),
        Some(body),
    )?;
    println!("{}", v["id"].as_str().unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn intel(cmd: IntelCommand) -> anyhow::Result<ExitCode> {
    let (node, path, body) = match cmd {
        IntelCommand::Share { node, to, payload } => {
            let to = to
                .iter()
                .map(|a| agency(a))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let body = json!({ "to": to, "body": read_json(&payload)? });
            (node, "/v1/intel/shares".to_owned(), body)
        }
        IntelCommand::Forward { node, id: raw, to } => {
            let path = format!("/v1/intel/shares/{}/forward", id(&raw)?.to_hex());
            (node, path, json!({ "to": agency(&to)? }))
        }
        IntelCommand::Retract {
            node,
            id: raw,
            reason,
        } => {
            let path = format!("/v1/intel/shares/{}/retraction", id(&raw)?.to_hex());
            (node, path, json!({ "reason": reason }))
        }
        IntelCommand::Correct {
            node,
            id: raw,
            content,
            summary,
            reason,
        } => {
            let path = format!("/v1/intel/shares/{}/correction", id(&raw)?.to_hex());
            let body = json!({ "content": content, "summary": summary, "reason": reason });
            (node, path, body)
        }
        IntelCommand::Permission(PermissionCommand::Request {
            node,
            id: raw,
            target,
            purpose,
        }) => {
            let path = format!(
                "/v1/intel/shares/{}/permission-requests",
                id(&raw)?.to_hex()
            );
            (
                node,
                path,
                json!({ "target": agency(&target)?, "purpose": purpose }),
            )
        }
        IntelCommand::Permission(PermissionCommand::Grant(a)) => {
            answer(a, PermissionDecision::Granted)?
        }
        IntelCommand::Permission(PermissionCommand::Deny(a)) => {
            answer(a, PermissionDecision::Denied)?
        }
    };
    let c = Client::new(&node)?;
    let v = c.json("POST", &path, Some(body))?;
    if let Some(list) = v["messages"].as_array() {
        if let Some(s) = v["share_id"].as_str() {
            println!("share {s}");
        }
        for m in list {
            println!(
                "{}  to {}",
                m["id"].as_str().unwrap_or_default(),
                m["to"].as_str().unwrap_or_default()
            );
        }
    } else {
        println!("{}", v["id"].as_str().unwrap_or_default());
    }
    Ok(ExitCode::SUCCESS)
}

fn answer(a: AnswerArgs, decision: PermissionDecision) -> anyhow::Result<(NodeRef, String, Value)> {
    if a.request.is_none() && (a.to.is_none() || a.target.is_none()) {
        anyhow::bail!("give --request ID, or both --to and --target");
    }
    let path = format!(
        "/v1/intel/shares/{}/permission-answers",
        id(&a.id)?.to_hex()
    );
    let body = json!({
        "decision": decision,
        "request_id": a.request.as_deref().map(id).transpose()?.map(|i| i.to_hex()),
        "to": a.to.as_deref().map(agency).transpose()?,
        "target": a.target.as_deref().map(agency).transpose()?,
        "conditions": a.conditions,
    });
    Ok((a.node, path, body))
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the Unix epoch.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let mut days = secs / 86_400;
    let rem = secs % 86_400;
    let leap = |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let mut year = 1970;
    loop {
        let n = if leap(year) { 366 } else { 365 };
        if days < n {
            break;
        }
        days -= n;
        year += 1;
    }
    let lengths = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 1;
    for len in lengths {
        if days < len {
            break;
        }
        days -= len;
        month += 1;
    }
    format!(
        "{year:04}-{month:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        days + 1,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats_known_times() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::utc(1_709_164_800_123), "2024-02-29T00:00:00.123Z");
        assert_eq!(super::utc(1_797_292_799_000), "2026-12-14T23:59:59.000Z");
    }
}
