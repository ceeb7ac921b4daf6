//! `isnad audit sync URL DIR`: mirrors a log that a node serves as the
//! C2SP tlog-tiles read path (spec/audit-log.md §7.1, §9.1), incrementally.
//!
//! ```text
//! GET URL/checkpoint ─ signed by the log key? witness quorum (if asked)?
//!   same size, other root than DIR/checkpoint, or smaller ─► fork / rollback
//! GET only the tiles and bundles DIR lacks (full ones never change;
//!   partial ones are fetched at the new width)
//! verify what is new since DIR/checkpoint (verify_tiles: incremental)
//!   inconsistent ─► fork: both checkpoints kept as evidence, exit 3
//! DIR/checkpoint replaced last (synced, renamed)
//! ```
//!
//! A sync that fails leaves `DIR/checkpoint` as it was: the next one
//! starts again from it. Files are written under a temporary name,
//! synced and renamed, so a crash leaves no half file under a tile's name.

use std::collections::HashSet;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use isnad_log::note::{self, VerifierKey};
use isnad_log::tiles::{self, TILE_HEIGHT, TILE_WIDTH};
use isnad_log::{open_checkpoint, verify_tiles, Checkpoint, Problem, MAX_ENTRY_LEN};

use crate::exit;
use crate::note::WitnessArgs;

/// Directory inside DIR where the evidence of a fork is written.
const FORKS: &str = "forks";

