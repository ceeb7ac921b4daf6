//! Mistakes that let a node start but not work (or not safely), found
//! when its directory is loaded.

use isnad_envelope::SigningKey;
use isnad_log::SignerKey;

use crate::config::Config;
use crate::federation::Federation;

/// What [`startup_warnings`] looks at: the node as loaded, before it starts.
pub(super) struct StartupFacts<'a> {
    pub(super) config: &'a Config,
    pub(super) federation: &'a Federation,
    pub(super) signing_key: &'a SigningKey,
    pub(super) tls_cert: &'a [u8],
    pub(super) log_key: &'a SignerKey,
    pub(super) witness_key: Option<&'a SignerKey>,
    pub(super) token: &'a str,
}

/// Mistakes that let a node start but not work (or not safely): each is
/// logged at warn level when `node run` starts, with what to do about it.
pub(super) fn startup_warnings(f: &StartupFacts<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let (config, agency) = (f.config, &f.config.agency);
    if f.token.trim().is_empty() {
        out.push(format!(
            "the API token {} is empty: every request to the local API is refused with 401 \
             (write a random token into it, e.g. `openssl rand -hex 32`)",
            config.api.token_file.display()
        ));
    }
    if config.witness.serve && f.witness_key.is_none() {
        out.push(format!(
            "[witness] serve = true but {} is missing: this node cosigns nothing for its partners \
             (create the node with `isnad init`, or set serve = false)",
            config.paths.keys.join("witness.key").display()
        ));
    }
    let keys = &config.paths.keys;
    let private = [
        "sign.key.pem",
        "enc.key.pem",
        "tls.key.der",
        "log.key",
        "witness.key",
    ]
    .map(|n| keys.join(n));
    for path in private.iter().chain([&config.api.token_file]) {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(m) = std::fs::metadata(path) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                out.push(format!(
                    "the private file {} has mode {mode:04o}: other users can read it \
                     (chmod 600 {})",
                    path.display(),
                    path.display()
                ));
            }
        }
    }
    let origin = isnad_log::origin_for(agency);
    if f.log_key.name() != origin {
        out.push(format!(
            "the configured agency is {agency} but the audit-log key {} is for {:?} \
             (expected {origin:?}): config.toml and keys/ belong to different nodes",
            keys.join("log.key").display(),
            f.log_key.name()
        ));
    }
    let witness_name = isnad_log::witness::witness_name_for(agency);
    if let Some(w) = f.witness_key.filter(|w| w.name() != witness_name) {
        out.push(format!(
            "the configured agency is {agency} but the witness key {} is for {:?} \
             (expected {witness_name:?}): config.toml and keys/ belong to different nodes",
            keys.join("witness.key").display(),
            w.name()
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let snapshot = f.federation.snapshot();
    match snapshot.as_ref().and_then(|s| s.agency(agency, now)) {
        None => out.push(format!(
            "no directory held in {} lists {agency}: partners cannot reach this node and it \
             can send to no one (have the country's root operator add it with \
             `isnad directory add-node`, then `isnad trust import` the signed directory)",
            config.paths.trust.display()
        )),
        Some(entry) => {
            let kid = f.signing_key.key_id();
            let listed = entry.signing_keys.iter().any(|k| {
                isnad_envelope::VerifyingKey::from_cose_key(&k.key).is_ok_and(|v| v.key_id() == kid)
            });
            let tls = isnad_trust::tls::spki_sha256(f.tls_cert)
                .is_ok_and(|spki| spki == entry.tls_spki_sha256);
            if !listed || !tls {
                out.push(format!(
                    "the directory lists {agency} with other keys than those in {} \
                     ({}): partners will refuse this node's messages and connections",
                    keys.display(),
                    match (listed, tls) {
                        (false, false) => "signing key and TLS certificate",
                        (false, true) => "signing key",
                        _ => "TLS certificate",
                    }
                ));
            }
        }
    }
    out
}
