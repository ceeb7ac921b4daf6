//! The audit log served read-only over HTTP, exactly as the C2SP
//! tlog-tiles read path defines it (spec/audit-log.md §7.1), for auditors
//! (`isnad audit sync`) and witnesses:
//!
//! ```text
//! GET /checkpoint                  the latest signed checkpoint, with the
//!                                  witnesses' cosignatures collected so far
//! GET /tile/<L>/<N>[.p/<W>]        hash tiles
//! GET /tile/entries/<N>[.p/<W>]    entry bundles
//! ```
//!
//! Full tiles and bundles never change: they are served with
//! `Cache-Control: public, max-age=31536000, immutable`; partial ones and
//! the checkpoint with `no-store`. A path is answered only if it is the
//! canonical path of a tile the durable tree has: anything else, a tile
//! not yet complete, a malformed or non-canonical index (`x01/…`, `..`,
//! leading zeros) is 404. Request paths never reach the file system: they
//! are parsed into numbers, and the bytes come from the log
//! ([`isnad_log::Log::read_tile`]), which reads them while the node appends
//! and checks stored tiles against the tree on the way.
//!
//! Off unless `[log_http] listen` is set; a non-loopback address needs
//! `expose_to_network = true` ([`crate::config::LogHttpConfig`]). No token:
//! the log is for anyone allowed to reach the address.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use isnad_log::tiles::{self, TILE_WIDTH};

use crate::NodeHandle;

/// `Cache-Control` of a full tile or bundle.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of a partial tile or bundle and of the checkpoint.
pub const NO_STORE: &str = "no-store";
/// Tile reads in progress at once; more requests wait.
const CONCURRENT_READS: usize = 16;

#[derive(Clone)]
struct Served {
    node: NodeHandle,
    reads: Arc<tokio::sync::Semaphore>,
}

/// Serves the log of `node` on `addr` as a task of the node (shutdown
/// stops it and waits for it); returns the bound address.
pub async fn serve(node: NodeHandle, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let state = Served {
        node: node.clone(),
        reads: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_READS)),
    };
    let app = Router::new()
        .route("/checkpoint", get(checkpoint))
        .route("/tile/{*path}", get(tile))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "audit log served read-only (tlog-tiles)");
    node.spawn_service(|stop| async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "audit log HTTP endpoint stopped");
        }
    });
    Ok(bound)
}

/// A tile or bundle of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRef {
    /// The hash tile level, or `None` for an entry bundle.
    pub level: Option<u32>,
    /// The tile index.
    pub index: u64,
    /// Hashes or entries: 256 for a full one, 1..=255 for a partial one.
    pub width: u64,
}

impl TileRef {
    /// Parses the part of a request path after `tile/`; `None` unless it
    /// is the canonical path of a tile or bundle (the one
    /// [`tiles::tile_path`] and [`tiles::entries_path`] write).
    pub fn parse(path: &str) -> Option<Self> {
        let (kind, rest) = path.split_once('/')?;
        let level = match kind {
            "entries" => None,
            l => Some(decimal(l)?.try_into().ok()?),
        };
        let (index, width) = match rest.rsplit_once(".p/") {
            Some((index, width)) => (index, decimal(width)?),
            None => (rest, TILE_WIDTH),
        };
        if width == 0 {
            return None;
        }
        let mut n = 0u64;
        let groups: Vec<&str> = index.split('/').collect();
        for (i, g) in groups.iter().enumerate() {
            let digits = if i + 1 < groups.len() {
                g.strip_prefix('x')?
            } else {
                g
            };
            if digits.len() != 3 {
                return None;
            }
            n = n.checked_mul(1000)?.checked_add(decimal(digits)?)?;
        }
        let tile = Self {
            level,
            index: n,
            width,
        };
        (tile.path() == format!("tile/{path}")).then_some(tile)
    }

    /// The path inside the layout.
    pub fn path(&self) -> String {
        match self.level {
            Some(l) => tiles::tile_path(l, self.index, self.width),
            None => tiles::entries_path(self.index, self.width),
        }
    }
}

/// ASCII decimal digits only, at most 19 of them.
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

async fn checkpoint(State(s): State<Served>) -> Response {
    let note = match s.node.latest_checkpoint() {
        Some(n) => Some(n.into_bytes()),
        None => {
            let log = Arc::clone(s.node.log());
            match tokio::task::spawn_blocking(move || log.checkpoint_note()).await {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return failed(&e),
                Err(e) => return failed(&e),
            }
        }
    };
    match note {
        Some(n) => bytes(n, "text/plain; charset=utf-8", NO_STORE),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn tile(State(s): State<Served>, Path(path): Path<String>) -> Response {
    let Some(t) = TileRef::parse(&path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(_permit) = s.reads.acquire().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let log = Arc::clone(s.node.log());
    let read = tokio::task::spawn_blocking(move || match t.level {
        Some(l) => log.read_tile(l, t.index, t.width),
        None => log.read_bundle(t.index, t.width),
    })
    .await;
    let cache = if t.width == TILE_WIDTH {
        IMMUTABLE
    } else {
        NO_STORE
    };
    match read {
        Ok(Ok(Some(b))) => bytes(b, "application/octet-stream", cache),
        Ok(Ok(None)) => StatusCode::NOT_FOUND.into_response(),
        Ok(Err(e)) => failed(&e),
        Err(e) => failed(&e),
    }
}

fn bytes(body: Vec<u8>, content_type: &'static str, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response()
}

/// A read the log could not serve: logged here, 500 to the client
/// without the detail.
fn failed(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "audit log HTTP: a read failed");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_tile_paths_parse() {
        let t = |level, index, width| {
            Some(TileRef {
                level,
                index,
                width,
            })
        };
        assert_eq!(TileRef::parse("0/000"), t(Some(0), 0, 256));
        assert_eq!(TileRef::parse("1/x001/234"), t(Some(1), 1234, 256));
        assert_eq!(TileRef::parse("0/003.p/10"), t(Some(0), 3, 10));
        assert_eq!(
            TileRef::parse("entries/x001/x234/067"),
            t(None, 1_234_067, 256)
        );
        assert_eq!(TileRef::parse("entries/000.p/1"), t(None, 0, 1));
        for bad in [
            "",
            "0",
            "0/",
            "0/0",
            "0/00",
            "0/0000",
            "00/000",
            "+1/000",
            "0/x000/001",
            "0/001/002",
            "0/x001",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/010",
            "0/000.p/",
            "0/000/",
            "0/../000",
            "../../checkpoint",
            "0/%2e%2e/000",
            "entries/../../../etc/passwd",
            "0/x018/x446/x744/x073/x709/x551/616",
            "99999999999/000",
            "entry/000",
        ] {
            assert_eq!(TileRef::parse(bad), None, "{bad:?}");
        }
    }
}
