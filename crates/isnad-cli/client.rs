//! `isnad send | inbox | outbox | show | status | checkpoint`: the local API's
//! operations from the command line (spec/api.yaml).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use isnad_node::config::Config;
use serde_json::{json, Value};

use crate::out::{utc, utc_secs};

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
    after_help = "Example:\n  isnad send --config node/config.toml --to fr.mj.bepi --kind mla-request --payload deploy/examples/mla-request.json\n\n\
Prints the message id once the node has stored the message durably; delivery\n\
follows in the background (see `isnad status ID`). deploy/examples/ holds a\n\
payload for every kind a case system sends. The request carries an\n\
Idempotency-Key and is retried when the connection to the node fails, so a\n\
broken connection never sends the message twice."
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
    /// Idempotency key sent with the request (default: a new random one).
    /// Running the command again with the same key and payload prints the
    /// same id instead of sending a second message (for 24 hours).
    #[arg(long)]
    idempotency_key: Option<String>,
}

/// Arguments of `isnad show` and `isnad status`.
#[derive(Debug, clap::Args)]
pub(crate) struct IdArgs {
    #[command(flatten)]
    node: NodeRef,
    /// Message id: 32 hex characters, or any prefix of it that only one
    /// message in the inbox or outbox has (as the demo prints).
    id: String,
    /// Print the API's JSON instead of a summary.
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

/// Delays between attempts of `isnad send` when the connection to the node
/// fails or the node is still processing the same key (about 30 s in all).
const SEND_RETRY_DELAYS_MS: [u64; 7] = [250, 500, 1000, 2000, 4000, 8000, 12000];

pub(crate) fn send(a: SendArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.node)?;
    let body = read_json(&a.payload)?;
    let mut req = json!({ "to": a.to, "kind": a.kind, "body": body });
    if let Some(t) = a.ttl {
        req["ttl_secs"] = json!(t);
    }
    let key = match a.idempotency_key {
        Some(k) => k,
        None => {
            let mut r = [0u8; 16];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut r)
                .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
            hex::encode(r)
        }
    };
    // The node would refuse it (413) and close the connection while it is
    // still being sent, which looks like an unreachable node: say so here.
    let size = serde_json::to_vec(&req)?.len();
    if size > c.body_limit {
        anyhow::bail!(
            "the request is {size} bytes; the node accepts at most {} \
             (twice limits.max_envelope_bytes plus 64 KiB); send less",
            c.body_limit
        );
    }
    let url = format!("{}/v1/messages", c.base);
    let auth = format!("Bearer {}", c.token);
    let mut delays = SEND_RETRY_DELAYS_MS.iter();
    let (status, text) = loop {
        let attempt = c
            .agent
            .post(&url)
            .header("authorization", &auth)
            .header("idempotency-key", &key)
            .send_json(&req);
        let why = match attempt {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                match resp.body_mut().read_to_string() {
                    Ok(text) if status == 409 && error_code(&text) == "idempotency-key-in-use" => {
                        "the node is still processing the first attempt".to_owned()
                    }
                    Ok(text) => break (status, text),
                    Err(e) => e.to_string(),
                }
            }
            Err(
                e @ (ureq::Error::Io(_)
                | ureq::Error::Timeout(_)
                | ureq::Error::ConnectionFailed
                | ureq::Error::Protocol(_)),
            ) => e.to_string(),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot reach the node's API at {}", c.base))
            }
        };
        let Some(ms) = delays.next() else {
            anyhow::bail!(
                "cannot reach the node's API at {} ({why}) — is the node running? (isnad node run) \
                 The message may have been stored: run the command again with \
                 --idempotency-key {key} to find out without sending it twice",
                c.base
            );
        };
        eprintln!("isnad send: {why}; retrying in {ms} ms (Idempotency-Key {key})");
        std::thread::sleep(std::time::Duration::from_millis(*ms));
    };
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !(200..300).contains(&status) {
        let msg = v
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("request failed");
        anyhow::bail!("node answered {status}: {msg}");
    }
    println!("{}", v["id"].as_str().unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

/// The `error` field of an API error body (spec/api.yaml `Error`).
fn error_code(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
        .unwrap_or_default()
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
    let rows: &[Value] = &v;
    let inbox = path == "/v1/inbox";
    if rows.is_empty() {
        println!(
            "{}",
            if inbox {
                "no received messages"
            } else {
                "no sent messages"
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    if inbox {
        println!(
            "{:<32}  {:<20} {:<20} {:<24} LOG#",
            "ID", "FROM", "KIND", "RECEIVED (UTC)"
        );
    } else {
        println!(
            "{:<32}  {:<20} {:<20} {:<10} {:>8}  CREATED (UTC)",
            "ID", "TO", "KIND", "STATE", "ATTEMPTS"
        );
    }
    for m in rows {
        let s = |k: &str| {
            m[k].as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| m[k].to_string())
        };
        if inbox {
            println!(
                "{:<32}  {:<20} {:<20} {:<24} {}",
                s("id"),
                s("from"),
                s("kind"),
                m["received_ms"].as_u64().map(utc).unwrap_or_default(),
                s("log_index")
            );
        } else {
            println!(
                "{:<32}  {:<20} {:<20} {:<10} {:>8}  {}",
                s("id"),
                s("to"),
                s("kind"),
                s("state"),
                s("attempts"),
                m["created"].as_u64().map(utc_secs).unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The full id for `raw`: itself when it is 32 hex characters, else the one
/// inbox or outbox message whose id starts with it.
pub(crate) fn resolve_id(c: &Client, raw: &str) -> anyhow::Result<String> {
    let raw = raw.trim().to_ascii_lowercase();
    if raw.is_empty() || raw.len() > 32 || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        anyhow::bail!("{raw:?} is not a message id (32 hex characters) or a prefix of one");
    }
    if raw.len() == 32 {
        return Ok(raw);
    }
    let mut found = std::collections::BTreeSet::new();
    for path in ["/v1/inbox", "/v1/outbox"] {
        for m in &list_all(c, path)? {
            if let Some(id) = m["id"].as_str().filter(|id| id.starts_with(&raw)) {
                found.insert(id.to_owned());
            }
        }
    }
    let mut found = found.into_iter();
    match (found.next(), found.len()) {
        (Some(id), 0) => Ok(id),
        (None, _) => {
            anyhow::bail!("no message in the inbox or outbox has an id starting with {raw}")
        }
        (Some(_), more) => anyhow::bail!(
            "{} messages have an id starting with {raw}: give more characters",
            more + 1
        ),
    }
}

/// `isnad show`: a summary for people; `--json` prints the API's JSON.
pub(crate) fn show(a: IdArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.node)?;
    let id = resolve_id(&c, &a.id)?;
    let v = c.json("GET", &format!("/v1/messages/{id}"), None)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let s = |x: &Value, k: &str| x[k].as_str().unwrap_or("-").to_owned();
    // The receipt is a COSE_Sign1 (spec/protocol.md): say so instead of
    // printing its hex, which --json carries as receipt_hex.
    let receipt = |v: &Value| {
        v["receipt_hex"].as_str().map(|h| {
            format!(
                "COSE_Sign1, {} (hex: --json, receipt_hex)",
                crate::out::count(h.len() as u64 / 2, "byte", "bytes")
            )
        })
    };
    if v["direction"] == "in" {
        let m = &v["message"];
        println!("message {id}, received");
        println!("  from      {}", s(&v, "from"));
        println!("  kind      {}", s(&v, "kind"));
        println!(
            "  received  {}",
            v["received_ms"].as_u64().map(utc).unwrap_or_default()
        );
        println!(
            "  created   {}",
            m["created"].as_u64().map(utc_secs).unwrap_or_default()
        );
        println!(
            "  expires   {}",
            v["expires"].as_u64().map(utc_secs).unwrap_or_default()
        );
        println!(
            "  logged    at index {} of this node's audit log",
            v["log_index"]
        );
        if let Some(via) = v["via"].as_array() {
            let via: Vec<&str> = via.iter().filter_map(Value::as_str).collect();
            println!("  via       {}", via.join(" → "));
        }
        println!("  envelope  sha256 {}", s(&v, "envelope_sha256"));
        if let Some(r) = receipt(&v) {
            println!("  receipt   returned to the sender, signed by this node: {r}");
        }
        if m["kind"] == "relay" {
            print_relay_hop(&m["body"]);
        } else {
            println!("body (decrypted):");
            println!("{}", serde_json::to_string_pretty(&m["body"])?);
        }
    } else {
        println!(
            "message {id}, sent (content is not kept: the envelope is sealed to the recipient)"
        );
        println!("  to        {}", s(&v, "to"));
        println!("  kind      {}", s(&v, "kind"));
        println!(
            "  state     {} after {}",
            s(&v, "state"),
            crate::out::count(v["attempts"].as_u64().unwrap_or(0), "attempt", "attempts")
        );
        println!(
            "  created   {}",
            v["created"].as_u64().map(utc_secs).unwrap_or_default()
        );
        println!(
            "  expires   {}",
            v["expires"].as_u64().map(utc_secs).unwrap_or_default()
        );
        if let Some(i) = v["sent_log_index"].as_u64() {
            println!("  logged    sent at index {i} of this node's audit log");
        }
        if let Some(t) = v["delivered_ms"].as_u64() {
            println!("  delivered {}", utc(t));
        }
        if let Some(i) = v["peer_log_index"].as_u64() {
            println!("  peer log  the next hop logged it at index {i}");
        }
        if let Some(route) = v["route"].as_array() {
            let route: Vec<&str> = route.iter().filter_map(Value::as_str).collect();
            println!("  relayed   route {}", route.join(" → "));
            println!(
                "  inner     envelope sha256 {}",
                s(&v, "inner_envelope_sha256")
            );
            match v["end_to_end_log_index"].as_u64() {
                Some(i) => println!("  end-to-end the final recipient logged it at index {i}"),
                None => println!("  end-to-end no receipt from the final recipient yet"),
            }
        }
        println!("  envelope  sha256 {}", s(&v, "envelope_sha256"));
        if let Some(r) = receipt(&v) {
            println!("  receipt   signed by the next hop: {r}");
        }
        if let Some(e) = v["last_error"].as_str() {
            println!("  last error {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A relay hop (spec/relay.md) in words: its body is routing metadata and
/// an end-to-end envelope this node cannot open, not content to print as hex.
fn print_relay_hop(body: &Value) {
    let s = |k: &str| body[k].as_str().unwrap_or("-").to_owned();
    let route: Vec<&str> = body["route"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let hex_len = |v: &Value| v.as_str().map_or(0, str::len) as u64 / 2;
    println!("relay hop (decrypted routing metadata; spec/relay.md):");
    println!("  route     {}", route.join(" → "));
    println!(
        "  inner     message {} ({}), expires {}",
        s("inner-id"),
        s("inner-kind"),
        body["inner-expires"]
            .as_u64()
            .map(utc_secs)
            .unwrap_or_default()
    );
    println!(
        "  inner     end-to-end envelope sealed to {}, {}, sha256 {}: opaque to relays",
        route.last().copied().unwrap_or("-"),
        crate::out::count(hex_len(&body["inner"]), "byte", "bytes"),
        s("inner-digest")
    );
    println!(
        "  endorsed  by {} (COSE_Sign1 each; the bytes are in --json)",
        crate::out::count(
            body["endorsements"].as_array().map_or(0, Vec::len) as u64,
            "hop",
            "hops"
        )
    );
}

pub(crate) fn status(a: IdArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.node)?;
    let id = resolve_id(&c, &a.id)?;
    let v = c.json("GET", &format!("/v1/messages/{id}/status"), None)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if v["direction"] == "out" {
        println!(
            "{id} to {}: {} after {}",
            v["to"].as_str().unwrap_or("?"),
            v["state"].as_str().unwrap_or("?"),
            crate::out::count(v["attempts"].as_u64().unwrap_or(0), "attempt", "attempts")
        );
        if let Some(i) = v["peer_log_index"].as_u64() {
            println!("receipt: recipient logged it at index {i}");
        }
        if let Some(e) = v["last_error"].as_str() {
            println!("last error: {e}");
        }
    } else {
        println!(
            "{id} from {}: received, logged at index {}",
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
