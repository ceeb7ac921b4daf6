//! The directory watcher: signed directories an operator imports into the
//! trust store (`isnad trust import`) are accepted by the running node and
//! logged as directory changes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::federation::Federation;
use crate::node::StopSignal;
use crate::NodeHandle;

/// How often the watcher looks at the trust store's `directories/`.
const RESCAN: Duration = Duration::from_secs(3);

/// Starts the watcher as a task of `node`: it ends when the node's
/// shutdown begins (between two scans, so a directory change it accepted is
/// logged before it stops), and [`NodeHandle::shutdown`] waits for it.
pub(super) fn spawn(node: &NodeHandle, federation: Arc<Federation>, trust: PathBuf) {
    let handle = node.clone();
    node.spawn_service(move |stop| watch_trust(handle, federation, trust, stop));
}

/// Re-reads the trust directory every few seconds; directories an operator
/// imported with `isnad trust import` are accepted and logged.
async fn watch_trust(
    node: NodeHandle,
    federation: Arc<Federation>,
    trust: PathBuf,
    mut stop: StopSignal,
) {
    let mut seen: BTreeMap<PathBuf, SystemTime> = BTreeMap::new();
    loop {
        if let Ok(rd) = std::fs::read_dir(trust.join("directories")) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_none_or(|x| x != "cose") {
                    continue;
                }
                let Ok(mtime) = e.metadata().and_then(|m| m.modified()) else {
                    continue;
                };
                if seen.get(&p) == Some(&mtime) {
                    continue;
                }
                seen.insert(p.clone(), mtime);
                let Ok(bytes) = std::fs::read(&p) else {
                    continue;
                };
                match federation.import(&bytes) {
                    Ok(entries) if !entries.is_empty() => {
                        tracing::info!(file = %p.display(), "directory change accepted");
                        if let Err(e) = node.record(entries).await {
                            tracing::error!(error = %e, "could not log a directory change");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(file = %p.display(), error = %e, "directory refused"),
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RESCAN) => {}
            () = &mut stop => return,
        }
    }
}
