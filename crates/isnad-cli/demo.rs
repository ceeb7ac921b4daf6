//! `isnad demo`: a local federation of four real nodes on loopback — Iraq's
//! anti-trafficking directorate and central authority, a partner country's
//! central authority and police — walking an MLA request and an
//! intelligence share end to end, then exporting and verifying every audit
//! log and matching both ends of every exchange.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use isnad_envelope::*;
use isnad_log::{SignerKey, VerifierKey};
use isnad_node::store::OutState;
use isnad_trust::{fingerprint, Directory, Role, Rule, Selector, TrustStore};
use ring::rand::SystemRandom;

use crate::directory::node_entry;
use isnad_node::node_dir::RunningNode;

use crate::node_cmd::{create_node, start, unix_now};

mod relayed;

/// Arguments of `isnad demo`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  cargo run --release -- demo\n  isnad demo --keep /tmp/isnad-demo   # leave the federation on disk to explore\n\n\
Exit code 0 only if every message was delivered with a verified receipt and\n\
every exported audit log verified and matched its peers."
)]
pub(crate) struct DemoArgs {
    /// Keep the federation in this directory (created; must be empty or absent).
    #[arg(long)]
    keep: Option<PathBuf>,
}

struct Agency {
    id: &'static str,
    role: Role,
    names: &'static [(&'static str, &'static str)],
}

const AGENCIES: [Agency; 4] = [
    Agency {
        id: "iq.moi.ahtd",
        role: Role::LawEnforcement,
        names: &[
            ("ar", "مديرية مكافحة الاتجار بالبشر، وزارة الداخلية"),
            ("en", "Anti-Trafficking Directorate, Ministry of Interior"),
        ],
    },
    Agency {
        id: "iq.moj.ca",
        role: Role::CentralAuthority,
        names: &[
            ("ar", "وزارة العدل — السلطة المركزية"),
            ("en", "Ministry of Justice, Central Authority"),
        ],
    },
    Agency {
        id: "fr.mj.bepi",
        role: Role::CentralAuthority,
        names: &[
            (
                "fr",
                "Ministère de la Justice, Bureau de l'entraide pénale internationale",
            ),
            ("en", "Ministry of Justice, MLA Office"),
        ],
    },
    Agency {
        id: "fr.pn.ocrtis",
        role: Role::LawEnforcement,
        names: &[
            ("fr", "Police nationale, OCRTEH"),
            ("en", "National Police, trafficking office"),
        ],
    },
];

fn say(line: &str) {
    println!("{line}");
}

fn free_port() -> anyhow::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn rule(id: &str, from: Selector, to: Selector, kinds: &[Kind], via: bool) -> Rule {
    Rule {
        id: id.into(),
        from,
        to,
        kinds: kinds.to_vec(),
        via_central_authority: via,
    }
}

fn sel(country: Option<&str>, role: Option<Role>) -> Selector {
    Selector {
        agency: None,
        role,
        country: country.map(str::to_owned),
    }
}

