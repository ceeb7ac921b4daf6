//! The acceptance rules of issue 3: wrong root, rollback, expiry, revoked
//! keys before and after revocation, the policy table, and TLS refusals over
//! real QUIC on loopback.

use std::collections::BTreeMap;
use std::sync::Arc;

use isnad_envelope::*;
use isnad_trust::tls::{configs, spki_sha256, PeerSet, TlsIdentity};
use isnad_trust::*;
use ring::rand::SystemRandom;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const T0: u64 = 1_800_000_000;

struct Node {
    id: AgencyId,
    sign: SigningKey,
    enc: EncryptionKey,
    tls: TlsIdentity,
}

fn node(id: &str) -> Result<Node, Box<dyn std::error::Error>> {
    let rng = SystemRandom::new();
    let id = AgencyId::new(id)?;
    Ok(Node {
        tls: TlsIdentity::generate(&id)?,
        id,
        sign: SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?,
        enc: EncryptionKey::generate(EncryptionCurve::P256, &rng)?,
    })
}

fn entry(n: &Node, role: Role) -> Result<AgencyEntry, Box<dyn std::error::Error>> {
    let mut names = BTreeMap::new();
    names.insert(
        "ar".into(),
        "وزارة الداخلية — مديرية مكافحة الاتجار بالبشر".into(),
    );
    names.insert("en".into(), format!("Agency {}", n.id));
    Ok(AgencyEntry {
        id: n.id.clone(),
        names,
        role,
        endpoints: vec!["127.0.0.1:7401".into()],
        tls_spki_sha256: n.tls.spki_sha256()?,
        signing_keys: vec![KeyEntry {
            key: n.sign.verifying_key().to_cose_key(),
            valid_from: T0 - 86400,
            valid_until: None,
            revoked_at: None,
            revocation_reason: None,
        }],
        encryption_keys: vec![KeyEntry {
            key: n.enc.public_key().to_cose_key(),
            valid_from: T0 - 86400,
            valid_until: None,
            revoked_at: None,
            revocation_reason: None,
        }],
        log_key: None,
        witness_key: None,
    })
}

fn directory(
    country: &str,
    version: u64,
    agencies: Vec<AgencyEntry>,
    policy: Vec<Rule>,
) -> Directory {
    let mut d = Directory::new(country);
    d.version = version;
    d.issued_at = T0;
    d.valid_from = T0 - 3600;
    d.valid_until = T0 + 30 * 86400;
    d.agencies = agencies;
    d.policy = policy;
    d
}

fn rule(id: &str, from: Selector, to: Selector, kinds: Vec<Kind>, via: bool) -> Rule {
    Rule {
        id: id.into(),
        from,
        to,
        kinds,
        via_central_authority: via,
    }
}

fn country(c: &str) -> Selector {
    Selector {
        country: Some(c.into()),
        ..Selector::default()
    }
}

fn role(r: Role) -> Selector {
    Selector {
        role: Some(r),
        ..Selector::default()
    }
}

fn root() -> Result<SigningKey, Box<dyn std::error::Error>> {
    Ok(SigningKey::generate(
        SignatureAlgorithm::Ed25519,
        &SystemRandom::new(),
    )?)
}

