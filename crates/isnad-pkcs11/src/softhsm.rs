//! Test support: a SoftHSM2 token directory of its own, for tests and
//! benches of this crate and of the crates that use token keys. Not for
//! production: it runs `softhsm2-util` and sets `SOFTHSM2_CONF` for the
//! whole process.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian, Ubuntu and source installs put the SoftHSM2 module;
/// `ISNAD_PKCS11_MODULE` overrides (and must exist).
pub fn find_module() -> Option<PathBuf> {
    if let Some(m) = std::env::var_os("ISNAD_PKCS11_MODULE") {
        return Some(PathBuf::from(m)).filter(|p| p.exists());
    }
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// Why SoftHSM2 could not be set up, naming what is missing.
#[derive(Debug)]
pub struct Missing(pub String);

/// Writes `dir/softhsm2.conf` with its own token directory, points
/// `SOFTHSM2_CONF` at it (call before the first [`crate::Token::open`] of
/// the process: SoftHSM2 reads it once) and initialises one token per
/// label with user PIN `pin`. Returns the module path.
pub fn init_tokens(dir: &Path, labels: &[&str], pin: &str) -> Result<PathBuf, Missing> {
    let module = find_module().ok_or_else(|| {
        Missing(
            format!(
                "SoftHSM2 module libsofthsm2.so not found (install the softhsm2 package; ISNAD_PKCS11_MODULE={:?})",
                std::env::var_os("ISNAD_PKCS11_MODULE").unwrap_or_default()
            ),
        )
    })?;
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).map_err(|e| Missing(format!("token directory: {e}")))?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .map_err(|e| Missing(format!("softhsm2.conf: {e}")))?;
    std::env::set_var("SOFTHSM2_CONF", &conf);
    for label in labels {
        let out = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                pin,
                "--so-pin",
                "so-pin-4711",
            ])
            .output()
            .map_err(|e| Missing(format!("softhsm2-util (package softhsm2) cannot run: {e}")))?;
        if !out.status.success() {
            return Err(Missing(format!(
                "softhsm2-util --init-token failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
    }
    Ok(module)
}