pub(crate) fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let tmp;
    let base: PathBuf = match &a.keep {
        Some(d) => {
            if d.exists() && std::fs::read_dir(d)?.next().is_some() {
                anyhow::bail!("{} is not empty; give --keep a new directory", d.display());
            }
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_owned()
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ok = rt.block_on(demo(&base))?;
    if let Some(d) = &a.keep {
        say(&format!("\nThe federation is in {}. Try:", d.display()));
        say(&format!(
            "  isnad directory show {0}/iq-directory.cose --root {0}/iq-root/root.pub.cose",
            d.display()
        ));
        say(&format!(
            "  isnad node run --config {}/iq.moj.ca/config.toml",
            d.display()
        ));
        say(&format!(
            "  isnad audit verify {0}/exports/iq.moj.ca --verifier-key {0}/iq.moj.ca/keys/log.pub",
            d.display()
        ));
        say(&format!(
            "  isnad audit cross-check {0}/exports/iq.moj.ca {0}/exports/fr.mj.bepi \\\n    \
--verifier-key-a {0}/iq.moj.ca/keys/log.pub --verifier-key-b {0}/fr.mj.bepi/keys/log.pub",
            d.display()
        ));
        say(&format!(
            "  isnad audit report {0}/exports/* --verifier-key … --out report.html   (one --verifier-key per export)",
            d.display()
        ));
    }
    if ok {
        say("\nDEMO PASSED: every message delivered once with a verified receipt; every audit log verified.");
        Ok(ExitCode::SUCCESS)
    } else {
        say("\nDEMO FAILED: see the lines marked FAIL above.");
        Ok(ExitCode::from(crate::exit::FAILED))
    }
}

async fn demo(base: &Path) -> anyhow::Result<bool> {
    let rng = SystemRandom::new();
    say("== Isnad demo: a local federation on loopback ==");
    // 1. Roots and nodes.
    let mut roots = std::collections::BTreeMap::new();
    for cc in ["iq", "fr"] {
        let dir = base.join(format!("{cc}-root"));
        std::fs::create_dir_all(&dir)?;
        let key = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?;
        crate::keys::write_private(&dir.join("root.key.pem"), key.to_pkcs8_pem().as_bytes())?;
        crate::keys::write_public(
            &dir.join("root.pub.cose"),
            &key.verifying_key().to_cose_key(),
        )?;
        say(&format!(
            "root of {}: fingerprint {}",
            cc.to_uppercase(),
            fingerprint(key.verifying_key())
        ));
        roots.insert(cc, key);
    }
    let mut endpoints = Vec::new();
    for ag in &AGENCIES {
        let id = AgencyId::new(ag.id)?;
        let quic = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let api = SocketAddr::from((
            [127, 0, 0, 1],
            std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
        ));
        create_node(&base.join(ag.id), &id, quic, api, None)?;
        lower_free_space_floor(&base.join(ag.id).join("config.toml"))?;
        endpoints.push(quic);
    }
    // Every node asks the three others to witness its log (spec/witness.md);
    // two cosignatures make a checkpoint witnessed.
    for ag in &AGENCIES {
        let path = base.join(ag.id).join("config.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut cfg = isnad_node::config::Config::parse(&text).map_err(|e| anyhow::anyhow!(e))?;
        cfg.witness.witnesses = AGENCIES
            .iter()
            .filter(|w| w.id != ag.id)
            .map(|w| AgencyId::new(w.id))
            .collect::<Result<_, _>>()?;
        cfg.witness.quorum = WITNESS_QUORUM;
        let text = format!(
            "# Isnad node configuration (isnad demo: witnessed by the three other nodes).\n{}",
            cfg.to_toml().map_err(|e| anyhow::anyhow!(e))?
        );
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    // 2. Directories with policy, signed by each root.
    let mut dirs = std::collections::BTreeMap::new();
    for cc in ["iq", "fr"] {
        let mut d = Directory::new(cc);
        for (ag, ep) in AGENCIES.iter().zip(&endpoints) {
            if ag.id.starts_with(cc) {
                let names: Vec<String> = ag.names.iter().map(|(l, n)| format!("{l}={n}")).collect();
                d.agencies.push(node_entry(
                    &base.join(ag.id),
                    ag.role,
                    vec![ep.to_string()],
                    &names,
                )?);
            }
        }
        let ca = Some(Role::CentralAuthority);
        let le = Some(Role::LawEnforcement);
        d.policy = vec![
            rule(
                &format!("{cc}-internal"),
                sel(Some(cc), None),
                sel(Some(cc), None),
                &[],
                false,
            ),
            rule(
                &format!("{cc}-mla-ca-to-ca"),
                sel(None, ca),
                sel(None, ca),
                &[
                    Kind::MlaRequest,
                    Kind::MlaStatus,
                    Kind::Receipt,
                    Kind::Error,
                ],
                false,
            ),
            rule(
                &format!("{cc}-intel-police"),
                sel(None, le),
                sel(None, le),
                &[
                    Kind::IntelShare,
                    Kind::PermissionRequest,
                    Kind::PermissionAnswer,
                    Kind::IntelRetraction,
                    Kind::IntelCorrection,
                ],
                false,
            ),
            rule(
                &format!("{cc}-mla-via-ca"),
                sel(None, le),
                sel(None, le),
                &[Kind::MlaRequest, Kind::MlaStatus],
                true,
            ),
        ];
        let now = unix_now()?;
        d.version = 1;
        d.issued_at = now;
        d.valid_from = now.saturating_sub(300);
        d.valid_until = now + 90 * 86400;
        let signed = d.sign(&roots[cc], &rng)?;
        std::fs::write(base.join(format!("{cc}-directory.cose")), &signed)?;
        say(&format!(
            "signed the {} directory v1: {}, {}",
            cc.to_uppercase(),
            crate::out::count(d.agencies.len() as u64, "agency", "agencies"),
            crate::out::count(d.policy.len() as u64, "policy rule", "policy rules")
        ));
        dirs.insert(cc, signed);
    }
    // 3. Each node trusts its own root, imports the partner's, holds both directories.
    for ag in &AGENCIES {
        let own = &ag.id[..2];
        let other = if own == "iq" { "fr" } else { "iq" };
        let mut store = TrustStore::new(own, roots[own].verifying_key().clone());
        store.add_partner(other, roots[other].verifying_key().clone())?;
        let now = unix_now()?;
        store.accept(&dirs["iq"], now)?;
        store.accept(&dirs["fr"], now)?;
        store.save(&base.join(ag.id).join("trust"))?;
    }
    say("each node trusts its own root and the partner's, and holds both signed directories");
    say(&format!(
        "each node's audit log is witnessed by the three others (quorum {WITNESS_QUORUM} of 3)\n"
    ));
    // 4. Start the nodes.
    let mut nodes: Vec<RunningNode> = Vec::new();
    for ag in &AGENCIES {
        let r = start(&base.join(ag.id).join("config.toml"))
            .await
            .with_context(|| format!("starting {}", ag.id))?;
        say(&format!(
            "node {:<13} QUIC {}  API http://{}",
            ag.id,
            r.node
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            r.api
        ));
        nodes.push(r);
    }
    let node = |id: &str| {
        nodes
            .iter()
            .find(|n| n.node.agency().as_str() == id)
            .map(|n| &n.node)
            .context("no such node")
    };
    let mut ok = true;
    let mut delivered: Vec<(String, String, MessageId)> = Vec::new();

    // 5. The exchanges.
    let send = |from: &'static str, to: &'static str, body: Body, what: &str| {
        let (from, to, what) = (from.to_owned(), to.to_owned(), what.to_owned());
        let n = node(&from).cloned();
        async move {
            let n = n?;
            let id = n.submit(AgencyId::new(&to)?, body, Some(7 * 86400)).await?;
            let state = tokio::time::timeout(Duration::from_secs(20), n.wait_final(&id))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            let rec = n.store().outbox(&id)?.context("outbox record")?;
            let good = state == Some(OutState::Delivered);
            say(&format!(
                "{} {from} → {to}: {what}; id {}; {}",
                if good { "  ok " } else { "  FAIL" },
                &id.to_hex()[..12],
                match (good, rec.peer_log_index) {
                    (true, Some(i)) =>
                        format!("signed receipt verified, recipient logged it at index {i}"),
                    _ => format!("not delivered: {:?}", rec.last_error),
                }
            ));
            anyhow::Ok((good, from, to, id))
        }
    };
    let mut relayed_exchanges = Vec::new();
    say("\n-- an MLA request: Iraqi directorate → French police, relayed by both central authorities");
    say("   (end to end encrypted to fr.pn.ocrtis; iq.moj.ca and fr.mj.bepi endorse and forward routing metadata only)");
    let (moi, ocrtis) = (node("iq.moi.ahtd")?, node("fr.pn.ocrtis")?);
    let (g, x) = relayed::send(moi, ocrtis, mla_request(), "mla-request").await?;
    ok &= g;
    let request_hex = x.id();
    relayed_exchanges.push(x);
    say(
        "\n-- the executing agency works the request; each status change travels back the same way",
    );
    for (state, reason) in [
        (MlaState::Registered, None),
        (MlaState::UnderReview, None),
        (
            MlaState::SupplementRequested,
            Some("please state the account numbers"),
        ),
        (MlaState::UnderReview, Some("supplement received")),
        (MlaState::Accepted, None),
        (MlaState::InExecution, None),
        (
            MlaState::ResultsTransmitted,
            Some("bank records sent under separate cover"),
        ),
    ] {
        let body = relayed::status(request_hex, state, reason);
        let name = relayed::name(state);
        let (g, x) = relayed::send(ocrtis, moi, body, &format!("mla-status {name}")).await?;
        ok &= g && relayed::agree(moi, ocrtis, request_hex, state)?;
        relayed_exchanges.push(x);
        if state == MlaState::UnderReview && reason.is_none() {
            // Only the requested side decides on a request under review.
            ok &= relayed::refuse_wrong_side(moi, request_hex).await?;
        }
    }
    say("\n-- the requesting side closes the request once it has the results");
    let closed = relayed::status(request_hex, MlaState::Closed, Some("results received"));
    let (g, x) = relayed::send(moi, ocrtis, closed, "mla-status closed").await?;
    ok &= g && relayed::agree(moi, ocrtis, request_hex, MlaState::Closed)?;
    relayed_exchanges.push(x);
    ok &= relayed::history(moi, ocrtis, request_hex)?;
    let on_route: Vec<&isnad_node::NodeHandle> = nodes.iter().map(|n| &n.node).collect();
    ok &= relayed::check(&on_route, &relayed_exchanges)?;
    say("\n-- the central authorities exchange a message directly (policy allows CA to CA)");
    {
        let (g, f, t, id) = send(
            "iq.moj.ca",
            "fr.mj.bepi",
            mla_request(),
            "mla-request, central authority to central authority",
        )
        .await?;
        ok &= g;
        delivered.push((f, t, id));
    }
    say("\n-- intelligence: Iraqi directorate → French police (H2, TLP:AMBER+STRICT)");
    {
        let (g, f, t, id) = send("iq.moi.ahtd", "fr.pn.ocrtis", intel(), "intel-share").await?;
        ok &= g;
        delivered.push((f, t, id));
    }
    say("\n-- policy at work: central authorities do not carry police intelligence, so there is no route");
    match node("iq.moj.ca")?
        .submit(AgencyId::new("fr.pn.ocrtis")?, intel(), None)
        .await
    {
        Err(e) => say(&format!("  ok  refused before anything was sent: {e}")),
        Ok(id) => {
            ok = false;
            say(&format!("  FAIL the unroutable message {id} was accepted"));
        }
    }
    // 6. The recipient reads a message: decrypted on read, from the stored envelope.
    let reader = node("fr.pn.ocrtis")?;
    if let Some(rec) = reader.store().inbox_by_id(&request_hex)?.first() {
        let opened = reader.read_inbox(rec)?;
        if let Body::MlaRequest(r) = &opened.message.body {
            say(&format!(
                "\nfr.pn.ocrtis reads request {}: \"{}\" from {}",
                &request_hex.to_hex()[..12],
                r.subject,
                opened.message.header.sender
            ));
        }
    }
    // 7. Checkpoints, then stop the nodes and hand the logs to the auditor.
    say("\n-- signed checkpoints (C2SP signed notes), cosigned by the partners as witnesses");
    for n in &nodes {
        n.node.checkpoint_now().await?;
    }
    for n in &nodes {
        ok &= witnessed(&n.node).await?;
    }
    for n in &nodes {
        n.node.shutdown().await;
    }
    say("\n-- the auditor: export every log (C2SP tlog-tiles), verify it offline, match both ends");
    let mut logs = Vec::new();
    for n in &nodes {
        let agency = n.node.agency();
        let keys = &n.config.paths.keys;
        let signer = SignerKey::parse(std::fs::read_to_string(keys.join("log.key"))?.trim())?;
        let verifier = VerifierKey::parse(std::fs::read_to_string(keys.join("log.pub"))?.trim())?;
        let out = base.join("exports").join(agency.as_str());
        // The node owns its log directory; export through its handle.
        n.node.log().export(&out, &signer)?;
        // What an auditor does with the export alone: verify it, read it back.
        let (report, log) = isnad_log::read_verified_export(&out, &verifier)?;
        let good = log.is_some();
        ok &= good;
        say(&format!(
            "  {} {agency}: {} entries, export verified offline: {}",
            if good { "ok  " } else { "FAIL" },
            report.checkpoint.size,
            if good {
                "yes".into()
            } else {
                format!("{:?}", report.problems)
            }
        ));
        logs.extend(log);
    }
    let trusted = nodes
        .iter()
        .filter(|n| n.federation.snapshot().is_some())
        .count();
    debug_assert_eq!(trusted, nodes.len());
    // Both ends of every exchange (`isnad audit cross-check`, spec/cross-check.md):
    // sent + receipt-received at the sender, received + receipt-sent at the
    // recipient, one envelope digest, receipts naming the recipient's
    // `received` index; every pair of logs that exchanged anything.
    let mut matched = 0;
    for (i, a) in logs.iter().enumerate() {
        for b in &logs[i + 1..] {
            let check = isnad_log::cross_check(a, b, isnad_log::crosscheck::DEFAULT_SKEW_MS)?;
            let n = check.counts;
            if n.exchanges == 0 {
                continue;
            }
            matched += n.matched;
            let clean = check.findings.is_empty();
            ok &= clean;
            say(&format!(
                "  {} {} <-> {}: {} exchanges, {} matched, {} refused, {} findings",
                if clean { "ok  " } else { "FAIL" },
                check.a.agency,
                check.b.agency,
                n.exchanges,
                n.matched,
                n.refused,
                check.findings.len()
            ));
            for f in &check.findings {
                say(&format!(
                    "       {} message {} {} -> {}: {}",
                    f.class,
                    f.message_id.to_hex(),
                    f.sender,
                    f.recipient,
                    f.detail
                ));
            }
        }
    }
    // A relayed message is one end-to-end exchange plus one per hop, and as
    // many hops again for its end-to-end receipt.
    let expected = delivered.len() as u64 + relayed::exchanges(&relayed_exchanges);
    let all = matched == expected;
    ok &= all;
    say(&format!(
        "  {} both ends of {matched}/{expected} delivered exchanges match (digests and receipt indexes)",
        if all { "ok  " } else { "FAIL" },
    ));
    Ok(ok)
}

/// Cosignatures that make a demo node's checkpoint witnessed (of 3).
const WITNESS_QUORUM: usize = 2;

/// Waits (10 s at most) until the node's latest checkpoint is cosigned by
/// all its witnesses, then prints it with their cosignature lines.
async fn witnessed(node: &isnad_node::NodeHandle) -> anyhow::Result<bool> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let s = node.witness_status()?;
        let all = s.own.cosigned_by.len() == s.own.witnesses.len();
        if all || tokio::time::Instant::now() >= deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let own = &status.own;
    let good = own.witnessed;
    say(&format!(
        "{} {}: checkpoint at size {} cosigned by {} of {} witnesses (quorum {}): {}",
        if good { "  ok " } else { "  FAIL" },
        node.agency(),
        own.size,
        own.cosigned_by.len(),
        own.witnesses.len(),
        own.quorum,
        if good { "witnessed" } else { "NOT witnessed" }
    ));
    for line in node.latest_checkpoint().unwrap_or_default().lines() {
        say(&format!("       {line}"));
    }
    Ok(good)
}

fn mla_request() -> Body {
    Body::MlaRequest(Box::new(MlaRequest {
        reference: "IQ-MOI-AHTD-2026-0042".into(),
        requesting_authority: "مديرية مكافحة الاتجار بالبشر — Anti-Trafficking Directorate, Ministry of Interior, Iraq".into(),
        requested_authority: Some("Ministère de la Justice (BEPI), France".into()),
        subject: "Recruitment of Iraqi nationals through fictitious job offers in Europe".into(),
        nature: ProceedingNature::Investigation,
        summary_of_facts: "Since 2025 a network has recruited victims online and moved them through third countries; payments went through French accounts.".into(),
        offences: vec![Offence { description: "trafficking in persons".into(), legal_provision: "Law No. 28 of 2012, art. 6".into(), penalty: "imprisonment up to 15 years".into() }],
        assistance_sought: vec![AssistanceType::Records, AssistanceType::LocatingPersons],
        assistance_details: "Account records for two accounts; current address of one suspect.".into(),
        persons: vec![Person { role: PersonRole::Suspect, name: "أحمد علي".into(), name_latin: Some("Ahmed Ali".into()), date_of_birth: Some("1988-03-14".into()), nationality: Some("IQ".into()), identifiers: None }],
        procedure: None,
        confidentiality: Confidentiality { required: true, reason: Some("ongoing investigation".into()) },
        urgency: Urgency::Urgent,
        deadline: Some(Deadline { date: "2026-12-15".into(), reason: Some("trial date".into()) }),
        legal_basis: vec!["UNTOC art. 18".into()],
        case_references: vec![CaseReference { authority: "Baghdad Investigative Court".into(), reference: "2026/117".into() }],
        attachments: Vec::new(),
        extensions: Extensions::new(),
    }))
}

fn intel() -> Body {
    Body::IntelShare(Box::new(IntelShare {
        share_id: MessageId::from_bytes([0x5a; 16]),
        handling: HandlingCode::H2,
        source_grading: SourceGrading::B,
        information_grading: 2,
        tlp: Tlp::AmberStrict,
        classification: "RESTRICTED".into(),
        case_id: Some("AHTD-OPS-19".into()),
        summary: "Departure of a group planned for early December".into(),
        content:
            "A group of 12 is expected to be moved through Marseille in the first week of December."
                .into(),
        entities: vec![Entity {
            entity_type: EntityType::Phone,
            value: "+964 770 000 0000".into(),
            note: Some("organiser".into()),
        }],
        originator: None,
        permission: None,
        attachments: Vec::new(),
        extensions: Extensions::new(),
    }))
}

/// The demo's free-space floor: its nodes live in a temporary directory on
/// whatever disk the machine has, so they keep working down to 64 MiB free
/// (a real node keeps the 1 GiB default, deploy/README.md).
const DEMO_FREE_SPACE_FLOOR: u64 = 64 << 20;

fn lower_free_space_floor(config: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let default =
        isnad_node::config::Config::parse("agency = \"xx.demo\"\nlisten = \"127.0.0.1:1\"\n")
            .map_err(|e| anyhow::anyhow!(e))?
            .disk
            .free_space_floor_bytes;
    let from = format!("free_space_floor_bytes = {default}");
    anyhow::ensure!(
        text.contains(&from),
        "{} has no {from} line to lower",
        config.display()
    );
    let text = text.replace(
        &from,
        &format!("free_space_floor_bytes = {DEMO_FREE_SPACE_FLOOR}"),
    );
    std::fs::write(config, text).with_context(|| format!("cannot write {}", config.display()))
}