#[test]
fn wrong_root_older_version_and_expiry_are_refused() -> TestResult {
    let rng = SystemRandom::new();
    let (iq_root, fr_root, rogue) = (root()?, root()?, root()?);
    let a = node("iq.moi.ahtd")?;
    let mut store = TrustStore::new("iq", iq_root.verifying_key().clone());
    let v2 =
        directory("iq", 2, vec![entry(&a, Role::LawEnforcement)?], vec![]).sign(&iq_root, &rng)?;
    assert!(matches!(
        store.accept(&v2, T0)?,
        Accepted::Updated { version: 2, .. }
    ));
    // The same bytes again: nothing happens.
    assert_eq!(store.accept(&v2, T0)?, Accepted::Unchanged);
    // Older version: rollback.
    let v1 =
        directory("iq", 1, vec![entry(&a, Role::LawEnforcement)?], vec![]).sign(&iq_root, &rng)?;
    assert_eq!(
        store.accept(&v1, T0),
        Err(TrustError::Rollback {
            held: 2,
            offered: 1
        })
    );
    // Same version, other content: conflict.
    let v2b = directory("iq", 2, vec![], vec![]).sign(&iq_root, &rng)?;
    assert_eq!(store.accept(&v2b, T0), Err(TrustError::VersionConflict(2)));
    // Signed by an unknown root.
    let forged = directory("iq", 3, vec![], vec![]).sign(&rogue, &rng)?;
    assert_eq!(store.accept(&forged, T0), Err(TrustError::UnknownRoot));
    // Signed by France's root but claiming to be Iraq's directory.
    store.add_partner("fr", fr_root.verifying_key().clone())?;
    let cross = directory("iq", 3, vec![], vec![]).sign(&fr_root, &rng)?;
    assert_eq!(store.accept(&cross, T0), Err(TrustError::WrongRoot));
    // A tampered signature.
    let mut bad = directory("iq", 3, vec![], vec![]).sign(&iq_root, &rng)?;
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(store.accept(&bad, T0), Err(TrustError::BadSignature));
    // Expired and not yet valid.
    let v3 = directory("iq", 3, vec![], vec![]).sign(&iq_root, &rng)?;
    assert!(matches!(
        store.accept(&v3, T0 + 31 * 86400),
        Err(TrustError::Expired { .. })
    ));
    assert!(matches!(
        store.accept(&v3, T0 - 7200),
        Err(TrustError::NotYetValid { .. })
    ));
    // Replacing a partner's root is refused.
    assert_eq!(
        store.add_partner("fr", rogue.verifying_key().clone()),
        Err(TrustError::RootConflict("fr".into()))
    );
    // A held directory stops counting once it expires.
    assert!(store.agency(&a.id, T0).is_some());
    assert!(store.agency(&a.id, T0 + 31 * 86400).is_none());
    Ok(())
}

#[test]
fn revoked_key_refused_after_revocation_accepted_before() -> TestResult {
    let rng = SystemRandom::new();
    let iq_root = root()?;
    let (a, b) = (node("iq.moi.ahtd")?, node("iq.moj.ca")?);
    let mut store = TrustStore::new("iq", iq_root.verifying_key().clone());
    let v1 = directory(
        "iq",
        1,
        vec![
            entry(&a, Role::LawEnforcement)?,
            entry(&b, Role::CentralAuthority)?,
        ],
        vec![],
    );
    store.accept(&v1.sign(&iq_root, &rng)?, T0)?;
    // Version 2 revokes a's signing key at T0 + 100 and adds a new one.
    let new_key = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?;
    let mut v2 = v1.clone();
    v2.version = 2;
    v2.agencies[0].signing_keys[0].revoked_at = Some(T0 + 100);
    v2.agencies[0].signing_keys[0].revocation_reason = Some("laptop stolen".into());
    v2.agencies[0].signing_keys.push(KeyEntry {
        key: new_key.verifying_key().to_cose_key(),
        valid_from: T0 + 100,
        valid_until: None,
        revoked_at: None,
        revocation_reason: None,
    });
    let changes = match store.accept(&v2.sign(&iq_root, &rng)?, T0 + 200)? {
        Accepted::Updated { changes, .. } => changes,
        Accepted::Unchanged => return Err("expected an update".into()),
    };
    assert!(changes
        .iter()
        .any(|c| matches!(c, Change::KeyRevoked { at, .. } if *at == T0 + 100)));
    assert!(changes
        .iter()
        .any(|c| matches!(c, Change::KeyAdded { kid, .. } if *kid == new_key.key_id())));

    struct At<'a>(&'a TrustStore, u64);
    impl SenderKeys for At<'_> {
        fn sender_key(&self, kid: &KeyId) -> Option<SenderKey> {
            self.0.sender_key(kid, self.1)
        }
    }
    let send = |signer: &SigningKey,
                created: u64|
     -> Result<Result<Opened, OpenError>, Box<dyn std::error::Error>> {
        let m = Message {
            header: Header {
                id: MessageId::random(&rng)?,
                sender: a.id.clone(),
                recipient: b.id.clone(),
                created,
                expires: created + 86400,
            },
            body: Body::Error(ErrorBody {
                code: ErrorCode::Unavailable,
                message_id: None,
                detail: None,
            }),
        };
        let env = seal(
            &m,
            signer,
            &store.encryption_key(&b.id, T0 + 200).ok_or("no key")?,
            &Limits::default(),
            &rng,
        )?;
        let keys = [EncryptionKey::from_pkcs8_pem(&b.enc.to_pkcs8_pem())?];
        let opener = Opener {
            me: &b.id,
            keys: &keys,
            limits: Limits::default(),
        };
        Ok(opener.open(
            &env,
            T0 + 200,
            &At(&store, T0 + 200),
            &mut MemoryReplayGuard::default(),
        ))
    };
    // Signed with the old key before the revocation time: accepted.
    assert!(send(&a.sign, T0 + 50)?.is_ok());
    // After: refused (opaque to the peer, key-not-valid locally).
    match send(&a.sign, T0 + 150)? {
        Err(OpenError::Unauthentic(u)) => assert_eq!(u.detail(), UnauthenticDetail::KeyNotValid),
        other => return Err(format!("expected key-not-valid, got {other:?}").into()),
    }
    // The new key works from its start, not before.
    assert!(send(&new_key, T0 + 150)?.is_ok());
    assert!(send(&new_key, T0 + 50)?.is_err());
    Ok(())
}

