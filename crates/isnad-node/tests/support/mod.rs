//! Test support shared by the node's integration tests and its round-trip
//! benchmark: agencies with keys and self-signed TLS certificates, a fixed
//! directory table (so tests can change policy and addresses directly), the
//! production TLS verifiers of isnad-trust, and raw clients.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use isnad_envelope::*;
use isnad_log::{Log, SignerKey};
use isnad_node::config::Config;
use isnad_node::store::{OutState, Store};
use isnad_node::{Directory, Identity, NodeHandle, Peer};
use isnad_trust::tls::{configs, spki_sha256, PeerSet, TlsIdentity};
use ring::rand::SystemRandom;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub mod token;

/// One agency's long-lived material, kept across node restarts.
pub struct Agency {
    pub id: AgencyId,
    pub sign_pem: String,
    pub enc_pem: String,
    pub cert: Vec<u8>,
    pub tls_key: Vec<u8>,
    pub log_key: String,
    pub witness_key: String,
    pub addr: SocketAddr,
}

#[derive(Default)]
pub struct Table {
    pub agencies: HashMap<AgencyId, (SocketAddr, EncryptionPublicKey, VerifyingKey, Vec<u8>)>,
    /// Audit-log and witness verifier keys by agency.
    pub log_keys: HashMap<AgencyId, (isnad_log::VerifierKey, isnad_log::VerifierKey)>,
    pub denied_kinds: Vec<Kind>,
    /// Kinds denied to one sender only.
    pub denied_for: Vec<(AgencyId, Kind)>,
    /// Central authority of each country (for relaying).
    pub central: HashMap<String, AgencyId>,
    /// Direct traffic between countries is refused unless it is between
    /// the central authorities; it must be relayed through them.
    pub relay_only: bool,
    /// Revoked signing keys and their `revoked-at` (the end of their
    /// creation-time window too, as in a directory).
    pub revoked: HashMap<KeyId, u64>,
    /// Signing keys an agency held before its current one (listed, as a
    /// directory keeps a rotated or revoked key).
    pub former_keys: Vec<(AgencyId, VerifyingKey)>,
}

impl Table {
    fn canonical(&self, s: &AgencyId, r: &AgencyId) -> Result<Vec<AgencyId>, String> {
        isnad_trust::canonical_route(s, r, |c| self.central.get(c).cloned())
    }
    fn kind_ok(&self, s: &AgencyId, kind: Kind) -> Result<(), String> {
        if self.denied_kinds.contains(&kind)
            || self.denied_for.iter().any(|d| d.0 == *s && d.1 == kind)
        {
            Err(format!("test-rule: no {kind}"))
        } else {
            Ok(())
        }
    }
}

/// A fixed directory shared by the test nodes, and the TLS peer set the
/// production verifiers (isnad-trust) check certificates against.
#[derive(Clone, Default)]
pub struct TestDirectory(pub Arc<RwLock<Table>>, pub PeerSet);

impl SenderKeys for TestDirectory {
    fn sender_key(&self, kid: &KeyId) -> Option<SenderKey> {
        let t = self.0.read().ok()?;
        t.agencies
            .iter()
            .map(|(a, v)| (a, &v.2))
            .chain(t.former_keys.iter().map(|(a, k)| (a, k)))
            .find(|(_, k)| k.key_id() == *kid)
            .map(|(a, k)| SenderKey {
                agency: a.clone(),
                key: k.clone(),
                valid_from: None,
                valid_until: t.revoked.get(kid).copied(),
                revoked_at: t.revoked.get(kid).copied(),
            })
    }
}

