//! An attachment transfer to a real node process that is killed with
//! SIGKILL mid-transfer (spec/transport.md §10.4): after the restart the
//! sender resumes from the receiver's durable point, re-sending only what
//! was not yet durable, and the receiver ends with the exact ciphertext.
//! The sender is a node assembled from its directory in this process; the
//! receiver is `isnad node run`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use isnad_node::node_dir::NodeDir;

/// The receiver's durable point for `root` (its `.held` file), 0 if none.
fn held(attachments: &Path, root: &str) -> u64 {
    std::fs::read(attachments.join(format!("{root}.held")))
        .ok()
        .and_then(|b| {
            b.get(..8)
                .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
        })
        .unwrap_or(0)
}

fn edit(config: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    assert!(text.contains(from), "{from} not in {}", config.display());
    std::fs::write(config, text.replace(from, to)).unwrap();
}

/// The receiver's attachment directory (under its state directory).
fn attachments_dir(node: &NodeProc) -> PathBuf {
    let config = isnad_node::config::Config::load(&node.config()).unwrap();
    config.paths.state.join("attachments")
}

#[test]
fn sigkill_of_the_receiver_mid_transfer_resumes_from_its_durable_point() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = Federation::new(tmp.path(), &["iq.moi.ahtd", "iq.moj.ca"]);
    // The sender notices a dead peer within 3 s (not the default 30 s);
    // the receiver syncs every 1 MiB (4 chunks of 256 KiB).
    edit(
        &fed.nodes[0].config(),
        "idle_timeout_secs = 30",
        "idle_timeout_secs = 3",
    );
    edit(
        &fed.nodes[1].config(),
        "sync_every_bytes = 4194304",
        "sync_every_bytes = 1048576",
    );
    let file = tmp.path().join("extraction.bin");
    std::fs::write(&file, vec![0x42u8; 48 << 20]).unwrap(); // 192 chunks
    let receiver_dir = attachments_dir(&fed.nodes[1]);
    let b: isnad_envelope::AgencyId = fed.nodes[1].id.parse().unwrap();
    fed.nodes[1].start();
    fed.nodes[1].wait_api();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sender = rt
        .block_on(async { NodeDir::open(&fed.nodes[0].config())?.start().await })
        .unwrap();
    let node = sender.node.clone();
    let desc = rt
        .block_on(node.stage_outgoing(
            &file,
            isnad_attach::MediaType::new("application/octet-stream").unwrap(),
        ))
        .unwrap();
    let root = desc.ciphertext_root();
    let chunks = desc.layout().chunks();
    assert_eq!(chunks, 192);

    // Push, and SIGKILL the receiver once 16 chunks are durable there.
    let push = {
        let (node, b, root) = (node.clone(), b.clone(), root);
        rt.spawn(async move { node.push_attachment(&b, &root).await })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let hex = root.to_hex();
    while held(&receiver_dir, &hex) < 16 {
        assert!(
            Instant::now() < deadline,
            "the receiver never made 16 chunks durable"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    fed.nodes[1].kill9();
    let at_kill = held(&receiver_dir, &hex);
    let first = rt.block_on(push).unwrap();
    assert!(first.is_err(), "the push outlived the receiver: {first:?}");
    assert!(at_kill < chunks, "the transfer finished before the kill");

    // Restart; the push resumes from the durable point.
    fed.nodes[1].start();
    fed.nodes[1].wait_api();
    let report = rt.block_on(node.push_attachment(&b, &root)).unwrap();
    eprintln!("killed at durable chunk {at_kill} of {chunks}; resumed: {report:?}");
    assert!(report.resumed_from >= at_kill, "{report:?}");
    assert_eq!(report.chunks_sent, chunks - report.resumed_from);
    // Re-sent after the crash: what was durable is never sent again, so
    // at most the chunks between the last sync and the kill.
    assert!(
        report.chunks_sent <= chunks - at_kill,
        "re-sent more than was not durable: {report:?}"
    );
    let mine = node.staged(&root).unwrap();
    let theirs = std::fs::read(receiver_dir.join(format!("{hex}.ct"))).unwrap();
    assert_eq!(std::fs::read(&mine.path).unwrap(), theirs);
    rt.block_on(sender.shutdown());
    fed.nodes[1].stop();
}