#[test]
fn policy_allow_deny_table() -> TestResult {
    let rng = SystemRandom::new();
    let (iq_root, fr_root) = (root()?, root()?);
    let moi = node("iq.moi.ahtd")?;
    let moj = node("iq.moj.ca")?;
    let frmj = node("fr.mj.bepi")?;
    let frpn = node("fr.pn.ocrtis")?;
    let iq_policy = vec![
        rule("iq-internal", country("iq"), country("iq"), vec![], false),
        rule(
            "iq-ca-out",
            role(Role::CentralAuthority),
            role(Role::CentralAuthority),
            vec![Kind::MlaRequest, Kind::MlaStatus],
            false,
        ),
        rule(
            "iq-police-intel",
            role(Role::LawEnforcement),
            Selector {
                country: Some("fr".into()),
                role: Some(Role::LawEnforcement),
                agency: None,
            },
            vec![Kind::IntelShare],
            false,
        ),
        rule(
            "iq-mla-via-ca",
            role(Role::LawEnforcement),
            country("fr"),
            vec![Kind::MlaRequest],
            true,
        ),
    ];
    let fr_policy = vec![
        rule("fr-internal", country("fr"), country("fr"), vec![], false),
        rule(
            "fr-ca-in",
            role(Role::CentralAuthority),
            role(Role::CentralAuthority),
            vec![Kind::MlaRequest, Kind::MlaStatus],
            false,
        ),
        rule(
            "fr-police-intel",
            Selector {
                country: Some("iq".into()),
                role: Some(Role::LawEnforcement),
                agency: None,
            },
            role(Role::LawEnforcement),
            vec![Kind::IntelShare],
            false,
        ),
        rule(
            "fr-mla-via-ca",
            country("iq"),
            role(Role::LawEnforcement),
            vec![Kind::MlaRequest],
            true,
        ),
    ];
    let mut store = TrustStore::new("iq", iq_root.verifying_key().clone());
    store.add_partner("fr", fr_root.verifying_key().clone())?;
    store.accept(
        &directory(
            "iq",
            1,
            vec![
                entry(&moi, Role::LawEnforcement)?,
                entry(&moj, Role::CentralAuthority)?,
            ],
            iq_policy,
        )
        .sign(&iq_root, &rng)?,
        T0,
    )?;
    store.accept(
        &directory(
            "fr",
            1,
            vec![
                entry(&frmj, Role::CentralAuthority)?,
                entry(&frpn, Role::LawEnforcement)?,
            ],
            fr_policy,
        )
        .sign(&fr_root, &rng)?,
        T0,
    )?;
    let table: [(&AgencyId, &AgencyId, Kind, bool, Option<&str>); 8] = [
        (
            &moi.id,
            &moj.id,
            Kind::MlaRequest,
            false,
            Some("iq-internal"),
        ),
        (
            &moj.id,
            &frmj.id,
            Kind::MlaRequest,
            false,
            Some("iq-ca-out"),
        ),
        (&moj.id, &frmj.id, Kind::IntelShare, false, None),
        (
            &moi.id,
            &frpn.id,
            Kind::IntelShare,
            false,
            Some("iq-police-intel"),
        ),
        (&moi.id, &frmj.id, Kind::MlaRequest, false, None),
        (&moi.id, &frpn.id, Kind::MlaRequest, false, None),
        (&frpn.id, &moi.id, Kind::IntelShare, false, None),
        (
            &frmj.id,
            &frpn.id,
            Kind::MlaStatus,
            false,
            Some("fr-internal"),
        ),
    ];
    for (s, r, k, via, want) in table {
        let d = store.evaluate(s, r, k, via, T0);
        match (want, &d) {
            (Some(rule), Decision::Allowed { outgoing, .. }) => {
                assert_eq!(outgoing, rule, "{s}→{r} {k}")
            }
            (None, Decision::Denied(why)) => assert!(!why.is_empty()),
            _ => return Err(format!("{s}→{r} {k}: got {d:?}, wanted {want:?}").into()),
        }
    }
    // A denial names the rule that requires the central authorities.
    match store.evaluate(&moi.id, &frmj.id, Kind::MlaRequest, false, T0) {
        Decision::Denied(why) => assert!(why.contains("iq-mla-via-ca"), "{why}"),
        d => return Err(format!("{d:?}").into()),
    }
    // Routing (spec/relay.md §2): direct where allowed, else through both
    // central authorities; a relayed message must take exactly that route.
    let via_both = vec![
        moi.id.clone(),
        moj.id.clone(),
        frmj.id.clone(),
        frpn.id.clone(),
    ];
    assert_eq!(
        store.route(&moi.id, &frpn.id, Kind::IntelShare, T0),
        Ok(vec![moi.id.clone(), frpn.id.clone()])
    );
    assert_eq!(
        store.route(&moi.id, &frpn.id, Kind::MlaRequest, T0),
        Ok(via_both.clone())
    );
    assert_eq!(
        store.route(&moj.id, &frmj.id, Kind::MlaRequest, T0),
        Ok(vec![moj.id.clone(), frmj.id.clone()])
    );
    // Not allowed relayed either: the denial comes back.
    assert!(store
        .route(&frpn.id, &moi.id, Kind::MlaRequest, T0)
        .is_err());
    assert_eq!(store.check_relayed(&via_both, Kind::MlaRequest, T0), Ok(()));
    let skipping = [moi.id.clone(), frmj.id.clone(), frpn.id.clone()];
    assert!(store
        .check_relayed(&skipping, Kind::MlaRequest, T0)
        .is_err());
    assert!(store.check_relayed(&via_both, Kind::MlaStatus, T0).is_err());
    Ok(())
}

