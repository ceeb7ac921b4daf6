//! `isnad send | inbox | outbox | show | status | checkpoint`: the local API's
//! operations from the command line (spec/api.yaml).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use isnad_node::config::Config;
use serde_json::{json, Value};

/// Where to find the node's local API.
#[derive(Debug, clap::Args)]
pub(crate) struct NodeRef {
    /// The node's config file (its api.listen and api.token_file are used).
    #[arg(long, env = "ISNAD_CONFIG", default_value = "config.toml")]
    pub(crate) config: PathBuf,
}

/// Arguments of `isnad send`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  isnad send --config node/config.toml --to fr.mj.bepi --kind mla-request --payload request.json\n\n\
Prints the message id once the node has stored the message durably; delivery\n\
follows in the background (see `isnad status ID`)."
)]
pub(crate) struct SendArgs {
    #[command(flatten)]
    node: NodeRef,
    /// Recipient agency id.
    #[arg(long)]
    to: String,
    /// Message kind (mla-request, mla-status, intel-share, …).
    #[arg(long)]
    kind: String,
    /// JSON file with the body (spec/messages.cddl, byte strings as hex).
    #[arg(long)]
    payload: PathBuf,
    /// Lifetime in seconds (default: the node's delivery.default_ttl_secs).
    #[arg(long)]
    ttl: Option<u64>,
}

/// Arguments of `isnad show` and `isnad status`.
#[derive(Debug, clap::Args)]
pub(crate) struct IdArgs {
    #[command(flatten)]
    node: NodeRef,
    /// Message id (32 hex characters).
    id: String,
    /// Print JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

/// Arguments of `isnad inbox` and `isnad outbox`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    node: NodeRef,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `isnad checkpoint`.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckpointArgs {
    #[command(flatten)]
    node: NodeRef,
    /// Sign a new checkpoint now instead of printing the latest.
    #[arg(long)]
    now: bool,
}

pub(crate) struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
    /// The node's request body limit (spec/api.yaml), from its config.
    body_limit: usize,
}

impl Client {
    pub(crate) fn new(node: &NodeRef) -> anyhow::Result<Self> {
        Self::with_timeout(node, std::time::Duration::from_secs(60))
    }

    /// A client whose requests may take up to `timeout` (e.g. an export).
    pub(crate) fn with_timeout(
        node: &NodeRef,
        timeout: std::time::Duration,
    ) -> anyhow::Result<Self> {
        let cfg = Config::load(&node.config).with_context(|| {
            format!(
                "cannot load {} (pass --config or set ISNAD_CONFIG)",
                node.config.display()
            )
        })?;
        let token = std::fs::read_to_string(&cfg.api.token_file)
            .with_context(|| format!("cannot read the API token {}", cfg.api.token_file.display()))?
            .trim()
            .to_owned();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Ok(Self {
            base: format!("http://{}", cfg.api.listen),
            token,
            agent,
            body_limit: isnad_node::api::body_limit(cfg.limits.max_envelope_bytes),
        })
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<(u16, String)> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let resp = match (method, body) {
            ("POST", Some(b)) => {
                let bytes = serde_json::to_vec(&b)?;
                // The node would refuse it (413) and close the connection
                // while it is still being sent: say so here instead.
                if bytes.len() > self.body_limit {
                    anyhow::bail!(
                        "the request is {} bytes; the node accepts at most {} \
                         (twice its limits.max_envelope_bytes plus 64 KiB)",
                        bytes.len(),
                        self.body_limit
                    );
                }
                self.agent
                    .post(&url)
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .send(&bytes[..])
            }
            ("POST", None) => self
                .agent
                .post(&url)
                .header("authorization", &auth)
                .send_empty(),
            _ => self.agent.get(&url).header("authorization", &auth).call(),
        };
        let mut resp = resp.with_context(|| {
            format!(
                "cannot reach the node's API at {} — is the node running? (isnad node run)",
                self.base
            )
        })?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string()?;
        Ok((status, text))
    }

    pub(crate) fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, text) = self.call(method, path, body)?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !(200..300).contains(&status) {
            let msg = v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("request failed");
            anyhow::bail!("node answered {status}: {msg}");
        }
        Ok(v)
    }
}

pub(crate) fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

pub(crate) fn send(a: SendArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.node)?;
    let body = read_json(&a.payload)?;
    let mut req = json!({ "to": a.to, "kind": a.kind, "body": body });
    if let Some(t) = a.ttl {
        req["ttl_secs"] = json!(t);
    }
    let v = c.json("POST", "/v1/messages", Some(req))?;
    println!("{}", v["id"].as_str().unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn inbox(a: ListArgs) -> anyhow::Result<ExitCode> {
    list(&a, "/v1/inbox")
}

pub(crate) fn outbox(a: ListArgs) -> anyhow::Result<ExitCode> {
    list(&a, "/v1/outbox")
}

/// Every record of a paged listing (spec/api.yaml: `limit`, `after`).
fn list_all(c: &Client, path: &str) -> anyhow::Result<Vec<Value>> {
    let limit = isnad_node::api::MAX_PAGE;
    let mut all: Vec<Value> = Vec::new();
    loop {
        let query = match all.last().and_then(|m| m["id"].as_str()) {
            Some(after) => format!("{path}?limit={limit}&after={after}"),
            None => format!("{path}?limit={limit}"),
        };
        let page = match c.json("GET", &query, None)? {
            Value::Array(page) => page,
            other => anyhow::bail!("the node answered {path} with {other}, not a list"),
        };
        let done = page.len() < limit;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

fn list(a: &ListArgs, path: &str) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.node)?;
    let v = list_all(&c, path)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    for m in &v {
        let s = |k: &str| {
            m[k].as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| m[k].to_string())
        };
        if m["direction"] == "in" {
            println!(
                "{}  from {:<16} {:<12} log#{}",
                s("id"),
                s("from"),
                s("kind"),
                s("log_index")
            );
        } else {
            println!(
                "{}  to {:<18} {:<12} {:<9} attempts {}",
                s("id"),
                s("to"),
                s("kind"),
                s("state"),
                s("attempts")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn show(a: IdArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.node)?;
    let v = c.json("GET", &format!("/v1/messages/{}", a.id), None)?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn status(a: IdArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.node)?;
    let v = c.json("GET", &format!("/v1/messages/{}/status", a.id), None)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if v["direction"] == "out" {
        println!(
            "{} to {}: {} after {} attempt(s)",
            a.id,
            v["to"].as_str().unwrap_or("?"),
            v["state"].as_str().unwrap_or("?"),
            v["attempts"]
        );
        if let Some(i) = v["peer_log_index"].as_u64() {
            println!("receipt: recipient logged it at index {i}");
        }
        if let Some(e) = v["last_error"].as_str() {
            println!("last error: {e}");
        }
    } else {
        println!(
            "{} from {}: received, logged at index {}",
            a.id,
            v["from"].as_str().unwrap_or("?"),
            v["log_index"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn checkpoint(a: CheckpointArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.node)?;
    let (status, text) = c.call(if a.now { "POST" } else { "GET" }, "/v1/checkpoint", None)?;
    if !(200..300).contains(&status) {
        anyhow::bail!("node answered {status}: {text}");
    }
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
