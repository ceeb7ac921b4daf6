//! The store's formats: the bytes every table holds are those the code before typed records
//! wrote: `records-v1.txt` was dumped by that code (the same records
//! written through its API) and is compared here, table by table, key by
//! key. A change of encoding fails this test; a deliberate one needs a
//! format version and a migration instead. State format 3 added three
//! tables (`outbox_unlogged`, `purged`, `retention_queue`,
//! store::retention) and changed no record: their lines were added to the
//! dump.
use isnad_envelope::*;
use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition, TableHandle as _};

use crate::store::witness::WitnessSubmitted;
use crate::store::{InboxRecord, OutState, OutboxRecord, RelayedOut, Store, Submission};

fn ag(s: &str) -> AgencyId {
    AgencyId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

const REQ: &str = r#"{"reference":"IQ-MOJ-2026-0042","requesting-authority":"Ministry of Justice, Central Authority",
        "subject":"Trafficking network","nature":"investigation","summary-of-facts":"Victims moved through third countries.",
        "offences":[{"description":"trafficking in persons","legal-provision":"Law 28/2012 art. 6","penalty":"15 years"}],
        "assistance-sought":["records"],"assistance-details":"Bank records of two accounts.",
        "confidentiality":{"required":true},"urgency":"urgent","deadline":{"date":"2026-12-15"},
        "legal-basis":["UNTOC art. 18"]}"#;

