//! Attachments in message bodies and receipts (spec/attachments.md §6.3,
//! spec/protocol.md §4.4b, §8): which kinds and statuses carry them, the
//! limit, and a receipt without attachments keeping its old bytes.

use isnad_envelope::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn descriptor(label: &str) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let (d, _) =
        isnad_attach::testing::fixed(label, label.as_bytes(), 64, "f.pdf", "application/pdf")?;
    // The descriptor's JSON form, taken from an mla-status that carries it.
    let status = Body::MlaStatus(MlaStatus {
        request_id: MessageId::from_bytes([2; 16]),
        status: MlaState::ResultsTransmitted,
        previous: None,
        reason: None,
        refusal_grounds: vec![],
        attachments: vec![d],
        extensions: Extensions::new(),
    });
    let v: serde_json::Value = serde_json::from_str(&body_to_json(&status)?)?;
    Ok(v["attachments"][0].clone())
}

fn status(state: &str, attachments: Vec<serde_json::Value>) -> String {
    serde_json::json!({
        "request-id": "02020202020202020202020202020202",
        "status": state,
        "attachments": attachments,
    })
    .to_string()
}

fn detail(r: Result<Body, MalformedReason>) -> String {
    match r {
        Err(MalformedReason::Body { detail, .. }) => detail,
        other => format!("not a body error: {other:?}"),
    }
}

#[test]
fn only_results_transmitted_carries_attachments_and_at_most_eight() -> TestResult {
    let a = descriptor("a")?;
    let ok = body_from_json(
        Kind::MlaStatus,
        &status("results-transmitted", vec![a.clone()]),
    )?;
    assert_eq!(ok.attachments().len(), 1);
    let back = body_from_json(Kind::MlaStatus, &body_to_json(&ok)?)?;
    assert_eq!(back, ok);
    for other in ["in-execution", "closed", "accepted"] {
        let d = detail(body_from_json(
            Kind::MlaStatus,
            &status(other, vec![a.clone()]),
        ));
        assert!(
            d.contains("only allowed with status results-transmitted"),
            "{other}: {d}"
        );
    }
    let eight: Vec<_> = (0..8)
        .map(|i| descriptor(&format!("p{i}")))
        .collect::<Result<_, _>>()?;
    let mut nine = eight.clone();
    nine.push(descriptor("p8")?);
    assert_eq!(
        body_from_json(Kind::MlaStatus, &status("results-transmitted", eight))?
            .attachments()
            .len(),
        8
    );
    let d = detail(body_from_json(
        Kind::MlaStatus,
        &status("results-transmitted", nine),
    ));
    assert!(d.contains("more than 8 attachments"), "{d}");
    let d = detail(body_from_json(
        Kind::MlaStatus,
        &status("results-transmitted", vec![a.clone(), a]),
    ));
    assert!(d.contains("repeats the ciphertext root"), "{d}");
    Ok(())
}

#[test]
fn kinds_without_attachments_refuse_the_field() -> TestResult {
    let a = descriptor("a")?;
    let retraction = serde_json::json!({
        "share-id": "07070707070707070707070707070707",
        "reason": "r",
        "attachments": [a],
    });
    let d = detail(body_from_json(
        Kind::IntelRetraction,
        &retraction.to_string(),
    ));
    assert!(d.contains("unknown field `attachments`"), "{d}");
    Ok(())
}

#[test]
fn a_receipt_without_attachments_keeps_its_bytes() -> TestResult {
    let plain = Message {
        header: Header {
            id: MessageId::from_bytes([9; 16]),
            sender: AgencyId::new("fr.pn.ocrtis")?,
            recipient: AgencyId::new("iq.moi.ahtd")?,
            created: 1_800_000_000,
            expires: 1_807_776_000,
        },
        body: Body::Receipt(Receipt {
            message_id: MessageId::from_bytes([3; 16]),
            envelope_digest: Digest([0xab; 32]),
            log_index: 41,
            received_at: 1_800_000_000,
            attachments: Vec::new(),
        }),
    };
    // The claims as a version without attachments encodes them: the four
    // body keys and nothing else.
    let claims = claims_bytes(&plain)?;
    let v: ciborium::value::Value = ciborium::de::from_reader(claims.as_slice())?;
    let body = v
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some("body")))
        .and_then(|(_, b)| b.as_map())
        .ok_or("no body")?;
    let keys: Vec<_> = body.iter().filter_map(|(k, _)| k.as_text()).collect();
    assert_eq!(
        keys,
        ["log-index", "message-id", "received-at", "envelope-digest"]
    );
    Ok(())
}

#[test]
fn a_receipt_acknowledges_exactly_the_attachments_sent_in_order() -> TestResult {
    let fixed = |l: &str| isnad_attach::testing::fixed(l, l.as_bytes(), 64, "f", "a/b");
    let (a, _) = fixed("a")?;
    let (b, _) = fixed("b")?;
    let receipt = |list: &[&isnad_attach::AttachmentDescriptor]| Receipt {
        message_id: MessageId::from_bytes([1; 16]),
        envelope_digest: Digest([0; 32]),
        log_index: 0,
        received_at: 0,
        attachments: list.iter().map(|d| ReceivedAttachment::of(d)).collect(),
    };
    let sent = [a.clone(), b.clone()];
    assert!(receipt(&[&a, &b]).acknowledges(&sent));
    assert!(!receipt(&[&b, &a]).acknowledges(&sent));
    assert!(!receipt(&[&a]).acknowledges(&sent));
    assert!(!receipt(&[]).acknowledges(&sent));
    assert!(receipt(&[]).acknowledges(&[]));
    let mut other = receipt(&[&a, &b]);
    other.attachments[1].digest = Digest([9; 32]);
    assert!(!other.acknowledges(&sent));
    Ok(())
}
