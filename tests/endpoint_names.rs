//! Directory endpoints given as host names (as in the compose deployment):
//! resolved when the node connects, without blocking, so a name that does
//! not resolve yet is a temporary delivery failure and the message waits,
//! instead of a submission refused as "not in any trusted directory".

#![allow(clippy::unwrap_used)] // Tests panic on failure by design.

mod common;

use common::*;

/// Sets `id`'s endpoints in the draft.
fn set_endpoint(fed: &Federation, id: &str, endpoint: &str) {
    let path = fed.draft();
    let mut d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let agencies = d["agencies"].as_array_mut().unwrap();
    let a = agencies.iter_mut().find(|a| a["id"] == id).unwrap();
    a["endpoints"] = serde_json::json!([endpoint]);
    std::fs::write(&path, serde_json::to_string_pretty(&d).unwrap()).unwrap();
}

#[test]
fn a_host_name_endpoint_is_resolved_at_delivery_and_an_unresolvable_one_waits() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = Federation::new(tmp.path(), &["iq.moj.ca", "iq.moi.ahtd"]);
    let port = fed.nodes[1].quic.port();
    // The recipient listed under a name that does not resolve.
    set_endpoint(&fed, "iq.moi.ahtd", &format!("no-such-host.invalid:{port}"));
    let v2 = fed.sign(2);
    fed.import(&fed.nodes[0], &v2);
    for n in &mut fed.nodes {
        n.start();
    }
    for n in &fed.nodes {
        n.wait_api();
    }
    let (a, _) = (&fed.nodes[0], &fed.nodes[1]);
    // Accepted (not "not in any trusted directory"), and waiting.
    let id = a.send_intel("iq.moi.ahtd", "by name");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let o = isnad(&["status", "--config", p(&a.config()), &id, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        assert_eq!(v["state"], "pending", "{v}");
        if v["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot resolve endpoint no-such-host.invalid"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no resolve error: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Listed under a name that resolves: the waiting message is delivered.
    set_endpoint(&fed, "iq.moi.ahtd", &format!("localhost:{port}"));
    let v3 = fed.sign(3);
    fed.import(&fed.nodes[0], &v3);
    fed.nodes[0].wait_status(&id, "delivered", 60);
}