#[test]
fn spki_hash_is_over_the_subject_public_key_info() -> TestResult {
    let ck = rcgen::generate_simple_self_signed(vec!["iq.moi.ahtd".to_owned()])?;
    let want = ring::digest::digest(
        &ring::digest::SHA256,
        &rcgen::PublicKeyData::subject_public_key_info(&ck.signing_key),
    );
    assert_eq!(spki_sha256(ck.cert.der())?.as_slice(), want.as_ref());
    Ok(())
}

#[test]
fn directory_round_trips_and_rejects_unknown_fields() -> TestResult {
    let rng = SystemRandom::new();
    let r = root()?;
    let a = node("iq.moi.ahtd")?;
    let d = directory("iq", 1, vec![entry(&a, Role::LawEnforcement)?], vec![]);
    let signed = d.sign(&r, &rng)?;
    let back = verify_signed(&signed, r.verifying_key())?;
    assert_eq!(back, d);
    assert!(back.agencies[0].names["ar"].contains("الداخلية"));
    // An agency of another country in the Iraqi directory is refused at signing.
    let fr = node("fr.mj.bepi")?;
    assert!(
        directory("iq", 1, vec![entry(&fr, Role::CentralAuthority)?], vec![])
            .sign(&r, &rng)
            .is_err()
    );
    // Unknown key in the payload.
    let mut v: ciborium::value::Value = ciborium::de::from_reader(d.to_cbor()?.as_slice())?;
    if let ciborium::value::Value::Map(m) = &mut v {
        m.push((
            ciborium::value::Value::Text("extra".into()),
            ciborium::value::Value::Bool(true),
        ));
    }
    let bytes = cbor::to_deterministic_vec(&v);
    assert!(matches!(
        Directory::from_cbor(&bytes),
        Err(TrustError::Malformed(_))
    ));
    Ok(())
}

async fn handshake(
    client_id: &TlsIdentity,
    client_peers: &PeerSet,
    server_id: &TlsIdentity,
    server_peers: &PeerSet,
    name: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let ends = (client_id, client_peers, server_id, server_peers);
    handshake_offering(ends, name, None).await.map(|_| ())
}

