//! The shape of the crate, checked on its sources (issue 16): no module
//! over [`MAX_LINES`] lines of code, no two modules importing each other,
//! and one place that builds audit entries (`crate::exchange`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Longest a module may be, counting its code without its unit tests.
const MAX_LINES: usize = 600;

/// Every module of the crate: its path (`crate::node::inbound`) and text.
fn modules() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
        for entry in entries {
            let path = entry.map(|e| e.path()).unwrap_or_default();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(&root).unwrap_or(&path).with_extension("");
            let mut segs: Vec<String> = rel
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            if matches!(segs.last().map(String::as_str), Some("mod" | "lib")) {
                segs.pop();
            }
            segs.insert(0, "crate".into());
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            out.insert(segs.join("::"), text);
        }
    }
    out
}

/// A module's code: without its `#[cfg(test)]` module and comment lines.
fn code(text: &str) -> String {
    let body = match text.find("\n#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => text,
    };
    body.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether a module is made of tests (exempt from the size bound).
fn is_tests(module: &str) -> bool {
    let last = module.rsplit("::").next().unwrap_or(module);
    last == "tests" || last.ends_with("_tests")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths named in `code` that start with one of `heads` (`crate`,
/// `super`, `self` or a child module), each as its segments; a `{…}` group
/// gives one path per member.
fn paths(code: &str, heads: &BTreeSet<String>) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let before_ok = i == 0 || !(is_ident(bytes[i - 1]) || bytes[i - 1] == ':');
        if !before_ok || !is_ident(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_ident(bytes[i]) {
            i += 1;
        }
        let head: String = bytes[start..i].iter().collect();
        if !heads.contains(&head) || !code_at(&bytes, i, "::") {
            continue;
        }
        let mut segs = Vec::new();
        while code_at(&bytes, i, "::") {
            i += 2;
            let s = i;
            while i < bytes.len() && is_ident(bytes[i]) {
                i += 1;
            }
            if s == i {
                break;
            }
            segs.push(bytes[s..i].iter().collect::<String>());
        }
        if i < bytes.len() && bytes[i] == '{' {
            // Members of a group: their first segment each.
            let mut depth = 0;
            let mut member = String::new();
            let mut members = Vec::new();
            for &c in &bytes[i..] {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    members.push(std::mem::take(&mut member));
                    break;
                }
                if depth == 1 && c == ',' {
                    members.push(std::mem::take(&mut member));
                } else if !(depth == 1 && c == '{') {
                    member.push(c);
                }
            }
            for m in members {
                let first: String = m
                    .trim_start()
                    .chars()
                    .take_while(|c| is_ident(*c))
                    .collect();
                let mut p = segs.clone();
                if !first.is_empty() && first != "self" {
                    p.push(first);
                }
                out.push((head.clone(), p));
            }
        } else {
            out.push((head, segs));
        }
    }
    out
}

fn code_at(chars: &[char], i: usize, s: &str) -> bool {
    s.chars()
        .enumerate()
        .all(|(k, c)| chars.get(i + k) == Some(&c))
}

/// Which modules each module refers to (by `crate::`, `super::`, `self::`
/// or a child module's name), resolved to the longest module path named.
fn imports(mods: &BTreeMap<String, String>) -> BTreeSet<(String, String)> {
    let mut edges = BTreeSet::new();
    for (module, text) in mods {
        let code = code(text);
        let mut heads: BTreeSet<String> = ["crate", "super", "self"].map(String::from).into();
        for line in code.lines() {
            let l = line.trim_start();
            let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
            let l = l.strip_prefix("pub ").unwrap_or(l);
            if let Some(name) = l.strip_prefix("mod ").and_then(|n| n.strip_suffix(';')) {
                heads.insert(name.to_owned());
            }
        }
        let here: Vec<String> = module.split("::").map(String::from).collect();
        for (head, segs) in paths(&code, &heads) {
            let mut full = match head.as_str() {
                "crate" => vec!["crate".to_owned()],
                "super" => here[..here.len() - 1].to_vec(),
                "self" => here.clone(),
                child => [here.clone(), vec![child.to_owned()]].concat(),
            };
            full.extend(segs);
            let target = (1..=full.len())
                .rev()
                .map(|n| full[..n].join("::"))
                .find(|p| mods.contains_key(p));
            if let Some(t) = target {
                if &t != module {
                    edges.insert((module.clone(), t));
                }
            }
        }
    }
    edges
}

fn is_within(module: &str, ancestor: &str) -> bool {
    module.starts_with(&format!("{ancestor}::"))
}

#[test]
fn no_module_is_over_the_line_bound() {
    let over: Vec<String> = modules()
        .iter()
        .filter(|(m, _)| !is_tests(m))
        .map(|(m, t)| (m, code(t).lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(m, n)| format!("{m}: {n} lines"))
        .collect();
    assert!(over.is_empty(), "over {MAX_LINES} lines of code: {over:?}");
}

/// Two modules may not import each other. A parent and its own children
/// may (a child naming its parent's types is how Rust's privacy works),
/// except under `crate::node`, whose modules depend in one direction only.
#[test]
fn no_two_modules_import_each_other() {
    let edges = imports(&modules());
    let cycles: Vec<String> = edges
        .iter()
        .filter(|(a, b)| a < b && edges.contains(&(b.clone(), a.clone())))
        .filter(|(a, b)| {
            let family = is_within(a, b) || is_within(b, a);
            !family || a.starts_with("crate::node::") || a == "crate::node"
        })
        .map(|(a, b)| format!("{a} <-> {b}"))
        .collect();
    assert!(
        cycles.is_empty(),
        "modules importing each other: {cycles:?}"
    );
    // The check sees real imports (a failure of the parser would pass).
    assert!(edges.contains(&("crate::node::inbound".into(), "crate::node::inner".into())));
    assert!(edges.contains(&("crate::relay".into(), "crate::node::inner".into())));
}

/// `crate::exchange` is the one place that builds audit entries
/// (spec/audit-log.md §2): `Entry::new` appears nowhere else.
#[test]
fn audit_entries_are_built_in_exchange_only() {
    let elsewhere: Vec<String> = modules()
        .iter()
        .filter(|(m, _)| *m != "crate::exchange" && !is_tests(m))
        .filter(|(_, t)| code(t).contains("Entry::new("))
        .map(|(m, _)| m.clone())
        .collect();
    assert!(
        elsewhere.is_empty(),
        "Entry::new outside exchange: {elsewhere:?}"
    );
}

/// Modules that work through `NodeHandle` or a narrow handle
/// (`sealing::Sealer`, plain parameters) rather than the node's shared
/// state: none of them names `Inner`.
#[test]
fn paths_with_narrow_handles_do_not_reach_into_inner() {
    let mods = modules();
    for m in [
        "crate::export",
        "crate::cases",
        "crate::reseal",
        "crate::sealing",
    ] {
        let text = mods.get(m).unwrap_or_else(|| panic!("{m} not found"));
        assert!(!code(text).contains("Inner"), "{m} reaches into Inner");
    }
}