impl Directory for TestDirectory {
    fn peer(&self, agency: &AgencyId) -> Option<Peer> {
        let t = self.0.read().ok()?;
        t.agencies.get(agency).map(|v| Peer::at(v.0, v.1.clone()))
    }
    fn allows(&self, s: &AgencyId, r: &AgencyId, kind: Kind) -> Result<(), String> {
        let t = self.0.read().map_err(|_| "poisoned".to_owned())?;
        t.kind_ok(s, kind)?;
        if t.relay_only && s.country() != r.country() && t.canonical(s, r)?.len() > 2 {
            return Err("test-rule: only via the central authorities".into());
        }
        Ok(())
    }
    fn route(&self, s: &AgencyId, r: &AgencyId, kind: Kind) -> Result<Vec<AgencyId>, String> {
        match self.allows(s, r, kind) {
            Ok(()) => Ok(vec![s.clone(), r.clone()]),
            Err(why) => {
                let t = self.0.read().map_err(|_| "poisoned".to_owned())?;
                t.kind_ok(s, kind)?;
                let route = t.canonical(s, r).map_err(|e| format!("{why}; {e}"))?;
                if t.relay_only && route.len() > 2 {
                    Ok(route)
                } else {
                    Err(why)
                }
            }
        }
    }
    fn allows_relayed(&self, route: &[AgencyId], kind: Kind) -> Result<(), String> {
        let t = self.0.read().map_err(|_| "poisoned".to_owned())?;
        let (Some(s), Some(r)) = (route.first(), route.last()) else {
            return Err("empty route".into());
        };
        if t.canonical(s, r)? != route {
            return Err("test-rule: not the central-authority route".into());
        }
        if kind == Kind::Receipt {
            Ok(())
        } else {
            t.kind_ok(s, kind)
        }
    }
    fn agency_of_certificate(&self, cert_der: &[u8]) -> Option<AgencyId> {
        self.1.agency_of(cert_der)
    }
    fn log_key(&self, agency: &AgencyId) -> Option<isnad_log::VerifierKey> {
        self.0
            .read()
            .ok()?
            .log_keys
            .get(agency)
            .map(|k| k.0.clone())
    }
    fn witness_key(&self, agency: &AgencyId) -> Option<isnad_log::VerifierKey> {
        self.0
            .read()
            .ok()?
            .log_keys
            .get(agency)
            .map(|k| k.1.clone())
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Table")
    }
}

pub fn free_udp_port() -> Result<SocketAddr, std::io::Error> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
    s.local_addr()
}

pub fn agency(id: &str) -> Result<Agency, Box<dyn std::error::Error>> {
    let rng = SystemRandom::new();
    let ck = rcgen::generate_simple_self_signed(vec![id.to_owned()])?;
    Ok(Agency {
        id: AgencyId::new(id)?,
        sign_pem: SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?
            .to_pkcs8_pem()
            .to_string(),
        enc_pem: EncryptionKey::generate(EncryptionCurve::X25519, &rng)?
            .to_pkcs8_pem()
            .to_string(),
        cert: ck.cert.der().to_vec(),
        tls_key: ck.signing_key.serialize_der(),
        log_key: SignerKey::generate(&format!("{id}/audit"), &rng)?.to_secret_string(),
        witness_key: SignerKey::generate_cosigner(&format!("{id}/witness"), &rng)?
            .to_secret_string(),
        addr: free_udp_port()?,
    })
}

pub fn list(dir: &TestDirectory, a: &Agency) -> TestResult {
    let sign = SigningKey::from_pkcs8_pem(&a.sign_pem)?;
    let enc = EncryptionKey::from_pkcs8_pem(&a.enc_pem)?;
    let mut t = dir.0.write().map_err(|_| "poisoned")?;
    t.agencies.insert(
        a.id.clone(),
        (
            a.addr,
            enc.public_key().clone(),
            sign.verifying_key().clone(),
            a.cert.clone(),
        ),
    );
    t.log_keys.insert(
        a.id.clone(),
        (
            SignerKey::parse(&a.log_key)?.verifier(),
            SignerKey::parse(&a.witness_key)?.verifier(),
        ),
    );
    let mut ids = std::collections::BTreeMap::new();
    for (id, v) in &t.agencies {
        ids.insert(spki_sha256(&v.3)?, id.clone());
    }
    dir.1.replace(ids);
    Ok(())
}

