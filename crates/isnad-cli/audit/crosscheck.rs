//! `isnad audit cross-check` and `isnad audit report`: glue over
//! `isnad_log::crosscheck` and `isnad_log::report` (spec/cross-check.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use isnad_log::note::VerifierKey;
use isnad_log::report::LogInput;
use isnad_log::{read_verified_export, AuditError, AuditedLog, CrossCheck};

use crate::note::WitnessArgs;

use super::{read_verifier, VERIFY_FAILED};

/// One export after verification: the log, or what is wrong with it.
pub(crate) struct Loaded {
    pub(crate) label: String,
    pub(crate) log: Option<AuditedLog>,
    pub(crate) problems: Vec<String>,
    /// The trusted key, `name+keyid`.
    pub(crate) key: String,
}

/// Verifies the export in `dir` and reads it back. IO trouble with the
/// inputs (unreadable key or directory) is an error (exit 1); a failed
/// verification is a [`Loaded`] without a log.
pub(crate) fn load(
    dir: &Path,
    key_file: &Path,
    witnesses: Option<&(Vec<VerifierKey>, usize)>,
) -> anyhow::Result<Loaded> {
    let key = read_verifier(key_file)?;
    let label = dir.display().to_string();
    let key_label = format!("{}+{:08x}", key.name(), key.key_id());
    match read_verified_export(dir, &key) {
        Ok((report, Some(log))) => {
            if let Some((keys, quorum)) = witnesses {
                let quorum =
                    crate::note::check_export(dir, &key, &report.checkpoint, keys, *quorum)?;
                if let Err(e) = quorum {
                    return Ok(Loaded {
                        label,
                        log: None,
                        problems: vec![format!("checkpoint: {e}")],
                        key: key_label,
                    });
                }
            }
            Ok(Loaded {
                label,
                log: Some(log),
                problems: Vec::new(),
                key: key_label,
            })
        }
        Ok((report, None)) => {
            let mut problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
            let more = report.problem_count - report.problems.len() as u64;
            if more > 0 {
                problems.push(format!(
                    "… and {} more",
                    crate::out::count(more, "problem", "problems")
                ));
            }
            Ok(Loaded {
                label,
                log: None,
                problems,
                key: key_label,
            })
        }
        Err(AuditError::Directory { path, source }) => {
            anyhow::bail!("cannot read export directory {}: {source}", path.display())
        }
        Err(e) => Ok(Loaded {
            label,
            log: None,
            problems: vec![e.to_string()],
            key: key_label,
        }),
    }
}

pub(crate) fn cross_check(
    a: &Path,
    b: &Path,
    key_a: &Path,
    key_b: &Path,
    json: bool,
    skew_secs: u64,
    witness: &WitnessArgs,
) -> anyhow::Result<ExitCode> {
    let witnesses = witness.load()?;
    let la = load(a, key_a, witnesses.as_ref())?;
    let lb = load(b, key_b, witnesses.as_ref())?;
    let (Some(ga), Some(gb)) = (&la.log, &lb.log) else {
        if json {
            let invalid: Vec<_> = [("a", &la), ("b", &lb)]
                .iter()
                .flat_map(|(side, l)| {
                    l.problems
                        .iter()
                        .map(move |p| serde_json::json!({"log": side, "problem": p}))
                })
                .collect();
            let out = serde_json::json!({
                "version": isnad_log::crosscheck::JSON_VERSION,
                "clean": false,
                "invalid": invalid,
            });
            println!("{out:#}");
        } else {
            for l in [&la, &lb] {
                for p in &l.problems {
                    println!("FAILED: {}: {p}", l.label);
                }
            }
            println!("cross-check FAILED: an export does not verify on its own");
        }
        return Ok(ExitCode::from(VERIFY_FAILED));
    };
    let check = isnad_log::cross_check(ga, gb, skew_secs.saturating_mul(1000))
        .context("cannot cross-check these two logs")?;
    if json {
        println!("{:#}", check.to_json());
    } else {
        print_text(&check);
    }
    Ok(if check.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(VERIFY_FAILED)
    })
}

fn print_text(c: &CrossCheck) {
    for (side, l) in [("A", &c.a), ("B", &c.b)] {
        println!("{side}: {} verified, {} entries", l.origin, l.size);
    }
    for f in &c.findings {
        let entries: Vec<String> = f.entries.iter().map(ToString::to_string).collect();
        println!(
            "{} {} message {} {} -> {} [{}]: {}",
            if f.class.is_notice() {
                "NOTICE "
            } else {
                "FINDING"
            },
            f.class,
            f.message_id.to_hex(),
            f.sender,
            f.recipient,
            entries.join(", "),
            f.detail
        );
    }
    let n = &c.counts;
    println!(
        "{}: {} matched, {} refused, {} undelivered, {} in flight, {} with findings (clock-skew tolerance {} s)",
        crate::out::count(n.exchanges, "exchange", "exchanges"),
        n.matched,
        n.refused,
        n.undelivered,
        n.in_flight,
        n.with_findings,
        c.skew_ms / 1000
    );
    if c.is_clean() {
        println!("OK: both ends of every exchange agree");
    } else {
        println!(
            "cross-check FAILED: {}",
            crate::out::count(c.finding_count() as u64, "finding", "findings")
        );
    }
}

pub(crate) fn report(
    dirs: &[PathBuf],
    keys: &[PathBuf],
    out: &Path,
    title: &str,
    skew_secs: u64,
    witness: &WitnessArgs,
) -> anyhow::Result<ExitCode> {
    let witnesses = witness.load()?;
    if dirs.len() != keys.len() {
        anyhow::bail!(
            "give one --verifier-key per export directory, in the same order ({} directories, {} keys)",
            dirs.len(),
            keys.len()
        );
    }
    let loaded: Vec<Loaded> = dirs
        .iter()
        .zip(keys)
        .map(|(d, k)| load(d, k, witnesses.as_ref()))
        .collect::<anyhow::Result<_>>()?;
    let mut checks = Vec::new();
    let mut problems = false;
    for (i, x) in loaded.iter().enumerate() {
        for y in &loaded[i + 1..] {
            let (Some(a), Some(b)) = (&x.log, &y.log) else {
                continue;
            };
            if a.agency().is_none() || b.agency().is_none() || a.agency() == b.agency() {
                continue;
            }
            let c = isnad_log::cross_check(a, b, skew_secs.saturating_mul(1000))
                .context("cross-check failed")?;
            if c.counts.exchanges > 0 {
                problems |= !c.is_clean();
                checks.push(c);
            }
        }
    }
    let inputs: Vec<LogInput<'_>> = loaded
        .iter()
        .map(|l| LogInput {
            label: &l.label,
            log: l.log.as_ref(),
            problems: &l.problems,
            trusted_key: &l.key,
        })
        .collect();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let html = isnad_log::report::render(title, &inputs, &checks, now_ms);
    std::fs::write(out, html).with_context(|| format!("cannot write {}", out.display()))?;
    let verdict = isnad_log::report::verdict(&inputs, &checks);
    println!("{}", verdict.text);
    for l in loaded.iter().filter(|l| l.log.is_none()) {
        for p in &l.problems {
            println!("FAILED: {}: {p}", l.label);
        }
    }
    println!("wrote {}", out.display());
    let invalid = loaded.iter().filter(|l| l.log.is_none()).count();
    Ok(if invalid > 0 || problems {
        ExitCode::from(VERIFY_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}