#[tokio::test]
async fn every_table_is_written_as_before() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.redb");
    let (me, peer, other) = (ag("iq.moi.ahtd"), ag("fr.mj.bepi"), ag("jo.psd.cid"));
    {
        let store = Store::open(&path)?;
        // Outbox: a direct message, delivered, and a relayed one, pending.
        let mut a = OutboxRecord::pending(
            MessageId::from_bytes([1; 16]),
            &peer,
            Kind::IntelShare,
            vec![1, 2, 3],
            1_000,
            4_600,
            1_000_500,
        );
        a.state = OutState::Delivered;
        a.attempts = 2;
        a.last_error = Some("unavailable".into());
        a.sent_index = Some(4);
        a.receipt = Some(vec![9; 7]);
        a.peer_log_index = Some(11);
        a.delivered_ms = Some(1_002_000);
        a.final_index = Some(6);
        // Submitted under an idempotency key.
        let claim = crate::idempotency::Claim::new("key-1", Digest([4; 32]))?;
        let keyed = Submission {
            claim: Some(claim),
            now_ms: 1_000_000,
            ..Submission::default()
        };
        assert!(store.insert_submission(a, keyed).await?);
        let mut b = OutboxRecord::pending(
            MessageId::from_bytes([2; 16]),
            &other,
            Kind::Relay,
            vec![4; 5],
            2_000,
            9_000,
            2_000_700,
        );
        b.relay = Some(RelayedOut {
            route: vec![me.clone(), other.clone(), peer.clone()],
            inner_digest: [7; 32],
            end_to_end_receipt: Some(vec![5; 3]),
            end_to_end_index: Some(21),
            end_to_end_missing_index: None,
        });
        // Originated here: on the end-to-end watch list.
        assert!(store.insert_submission(b, Submission::default()).await?);
        // Inbox: direct and relayed.
        let direct = InboxRecord {
            id: MessageId::from_bytes([3; 16]),
            sender: peer.clone(),
            kind: Kind::MlaStatus,
            envelope: vec![6; 4],
            digest: [8; 32],
            expires: 7_000,
            received_ms: 3_000_100,
            log_index: 12,
            receipt: vec![2; 6],
            via: Vec::new(),
        };
        store.insert_inbox(direct).await?;
        let relayed = InboxRecord {
            id: MessageId::from_bytes([4; 16]),
            sender: peer.clone(),
            kind: Kind::IntelShare,
            envelope: vec![1; 4],
            digest: [9; 32],
            expires: 8_000,
            received_ms: 3_000_200,
            log_index: 14,
            receipt: vec![3; 6],
            via: vec![peer.clone(), other.clone()],
        };
        store.insert_inbox(relayed).await?;
        // Cases: a request sent (indexes noted lazily) and one received
        // (indexes set before the commit); a share received.
        let mut m = Message {
            header: Header {
                id: MessageId::from_bytes([5; 16]),
                sender: me.clone(),
                recipient: peer.clone(),
                created: 5_000,
                expires: 9_000,
            },
            body: body_from_json(Kind::MlaRequest, REQ)?,
        };
        let plan = crate::workflow::check_outgoing(&store, &mut m, 5_000_000)?;
        assert!(store.commit_cases(plan.writes().to_vec()).await?);
        store.note_indexes(None, plan.notes(30)).await?;
        let m = Message {
            header: Header {
                id: MessageId::from_bytes([6; 16]),
                sender: peer.clone(),
                recipient: me.clone(),
                created: 6_000,
                expires: 9_000,
            },
            body: body_from_json(Kind::MlaRequest, REQ)?,
        };
        let mut plan = crate::workflow::check_incoming(&store, &m, 6_000_000)?;
        plan.set_indexes(40);
        assert!(store.commit_cases(plan.writes().to_vec()).await?);
        let share = Body::IntelShare(Box::new(IntelShare {
            share_id: MessageId::from_bytes([7; 16]),
            handling: HandlingCode::H2,
            source_grading: SourceGrading::B,
            information_grading: 2,
            tlp: Tlp::Amber,
            classification: "RESTRICTED".into(),
            case_id: Some("AHTD-OPS-19".into()),
            summary: "Departure planned".into(),
            content: "A group is to be moved.".into(),
            entities: vec![],
            originator: None,
            permission: None,
            attachments: Vec::new(),
            extensions: Extensions::new(),
        }));
        let m = Message {
            header: Header {
                id: MessageId::from_bytes([8; 16]),
                sender: peer.clone(),
                recipient: me.clone(),
                created: 7_000,
                expires: 9_000,
            },
            body: share,
        };
        let mut plan = crate::workflow::check_incoming(&store, &m, 7_000_000)?;
        plan.set_indexes(50);
        assert!(store.commit_cases(plan.writes().to_vec()).await?);
        // Witness, both roles.
        store
            .decide_witnessed("fr.mj.bepi/audit".into(), |_| {
                Ok(((), Some("fr.mj.bepi/audit\n3\nAAAA\n".into())))
            })
            .await?;
        let sub = WitnessSubmitted {
            size: 3,
            note: "n\n".into(),
            cosignature: "— w sig".into(),
        };
        store.set_witness_submitted(&other, sub).await?;
        store.set_meta("log-size", vec![0, 0, 0, 9]).await?;
    }
    let db = redb::Database::open(&path)?;
    let txn = db.begin_read()?;
    let mut out = String::new();
    for t in txn.list_tables()? {
        let name = t.name().to_owned();
        out.push_str(&format!("table {name}\n"));
        if [
            "meta",
            "witness_latest",
            "witness_submitted",
            "idempotency_keys",
        ]
        .contains(&name.as_str())
        {
            let tab = txn.open_table(TableDefinition::<&str, &[u8]>::new(&name))?;
            for i in tab.iter()? {
                let (k, v) = i?;
                // The format version (state format 2) is new: it is not a
                // record, and store::format's tests check it.
                if name == "meta" && k.value() == "schema_version" {
                    continue;
                }
                out.push_str(&format!(
                    "{} {}\n",
                    hex::encode(k.value().as_bytes()),
                    hex::encode(v.value())
                ));
            }
        } else if [
            "outbox_due",
            "outbox_awaiting_end_to_end",
            "outbox_unlogged",
            "retention_queue",
            "idempotency_by_time",
        ]
        .contains(&name.as_str())
        {
            let tab = txn.open_table(TableDefinition::<&[u8], ()>::new(&name))?;
            for i in tab.iter()? {
                let (k, _) = i?;
                out.push_str(&format!("{} -\n", hex::encode(k.value())));
            }
        } else {
            let tab = txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&name))?;
            for i in tab.iter()? {
                let (k, v) = i?;
                out.push_str(&format!(
                    "{} {}\n",
                    hex::encode(k.value()),
                    hex::encode(v.value())
                ));
            }
        }
    }
    let golden = include_str!("store/records-v1.txt");
    for (now, then) in out.lines().zip(golden.lines()) {
        assert_eq!(now, then, "a table holds other bytes than before");
    }
    assert_eq!(
        out.lines().count(),
        golden.lines().count(),
        "other tables or keys than before"
    );
    Ok(())
}