/// A temporary home for nodes and one directory listing a fresh agency for
/// each of `ids` (nothing started): `let (tmp, dir, [a, b]) = listed([..])?`.
pub fn listed<const N: usize>(
    ids: [&str; N],
) -> Result<(tempfile::TempDir, TestDirectory, [Agency; N]), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let mut agencies = Vec::with_capacity(N);
    for id in ids {
        let a = agency(id)?;
        list(&dir, &a)?;
        agencies.push(a);
    }
    let agencies = agencies.try_into().map_err(|_| "one agency per id")?;
    Ok((tmp, dir, agencies))
}

/// Two agencies listed in one directory, each running a node with the test
/// configuration, in a temporary home that must outlive them.
pub type Pair = (
    tempfile::TempDir,
    TestDirectory,
    [Agency; 2],
    [NodeHandle; 2],
);

/// The two-node setup of most tests and of the round-trip benchmark:
/// `let (tmp, dir, [a, b], [na, nb]) = pair("iq.moi.ahtd", "fr.mj.bepi").await?`.
pub async fn pair(a: &str, b: &str) -> Result<Pair, Box<dyn std::error::Error>> {
    pair_with(a, b, |_| {}).await
}

/// [`pair`] with `edit` applied to the first node's configuration.
pub async fn pair_with(
    a: &str,
    b: &str,
    edit: impl FnOnce(&mut Config),
) -> Result<Pair, Box<dyn std::error::Error>> {
    let (tmp, dir, [a, b]) = listed([a, b])?;
    let na = start_with(&a, &dir, tmp.path(), edit).await?;
    let nb = start(&b, &dir, tmp.path()).await?;
    Ok((tmp, dir, [a, b], [na, nb]))
}

/// The production TLS configuration (isnad-trust: TLS 1.3, ALPN, SPKI
/// pinning against the listed agencies).
pub fn tls(
    a: &Agency,
    dir: &TestDirectory,
) -> Result<(Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>), Box<dyn std::error::Error>> {
    let identity = TlsIdentity {
        cert_der: a.cert.clone(),
        key_der: a.tls_key.clone(),
    };
    Ok(configs(&identity, &dir.1)?)
}

pub async fn start(
    a: &Agency,
    dir: &TestDirectory,
    root: &Path,
) -> Result<NodeHandle, Box<dyn std::error::Error>> {
    start_with(a, dir, root, |_| {}).await
}

/// [`start`] with a change to the configuration (e.g. `[witness]`).
pub async fn start_with(
    a: &Agency,
    dir: &TestDirectory,
    root: &Path,
    edit: impl FnOnce(&mut Config),
) -> Result<NodeHandle, Box<dyn std::error::Error>> {
    start_on(a, dir, root, edit, |home| {
        let (log, _) = Log::open(&home.join("log"))?;
        Ok((log, Store::open(&home.join("state.redb"))?))
    })
    .await
}

/// Starts `a` with the test configuration changed by `edit`, on the log and
/// store `open` makes in the node's home directory.
async fn start_on(
    a: &Agency,
    dir: &TestDirectory,
    root: &Path,
    edit: impl FnOnce(&mut Config),
    open: impl FnOnce(&Path) -> Result<(Log, Store), Box<dyn std::error::Error>>,
) -> Result<NodeHandle, Box<dyn std::error::Error>> {
    let mut config = Config::parse(&format!("agency = \"{}\"\nlisten = \"{}\"\n", a.id, a.addr))?;
    config.delivery.initial_backoff_ms = 50;
    config.delivery.max_backoff_secs = 1;
    // Tests do not depend on the machine's free space (the floor's own
    // test sets it and measures free space its own way).
    config.disk.free_space_floor_bytes = 0;
    let home = root.join(a.id.as_str());
    std::fs::create_dir_all(&home)?;
    config.paths.state = home.clone();
    edit(&mut config);
    let (server, client) = tls(a, dir)?;
    let identity = Identity {
        signing_key: SigningKey::from_pkcs8_pem(&a.sign_pem)?,
        encryption_keys: vec![EncryptionKey::from_pkcs8_pem(&a.enc_pem)?],
        tls_server: server,
        tls_client: client,
        witness_key: Some(SignerKey::parse(&a.witness_key)?),
    };
    let (log, store) = open(&home)?;
    let d: Arc<dyn Directory> = Arc::new(dir.clone());
    Ok(NodeHandle::start(
        config,
        identity,
        d,
        Arc::new(log),
        SignerKey::parse(&a.log_key)?,
        store,
    )
    .await?)
}

