//! The console's accounts: one JSON file beside the node's state database
//! (`<paths.state>/console-users.json`, spec/console.md §3), written only by
//! `isnad user add|remove|reset` and read by the node at every login, so an
//! account changed on the command line takes effect without a restart.
//!
//! A write goes to a temporary file in the same directory (mode 0600),
//! is fsync'd, renamed over the old file, and the directory is fsync'd:
//! after a crash the file is the old one or the new one, never a mix.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::i18n::Lang;
use crate::totp;

/// The file name of the accounts, in the node's state directory.
pub const FILE_NAME: &str = "console-users.json";
/// The format this release writes and reads.
pub const FORMAT: u32 = 1;
/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// What a person may do (spec/console.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Role {
    /// Drafts and sends requests and shares for a unit, works incoming ones.
    Officer,
    /// Approves what needs a second person; reads content like an officer.
    Supervisor,
    /// Node health, partners, directories, keys, witnesses; no content.
    Operator,
    /// Logs, checkpoints, cross-checks, reports; no content.
    Auditor,
}

impl Role {
    /// The role's name (file, audit entries, CLI).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Officer => "officer",
            Role::Supervisor => "supervisor",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
        }
    }

    /// Parses [`Role::as_str`]'s form.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Role::Officer,
            Role::Supervisor,
            Role::Operator,
            Role::Auditor,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// Whether the role may open message content (lists with subjects,
    /// messages): officers and supervisors only.
    pub fn reads_content(self) -> bool {
        matches!(self, Role::Officer | Role::Supervisor)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One account.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name: 1 to 64 of `a-z 0-9 . _ -`.
    pub name: String,
    /// Pseudonymous id written to the audit log instead of the name
    /// (`u-` and 16 hex digits, random, kept across resets).
    pub id: String,
    /// The account's role.
    pub role: Role,
    /// An officer's or supervisor's unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Interface language.
    pub lang: Lang,
    /// Argon2id hash of the password (PHC string form).
    pub password: String,
    /// TOTP secret, base32.
    pub totp: String,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the hash or the TOTP secret.
        f.debug_struct("User")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("role", &self.role)
            .field("unit", &self.unit)
            .field("lang", &self.lang)
            .finish_non_exhaustive()
    }
}

impl User {
    /// Whether `password` is this account's password.
    pub fn password_matches(&self, password: &str) -> bool {
        PasswordHash::new(&self.password).is_ok_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
    }

    /// The TOTP secret's bytes.
    pub fn totp_secret(&self) -> Option<Vec<u8>> {
        totp::base32_decode(&self.totp)
    }
}

/// Burns the time of one password check for a login name that has no
/// account, so the answer time does not tell which names exist.
pub fn dummy_check(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = DUMMY.get_or_init(|| hash_password("not a real password").unwrap_or_default());
    if let Ok(h) = PasswordHash::new(hash) {
        let _ = Argon2::default().verify_password(password.as_bytes(), &h);
    }
}

/// The accounts file's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    /// [`FORMAT`].
    pub format: u32,
    /// The accounts, by name order.
    pub users: Vec<User>,
}

/// Why the accounts could not be read or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    // The operator's input.
    /// The login name is not 1 to 64 of `a-z 0-9 . _ -`.
    #[error("invalid user name {0:?}: use 1 to 64 of a-z, 0-9, '.', '_', '-'")]
    BadName(String),
    /// The password is too short.
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters")]
    WeakPassword,
    /// An account of that name exists.
    #[error("user {0:?} exists; use `isnad user reset` to change it")]
    Exists(String),
    /// No account of that name.
    #[error("no user {0:?}")]
    NoSuchUser(String),
    /// The unit is missing for an officer or supervisor, or too long.
    #[error("an officer or supervisor needs --unit (1 to 64 characters)")]
    BadUnit,

    // The file.
    /// The file is not valid JSON of this format.
    #[error("{path}: not a console accounts file of format {FORMAT}: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },

    // The system.
    /// The system random generator or the hash failed.
    #[error("could not hash the password or draw a secret: {0}")]
    Crypto(String),
}

/// The accounts file of a node.
#[derive(Debug, Clone)]
pub struct UserFile {
    path: PathBuf,
}