/// `isnad audit sync URL DIR`.
pub(super) fn sync(
    url: &str,
    dir: &Path,
    key: &VerifierKey,
    witness: &WitnessArgs,
) -> anyhow::Result<ExitCode> {
    let witnesses = witness.load()?;
    let base = url.trim_end_matches('/');
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let cp_path = dir.join(tiles::CHECKPOINT_PATH);
    let prev_note = match fs::read(&cp_path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", cp_path.display())),
    };
    let prev = prev_note
        .as_deref()
        .map(|b| open_checkpoint(b, key))
        .transpose()
        .with_context(|| {
            format!(
                "{} is not a checkpoint of this log: DIR must be a mirror of it, made by `isnad audit sync`",
                cp_path.display()
            )
        })?;

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(300)))
        .build()
        .into();
    let fetch = |path: &str, limit: u64| -> anyhow::Result<Option<Vec<u8>>> {
        let url = format!("{base}/{path}");
        let mut resp = agent
            .get(&url)
            .call()
            .with_context(|| format!("cannot fetch {url}"))?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            s => anyhow::bail!("{url}: HTTP {s}"),
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(limit + 1)
            .read_to_vec()
            .with_context(|| format!("cannot read {url}"))?;
        if body.len() as u64 > limit {
            anyhow::bail!("{url}: larger than {limit} bytes");
        }
        Ok(Some(body))
    };

    let Some(served) = fetch(tiles::CHECKPOINT_PATH, note::MAX_NOTE_LEN as u64)? else {
        anyhow::bail!("{base}/checkpoint: 404, the log has no checkpoint yet");
    };
    let cp = match open_checkpoint(&served, key) {
        Ok(cp) => cp,
        Err(e) => {
            println!("FAILED: {base}/checkpoint: {e}");
            return Ok(ExitCode::from(exit::FAILED));
        }
    };
    if let Some((keys, quorum)) = &witnesses {
        if let Err(e) = isnad_log::quorum::check_witness_quorum(&served, key, keys, *quorum) {
            println!("FAILED: {base}/checkpoint: {e}");
            return Ok(ExitCode::from(exit::FAILED));
        }
    }
    if let (Some(p), Some(note)) = (&prev, &prev_note) {
        if cp.size < p.size {
            let at = evidence(dir, note, &served)?;
            println!(
                "FAILED: the log served a checkpoint of {} entries, older than the {} this mirror holds (rolled back, or a stale copy); both kept in {}",
                cp.size,
                p.size,
                at.display()
            );
            return Ok(ExitCode::from(exit::FAILED));
        }
        if cp.size == p.size && cp.root != p.root {
            return fork(dir, note, &served, p, &cp, "same size, different root");
        }
    }

    // What is new since the previous checkpoint: the tiles and bundles
    // from the ones holding its end on. The previous checkpoint's own files
    // there (its partial tiles) are verified and never change; the rest is
    // fetched, over whatever an interrupted sync left.
    let from = prev.as_ref().map_or(0, |p| p.size);
    let kept: HashSet<String> = layout(from, from).into_iter().collect();
    let mut fetched = Fetched::default();
    for (path, limit) in layout(cp.size, from)
        .into_iter()
        .filter(|p| !kept.contains(p))
        .map(|p| {
            let limit = layout_limit(&p);
            (p, limit)
        })
    {
        if let Err(e) = fetched.get(dir, &path, limit, &fetch) {
            fetched.undo();
            return Err(e);
        }
    }
    if !fetched.missing.is_empty() {
        fetched.undo();
        for m in &fetched.missing {
            println!(
                "FAILED: {base}/{m}: 404, but the checkpoint of {} entries needs it",
                cp.size
            );
        }
        return Ok(ExitCode::from(exit::FAILED));
    }
    sync_dirs(dir, &fetched.dirs)?;

    let report = match verify_tiles(dir, &served, key, prev_note.as_deref(), &mut |_, _| {}) {
        Ok(r) => r,
        Err(e) => {
            fetched.undo();
            return Err(e).context("cannot verify the mirror");
        }
    };
    if !report.is_ok() {
        // Nothing of a log that does not verify stays under a tile's name.
        fetched.undo();
    }
    if report
        .problems
        .iter()
        .any(|p| matches!(p, Problem::Inconsistent { .. }))
    {
        if let (Some(p), Some(note)) = (&prev, &prev_note) {
            return fork(dir, note, &served, p, &cp, "the consistency proof fails");
        }
    }
    if !report.is_ok() {
        for p in &report.problems {
            println!("FAILED: {p}");
        }
        println!(
            "sync FAILED: {} in what {base} serves; {} unchanged",
            crate::out::count(report.problem_count, "problem", "problems"),
            cp_path.display()
        );
        return Ok(ExitCode::from(exit::FAILED));
    }
    write_synced(dir, tiles::CHECKPOINT_PATH, &served)?;
    sync_dirs(dir, &[dir.to_owned()])?;
    println!(
        "OK: {}, origin {}, root {}",
        crate::out::count(cp.size, "entry", "entries"),
        cp.origin,
        cp.root.to_base64()
    );
    println!(
        "fetched {} and {} ({} bytes); verified {} from entry {}{}",
        crate::out::count(fetched.tiles, "tile", "tiles"),
        crate::out::count(fetched.bundles, "entry bundle", "entry bundles"),
        fetched.bytes,
        crate::out::count(cp.size - report.checked_from, "entry", "entries"),
        report.checked_from,
        match &prev {
            Some(p) => format!(", consistent with the previous checkpoint of {}", p.size),
            None => String::new(),
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// The paths of the tiles and bundles of a tree of `size` entries from
/// the ones holding entry `from` on (at every level).
fn layout(size: u64, from: u64) -> Vec<String> {
    let mut out: Vec<String> = tiles::tiles_for(size)
        .into_iter()
        .filter(|&(level, index, _)| index >= (from >> (level * TILE_HEIGHT)) / TILE_WIDTH)
        .map(|(level, index, width)| tiles::tile_path(level, index, width))
        .collect();
    for n in from / TILE_WIDTH..size.div_ceil(TILE_WIDTH) {
        out.push(tiles::entries_path(
            n,
            (size - n * TILE_WIDTH).min(TILE_WIDTH),
        ));
    }
    out
}

/// The largest valid file at `path` of the layout.
fn layout_limit(path: &str) -> u64 {
    let width = path
        .rsplit_once(".p/")
        .and_then(|(_, w)| w.parse().ok())
        .unwrap_or(TILE_WIDTH);
    if path.starts_with("tile/entries/") {
        width * (2 + MAX_ENTRY_LEN as u64)
    } else {
        width * 32
    }
}

/// Fetches a path of the layout, at most so many bytes; `None` on 404.
type Fetch<'a> = dyn Fn(&str, u64) -> anyhow::Result<Option<Vec<u8>>> + 'a;

/// What a sync fetched.
#[derive(Default)]
struct Fetched {
    tiles: u64,
    bundles: u64,
    bytes: u64,
    /// Paths the log answered 404 for.
    missing: Vec<String>,
    /// Directories files were written into.
    dirs: Vec<PathBuf>,
    /// Files written.
    written: Vec<PathBuf>,
}

impl Fetched {
    /// Fetches `path` into `dir`.
    fn get(&mut self, dir: &Path, path: &str, limit: u64, fetch: &Fetch<'_>) -> anyhow::Result<()> {
        let Some(body) = fetch(path, limit)? else {
            self.missing.push(path.to_owned());
            return Ok(());
        };
        write_synced(dir, path, &body)?;
        self.written.push(dir.join(path));
        if path.starts_with("tile/entries/") {
            self.bundles += 1;
        } else {
            self.tiles += 1;
        }
        self.bytes += body.len() as u64;
        if let Some(parent) = dir.join(path).parent() {
            if !self.dirs.iter().any(|d| d == parent) {
                self.dirs.push(parent.to_owned());
            }
        }
        Ok(())
    }

    /// Removes the files written (best effort: a file left behind is
    /// fetched again by the next sync, never trusted).
    fn undo(&self) {
        for f in &self.written {
            let _ = fs::remove_file(f);
        }
    }
}

/// Writes `data` to `dir/path` through a temporary file, synced, then
/// renamed over it.
fn write_synced(dir: &Path, path: &str, data: &[u8]) -> anyhow::Result<()> {
    let dst = dir.join(path);
    if let Some(parent) = dst.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let tmp = dst.with_extension("sync-tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_data())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, &dst).with_context(|| format!("cannot rename to {}", dst.display()))
}

/// Syncs directories (the names of the files renamed into them).
fn sync_dirs(root: &Path, dirs: &[PathBuf]) -> anyhow::Result<()> {
    let mut all: Vec<&Path> = Vec::new();
    for d in dirs {
        let mut at = Some(d.as_path());
        while let Some(p) = at.filter(|p| p.starts_with(root)) {
            if !all.contains(&p) {
                all.push(p);
            }
            at = p.parent();
        }
    }
    for d in all {
        fs::File::open(d)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot sync {}", d.display()))?;
    }
    Ok(())
}

/// Reports a fork: both checkpoints are kept as evidence, exit 3.
fn fork(
    dir: &Path,
    prev_note: &[u8],
    served: &[u8],
    prev: &Checkpoint,
    cp: &Checkpoint,
    why: &str,
) -> anyhow::Result<ExitCode> {
    let at = evidence(dir, prev_note, served)?;
    println!(
        "FORK: the log {} signed checkpoints of {} and {} entries that are not consistent ({why}); both kept as evidence in {}",
        cp.origin,
        prev.size,
        cp.size,
        at.display()
    );
    println!(
        "{} unchanged; nothing of the served log was accepted",
        dir.join(tiles::CHECKPOINT_PATH).display()
    );
    Ok(ExitCode::from(exit::WARNING))
}

/// Writes both checkpoints into a new directory under `DIR/forks/`.
fn evidence(dir: &Path, prev_note: &[u8], served: &[u8]) -> anyhow::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut n = 0u32;
    let at = loop {
        let at = dir.join(FORKS).join(format!("{secs}-{n}"));
        if !at.exists() {
            break at;
        }
        n += 1;
    };
    let rel = at
        .strip_prefix(dir)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| at.clone());
    let rel = rel.to_string_lossy();
    write_synced(dir, &format!("{rel}/previous-checkpoint"), prev_note)?;
    write_synced(dir, &format!("{rel}/served-checkpoint"), served)?;
    sync_dirs(dir, std::slice::from_ref(&at))?;
    Ok(at)
}