pub fn intel(text: &str) -> Body {
    Body::IntelShare(Box::new(IntelShare {
        share_id: MessageId::from_bytes([1; 16]),
        handling: HandlingCode::H0,
        source_grading: SourceGrading::B,
        information_grading: 2,
        tlp: Tlp::Green,
        classification: "RESTRICTED".into(),
        case_id: None,
        summary: text.into(),
        content: text.into(),
        entities: vec![],
        originator: None,
        permission: None,
        attachments: Vec::new(),
        extensions: Extensions::new(),
    }))
}

pub async fn wait_state(
    node: &NodeHandle,
    id: &MessageId,
    want: OutState,
    secs: u64,
) -> TestResult {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let rec = node.store().outbox(id)?.ok_or("no outbox record")?;
        if rec.state == want {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "message {id} is {:?} ({:?}), wanted {want:?}",
                rec.state, rec.last_error
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw client: one QUIC connection with `who`'s TLS identity.
pub async fn raw_connect(
    who: &Agency,
    dir: &TestDirectory,
    to: &Agency,
) -> Result<quinn::Connection, Box<dyn std::error::Error>> {
    let (_, client) = tls(who, dir)?;
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(client)?,
    )));
    Ok(ep.connect(to.addr, to.id.as_str())?.await?)
}

/// Sends raw bytes on one stream and decodes the answer.
pub async fn raw_request(
    conn: &quinn::Connection,
    bytes: &[u8],
) -> Result<isnad_wire::Response, Box<dyn std::error::Error>> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(bytes).await?;
    send.finish()?;
    let answer = recv.read_to_end(1 << 20).await?;
    Ok(isnad_wire::Response::decode(
        answer.get(4..).ok_or("short answer")?,
    )?)
}

pub fn error_code(r: &isnad_wire::Response) -> Option<ErrorCode> {
    match r {
        isnad_wire::Response::Error { code, .. } => Some(*code),
        _ => None,
    }
}

/// iq.moi.ahtd, iq.moj.ca, fr.mj.bepi, fr.pn.ocrtis, listed with the two
/// central authorities; cross-border traffic only through them
/// (spec/relay.md).
pub fn relay_federation() -> Result<(TestDirectory, [Agency; 4]), Box<dyn std::error::Error>> {
    let dir = TestDirectory::default();
    let a = [
        agency("iq.moi.ahtd")?,
        agency("iq.moj.ca")?,
        agency("fr.mj.bepi")?,
        agency("fr.pn.ocrtis")?,
    ];
    for x in &a {
        list(&dir, x)?;
    }
    {
        let mut t = dir.0.write().map_err(|_| "poisoned")?;
        t.central.insert("iq".into(), a[1].id.clone());
        t.central.insert("fr".into(), a[2].id.clone());
        t.relay_only = true;
    }
    Ok((dir, a))
}