/// A handshake whose client offers `offer` as its ALPN list (`None`: this
/// release's); returns the protocol negotiated.
async fn handshake_offering(
    (client_id, client_peers, server_id, server_peers): (
        &TlsIdentity,
        &PeerSet,
        &TlsIdentity,
        &PeerSet,
    ),
    name: &str,
    offer: Option<&[&[u8]]>,
) -> Result<Option<Vec<u8>>, Box<dyn std::error::Error>> {
    let (server_tls, _) = configs(server_id, server_peers)?;
    let (_, mut client_tls) = configs(client_id, client_peers)?;
    if let Some(offer) = offer {
        let mut c = (*client_tls).clone();
        c.alpn_protocols = offer.iter().map(|p| p.to_vec()).collect();
        client_tls = Arc::new(c);
    }
    let server = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(
            quinn::crypto::rustls::QuicServerConfig::try_from(server_tls)?,
        )),
        "127.0.0.1:0".parse()?,
    )?;
    let addr = server.local_addr()?;
    let accept = tokio::spawn(async move {
        let inc = server.accept().await.ok_or("no connection")?;
        let conn = inc.await.map_err(|e| e.to_string())?;
        let (mut s, mut r) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        let got = r.read_to_end(64).await.map_err(|e| e.to_string())?;
        s.write_all(&got).await.map_err(|e| e.to_string())?;
        s.finish().map_err(|e| e.to_string())?;
        conn.closed().await;
        Ok::<(), String>(())
    });
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(client_tls)?,
    )));
    let conn = client.connect(addr, name)?.await?;
    let protocol = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    // TLS 1.3: a refused client certificate can surface on first use.
    let (mut s, mut r) = conn.open_bi().await?;
    s.write_all(b"ping").await?;
    s.finish()?;
    let echo = r.read_to_end(64).await?;
    conn.close(0u32.into(), b"done");
    accept.abort();
    if echo == b"ping" {
        Ok(protocol)
    } else {
        Err("no echo".into())
    }
}

#[tokio::test]
async fn tls_accepts_listed_peers_and_refuses_unlisted() -> TestResult {
    let (a, b, stranger) = (node("iq.moi.ahtd")?, node("fr.mj.bepi")?, node("de.bka.x")?);
    let listed = PeerSet::default();
    let mut ids = BTreeMap::new();
    ids.insert(a.tls.spki_sha256()?, a.id.clone());
    ids.insert(b.tls.spki_sha256()?, b.id.clone());
    listed.replace(ids);
    // Both listed: the handshake completes and data flows.
    handshake(&a.tls, &listed, &b.tls, &listed, "fr.mj.bepi").await?;
    // An unlisted client is refused by the server.
    assert!(
        handshake(&stranger.tls, &listed, &b.tls, &listed, "fr.mj.bepi")
            .await
            .is_err()
    );
    // An unlisted server is refused by the client.
    assert!(
        handshake(&a.tls, &listed, &stranger.tls, &listed, "fr.mj.bepi")
            .await
            .is_err()
    );
    // A listed server answering for another agency's name is refused.
    assert!(handshake(&a.tls, &listed, &b.tls, &listed, "iq.moi.ahtd")
        .await
        .is_err());
    // Updating the set takes effect for new handshakes.
    listed.replace(BTreeMap::new());
    assert!(handshake(&a.tls, &listed, &b.tls, &listed, "fr.mj.bepi")
        .await
        .is_err());
    Ok(())
}

/// spec/transport.md §1.1: a partner still on the release before (which
/// offered exactly `isnad/1`) and a partner of a later release (offering a
/// newer version first, then `isnad/1`) both agree on `isnad/1` with this
/// release; a partner offering no version this release speaks is refused
/// in the handshake.
#[tokio::test]
async fn alpn_agrees_with_the_previous_and_a_later_release_and_refuses_others() -> TestResult {
    let (a, b) = (node("iq.moi.ahtd")?, node("fr.mj.bepi")?);
    let listed = PeerSet::default();
    let mut ids = BTreeMap::new();
    ids.insert(a.tls.spki_sha256()?, a.id.clone());
    ids.insert(b.tls.spki_sha256()?, b.id.clone());
    listed.replace(ids);
    let ends = (&a.tls, &listed, &b.tls, &listed);
    let name = "fr.mj.bepi";
    assert_eq!(tls::ALPN_PROTOCOLS[0], b"isnad/1");
    let previous: &[&[u8]] = &[b"isnad/1"];
    let later: &[&[u8]] = &[b"isnad/2", b"isnad/1"];
    for offer in [None, Some(previous), Some(later)] {
        let got = handshake_offering(ends, name, offer).await?;
        assert_eq!(got.as_deref(), Some(&b"isnad/1"[..]), "{offer:?}");
    }
    let unknown: &[&[u8]] = &[b"isnad/2"];
    let other: &[&[u8]] = &[b"h3"];
    for offer in [unknown, other] {
        assert!(
            handshake_offering(ends, name, Some(offer)).await.is_err(),
            "{offer:?}"
        );
    }
    Ok(())
}