impl UserFile {
    /// The accounts file in the state directory `state`.
    pub fn in_state_dir(state: &Path) -> Self {
        Self {
            path: state.join(FILE_NAME),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the accounts; a missing file is no accounts.
    pub fn load(&self) -> Result<Users, UserError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Users {
                    format: FORMAT,
                    users: Vec::new(),
                })
            }
            Err(source) => {
                return Err(UserError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let users: Users = serde_json::from_slice(&bytes).map_err(|e| self.corrupt(e))?;
        if users.format != FORMAT {
            return Err(self.corrupt(format!("format {}", users.format)));
        }
        Ok(users)
    }

    /// The account named `name`, if any.
    pub fn find(&self, name: &str) -> Result<Option<User>, UserError> {
        Ok(self.load()?.users.into_iter().find(|u| u.name == name))
    }

    /// Adds an account; returns it (with its TOTP secret, for the person).
    pub fn add(
        &self,
        name: &str,
        role: Role,
        unit: Option<&str>,
        lang: Lang,
        password: &str,
    ) -> Result<User, UserError> {
        check_name(name)?;
        let unit = check_unit(role, unit)?;
        let mut users = self.load()?;
        if users.users.iter().any(|u| u.name == name) {
            return Err(UserError::Exists(name.to_owned()));
        }
        let rng = SystemRandom::new();
        let mut id = [0u8; 8];
        rng.fill(&mut id)
            .map_err(|_| UserError::Crypto("no system randomness".into()))?;
        let user = User {
            name: name.to_owned(),
            id: format!("u-{}", hex(&id)),
            role,
            unit,
            lang,
            password: hash_password(password)?,
            totp: new_totp_secret()?,
        };
        users.users.push(user.clone());
        users.users.sort_by(|a, b| a.name.cmp(&b.name));
        self.save(&users)?;
        Ok(user)
    }

    /// Removes an account.
    pub fn remove(&self, name: &str) -> Result<(), UserError> {
        let mut users = self.load()?;
        let before = users.users.len();
        users.users.retain(|u| u.name != name);
        if users.users.len() == before {
            return Err(UserError::NoSuchUser(name.to_owned()));
        }
        self.save(&users)
    }

    /// Sets a new password and a new TOTP secret (a lost phone or a locked
    /// account); the pseudonymous id stays. Returns the account.
    pub fn reset(&self, name: &str, password: &str) -> Result<User, UserError> {
        let mut users = self.load()?;
        let hash = hash_password(password)?;
        let secret = new_totp_secret()?;
        let user = users
            .users
            .iter_mut()
            .find(|u| u.name == name)
            .ok_or_else(|| UserError::NoSuchUser(name.to_owned()))?;
        user.password = hash;
        user.totp = secret;
        let user = user.clone();
        self.save(&users)?;
        Ok(user)
    }

    /// Sets the interface language of an account (the console's language
    /// switch).
    pub fn set_lang(&self, name: &str, lang: Lang) -> Result<(), UserError> {
        let mut users = self.load()?;
        let user = users
            .users
            .iter_mut()
            .find(|u| u.name == name)
            .ok_or_else(|| UserError::NoSuchUser(name.to_owned()))?;
        user.lang = lang;
        self.save(&users)
    }

    fn corrupt(&self, detail: impl fmt::Display) -> UserError {
        UserError::Corrupt {
            path: self.path.clone(),
            detail: detail.to_string(),
        }
    }

    /// Writes `users` durably (temporary file, fsync, rename, fsync of the
    /// directory).
    fn save(&self, users: &Users) -> Result<(), UserError> {
        let io = |source| UserError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(users).map_err(|e| self.corrupt(e))?;
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }
}

/// Argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane, OWASP's
/// minimum) with a random 16-byte salt.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(UserError::WeakPassword);
    }
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| UserError::Crypto("no system randomness".into()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| UserError::Crypto(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Crypto(e.to_string()))
}

fn new_totp_secret() -> Result<String, UserError> {
    let mut secret = [0u8; totp::SECRET_LEN];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| UserError::Crypto("no system randomness".into()))?;
    Ok(totp::base32_encode(&secret))
}

fn check_name(name: &str) -> Result<(), UserError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(UserError::BadName(name.to_owned()))
    }
}

fn check_unit(role: Role, unit: Option<&str>) -> Result<Option<String>, UserError> {
    match unit {
        Some(u) if (1..=64).contains(&u.chars().count()) => Ok(Some(u.to_owned())),
        Some(_) => Err(UserError::BadUnit),
        None if role.reads_content() => Err(UserError::BadUnit),
        None => Ok(None),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn accounts_round_trip_and_passwords_are_argon2id() {
        let dir = tempfile::tempdir().unwrap();
        let file = UserFile::in_state_dir(dir.path());
        let u = file
            .add(
                "amal",
                Role::Officer,
                Some("ahtd-1"),
                Lang::Ar,
                "correct horse battery",
            )
            .unwrap();
        assert!(u.password.starts_with("$argon2id$"), "{}", u.password);
        assert!(u.password_matches("correct horse battery"));
        assert!(!u.password_matches("correct horse batterx"));
        assert!(matches!(
            file.add(
                "amal",
                Role::Auditor,
                None,
                Lang::En,
                "another long password"
            ),
            Err(UserError::Exists(_))
        ));
        assert!(matches!(
            file.add(
                "bob",
                Role::Officer,
                None,
                Lang::En,
                "another long password"
            ),
            Err(UserError::BadUnit)
        ));
        assert!(matches!(
            file.add(
                "Bob",
                Role::Auditor,
                None,
                Lang::En,
                "another long password"
            ),
            Err(UserError::BadName(_))
        ));
        assert!(matches!(
            file.add("bob", Role::Auditor, None, Lang::En, "short"),
            Err(UserError::WeakPassword)
        ));
        let r = file.reset("amal", "a new long password").unwrap();
        assert_eq!(r.id, u.id);
        assert_ne!(r.totp, u.totp);
        assert!(!file
            .find("amal")
            .unwrap()
            .unwrap()
            .password_matches("correct horse battery"));
        file.remove("amal").unwrap();
        assert!(file.find("amal").unwrap().is_none());
        assert!(matches!(file.remove("amal"), Err(UserError::NoSuchUser(_))));
    }

    #[test]
    fn a_damaged_file_is_refused_not_treated_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = UserFile::in_state_dir(dir.path());
        std::fs::write(file.path(), b"{\"format\":1,\"users\":[").unwrap();
        assert!(matches!(file.load(), Err(UserError::Corrupt { .. })));
        assert!(matches!(
            file.add(
                "amal",
                Role::Auditor,
                None,
                Lang::En,
                "a long enough password"
            ),
            Err(UserError::Corrupt { .. })
        ));
    }
}