/// Polls `f` every 50 ms until it holds, for at most `secs` seconds.
pub async fn until<F: FnMut() -> Result<bool, Box<dyn std::error::Error>>>(
    what: &str,
    secs: u64,
    mut f: F,
) -> TestResult {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f()? {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The lifecycle refusal of a submission, if it was one.
pub fn lifecycle_err(
    r: Result<MessageId, isnad_node::NodeError>,
) -> Option<isnad_mla::LifecycleError> {
    match r {
        Err(isnad_node::NodeError::Workflow(isnad_node::workflow::WorkflowError::Lifecycle(e))) => {
            Some(e)
        }
        _ => None,
    }
}

/// The `rejected` entries of the workflow stage in a node's log.
pub fn workflow_rejections(
    n: &NodeHandle,
) -> Result<Vec<isnad_log::Entry>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for i in 0..n.log().size() {
        let e = isnad_log::Entry::decode(&n.log().entry_bytes(i)?)?;
        if e.event == isnad_log::EventType::Rejected
            && e.detail.get("stage").map(String::as_str) == Some("workflow")
        {
            out.push(e);
        }
    }
    Ok(out)
}

/// Checks that the requesting node `na` and the requested node `nb` hold
/// the same history of request `rid` (`na` also has draft → submitted),
/// `changes` changes after delivery, each logged `status-changed` with its
/// index noted. Returns the two records.
pub fn same_history(
    na: &NodeHandle,
    nb: &NodeHandle,
    rid: &MessageId,
    changes: usize,
) -> Result<(isnad_mla::RequestRecord, isnad_mla::RequestRecord), Box<dyn std::error::Error>> {
    use isnad_node::workflow;
    let ra = workflow::request(na.store(), rid)?.ok_or("record")?;
    let rb = workflow::request(nb.store(), rid)?.ok_or("record")?;
    let path = |r: &isnad_mla::RequestRecord| -> Vec<(MlaState, MlaState)> {
        r.history.iter().map(|e| (e.from, e.to)).collect()
    };
    assert_eq!(
        path(&ra)[1..],
        path(&rb)[..],
        "same path after draft → submitted"
    );
    assert_eq!(path(&ra).len(), 2 + changes);
    for (n, r) in [(na, &ra), (nb, &rb)] {
        let mut logged = Vec::new();
        for i in 0..n.log().size() {
            let e = isnad_log::Entry::decode(&n.log().entry_bytes(i)?)?;
            if e.event == isnad_log::EventType::StatusChanged
                && e.detail.get("request-id").map(String::as_str) == Some(rid.to_hex().as_str())
            {
                logged.push(e);
            }
        }
        assert_eq!(logged.len(), r.history.len());
        for (e, ev) in logged.iter().zip(&r.history) {
            assert_eq!(
                e.detail.get("to").map(String::as_str),
                Some(isnad_mla::state_name(ev.to))
            );
        }
        assert!(
            r.history.iter().all(|e| e.log_index.is_some()),
            "log indexes noted"
        );
    }
    Ok((ra, rb))
}

/// This process's resident set size in bytes (Linux: `VmRSS` in
/// /proc/self/status).
pub fn rss_bytes() -> Result<u64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS in /proc/self/status")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or("malformed VmRSS line")?
        .parse()?;
    Ok(kib * 1024)
}

/// [`start_with`], with the node's audit log and state database under the
/// fault controllers `log` and `db` (isnad_log::disk): tests fail their
/// writes and syncs (`ENOSPC`, `EIO`) or cut the power.
pub async fn start_faulty(
    a: &Agency,
    dir: &TestDirectory,
    root: &Path,
    log: &isnad_log::disk::DiskFaults,
    db: &isnad_log::disk::DiskFaults,
    edit: impl FnOnce(&mut Config),
) -> Result<NodeHandle, Box<dyn std::error::Error>> {
    start_on(a, dir, root, edit, |home| {
        let (log, _) = Log::open_with_faults(&home.join("log"), log)?;
        let (db, path) = (db.clone(), home.join("state.redb"));
        let store =
            Store::open_with_backend(move || isnad_node::storage::FaultyBackend::open(&db, &path))?;
        Ok((log, store))
    })
    .await
}
