//! The trust store: this country's root, the partner roots an operator
//! imported, and the newest verified directory of each country; lookups of
//! keys, peers and policy over them (spec/federation.md §5–§8, §10).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use isnad_envelope::{AgencyId, EncryptionPublicKey, KeyId, Kind, SenderKey, VerifyingKey};

use crate::directory::{verify_signed, AgencyEntry, Directory, KeyEntry, Rule, Selector};
use crate::TrustError;

/// A verified directory as held, with the exact signed bytes.
#[derive(Debug, Clone)]
pub struct Held {
    /// The decoded directory.
    pub directory: Directory,
    /// The signed bytes as received (what is stored and shown to others).
    pub signed: Vec<u8>,
}

/// What accepting a directory did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// A new version replaced the one held (or the first one arrived).
    Updated {
        /// The country.
        country: String,
        /// The new version.
        version: u64,
        /// What changed, for the audit log.
        changes: Vec<Change>,
    },
    /// The same version with the same bytes was already held.
    Unchanged,
}

/// One change between two versions of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// An agency appeared.
    AgencyAdded(AgencyId),
    /// An agency disappeared.
    AgencyRemoved(AgencyId),
    /// A key appeared for an agency.
    KeyAdded {
        /// The agency.
        agency: AgencyId,
        /// The key.
        kid: KeyId,
    },
    /// A key got an end of validity (a rotation overlap closing).
    KeyRotated {
        /// The agency.
        agency: AgencyId,
        /// The key.
        kid: KeyId,
        /// The end of its validity.
        until: u64,
    },
    /// A key was revoked.
    KeyRevoked {
        /// The agency.
        agency: AgencyId,
        /// The key.
        kid: KeyId,
        /// Revocation time.
        at: u64,
        /// Reason given.
        reason: Option<String>,
    },
    /// The endpoints or the TLS key of an agency changed.
    ContactChanged(AgencyId),
    /// The policy rules changed.
    PolicyChanged,
}

/// The outcome of a policy evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by these rules (the sender country's and the recipient country's).
    Allowed {
        /// The rule of the sender's country.
        outgoing: String,
        /// The rule of the recipient's country.
        incoming: String,
    },
    /// Denied; the text names the rule or says no rule allows it.
    Denied(String),
}

/// The trust store.
#[derive(Debug, Clone)]
pub struct TrustStore {
    own_country: String,
    roots: BTreeMap<String, VerifyingKey>,
    held: BTreeMap<String, Held>,
}

impl TrustStore {
    /// A store trusting only `own_country`'s `root`.
    pub fn new(own_country: &str, root: VerifyingKey) -> Self {
        let own_country = own_country.to_ascii_lowercase();
        let mut roots = BTreeMap::new();
        roots.insert(own_country.clone(), root);
        Self {
            own_country,
            roots,
            held: BTreeMap::new(),
        }
    }

    /// This node's country.
    pub fn own_country(&self) -> &str {
        &self.own_country
    }

    /// Trusts `root` for `country`. Replacing a different root for a country
    /// already trusted is refused ([`TrustError::RootConflict`]).
    pub fn add_partner(&mut self, country: &str, root: VerifyingKey) -> Result<(), TrustError> {
        let country = country.to_ascii_lowercase();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(TrustError::InvalidDirectory(format!(
                "country {country:?} must be two letters"
            )));
        }
        match self.roots.get(&country) {
            Some(k) if k != &root => Err(TrustError::RootConflict(country)),
            _ => {
                self.roots.insert(country, root);
                Ok(())
            }
        }
    }

    /// The trusted roots by country.
    pub fn roots(&self) -> &BTreeMap<String, VerifyingKey> {
        &self.roots
    }

    /// The held directories by country.
    pub fn directories(&self) -> &BTreeMap<String, Held> {
        &self.held
    }

    /// Verifies a signed directory and, if it is acceptable at `now`, holds
    /// it. Checks (spec/federation.md §5): signed by the root trusted for its
    /// country; `valid-from ≤ now < valid-until`; version strictly greater
    /// than the one held (the same bytes again are a no-op; a different
    /// document with the same version is a conflict).
    pub fn accept(&mut self, signed: &[u8], now: u64) -> Result<Accepted, TrustError> {
        let kid = signer_kid(signed)?;
        let (country, root) = self
            .roots
            .iter()
            .find(|(_, k)| k.key_id() == kid)
            .map(|(c, k)| (c.clone(), k.clone()))
            .ok_or(TrustError::UnknownRoot)?;
        let dir = verify_signed(signed, &root)?;
        if dir.country != country {
            return Err(TrustError::WrongRoot);
        }
        dir.current_at(now)?;
        let changes = match self.held.get(&country) {
            Some(h) if h.directory.version > dir.version => {
                return Err(TrustError::Rollback {
                    held: h.directory.version,
                    offered: dir.version,
                })
            }
            Some(h) if h.directory.version == dir.version => {
                return if h.signed == signed {
                    Ok(Accepted::Unchanged)
                } else {
                    Err(TrustError::VersionConflict(dir.version))
                };
            }
            Some(h) => diff(&h.directory, &dir),
            None => dir
                .agencies
                .iter()
                .map(|a| Change::AgencyAdded(a.id.clone()))
                .collect(),
        };
        let version = dir.version;
        self.held.insert(
            country.clone(),
            Held {
                directory: dir,
                signed: signed.to_vec(),
            },
        );
        Ok(Accepted::Updated {
            country,
            version,
            changes,
        })
    }

    /// The directory of `country` if held and current at `now`.
    pub(crate) fn current(&self, country: &str, now: u64) -> Option<&Directory> {
        self.held
            .get(country)
            .map(|h| &h.directory)
            .filter(|d| d.valid_from <= now && now < d.valid_until)
    }

    /// An agency's entry, if its country's directory is current at `now`.
    pub fn agency(&self, id: &AgencyId, now: u64) -> Option<&AgencyEntry> {
        self.current(id.country(), now)?.agency(id)
    }

    /// The signer key with this id, with its validity window and its
    /// revocation time, from a current directory.
    pub fn sender_key(&self, kid: &KeyId, now: u64) -> Option<SenderKey> {
        for (country, _) in self.held.iter() {
            let Some(dir) = self.current(country, now) else {
                continue;
            };
            for a in &dir.agencies {
                for k in &a.signing_keys {
                    let Ok(key) = VerifyingKey::from_cose_key(&k.key) else {
                        continue;
                    };
                    if key.key_id() == *kid {
                        return Some(SenderKey {
                            agency: a.id.clone(),
                            key,
                            valid_from: Some(k.valid_from),
                            valid_until: k.end(),
                            revoked_at: k.revoked_at,
                        });
                    }
                }
            }
        }
        None
    }

    /// The encryption key to use for `agency` at `now`: among keys valid
    /// now, the one that became valid last.
    pub fn encryption_key(&self, agency: &AgencyId, now: u64) -> Option<EncryptionPublicKey> {
        let a = self.agency(agency, now)?;
        a.encryption_keys
            .iter()
            .filter(|k| k.valid_at(now))
            .max_by_key(|k| k.valid_from)
            .and_then(|k| EncryptionPublicKey::from_cose_key(&k.key).ok())
    }

    /// TLS SPKI hash → agency, over every current directory.
    pub fn tls_identities(&self, now: u64) -> BTreeMap<[u8; 32], AgencyId> {
        let mut out = BTreeMap::new();
        for country in self.held.keys() {
            if let Some(d) = self.current(country, now) {
                for a in &d.agencies {
                    out.insert(a.tls_spki_sha256, a.id.clone());
                }
            }
        }
        out
    }

    /// Whether policy allows `sender` to send `kind` to `recipient`
    /// directly (`via_ca == false`) or through the central authorities.
    ///
    /// Rule (spec/federation.md §7): both the sender's country and the
    /// recipient's country must have a rule whose `from` selector matches the
    /// sender, whose `to` selector matches the recipient and whose kinds
    /// include `kind` (empty = all). A rule with `via-central-authority`
    /// allows only relayed messages. Anything else is denied.
    pub fn evaluate(
        &self,
        sender: &AgencyId,
        recipient: &AgencyId,
        kind: Kind,
        via_ca: bool,
        now: u64,
    ) -> Decision {
        let (Some(s), Some(r)) = (self.agency(sender, now), self.agency(recipient, now)) else {
            return Decision::Denied(format!(
                "{} is not in a current trusted directory",
                if self.agency(sender, now).is_none() {
                    sender
                } else {
                    recipient
                }
            ));
        };
        let pick = |country: &str| -> Result<String, String> {
            let Some(dir) = self.current(country, now) else {
                return Err(format!("no current directory for {country}"));
            };
            let matching: Vec<&Rule> = dir
                .policy
                .iter()
                .filter(|rule| applies(rule, s, r, kind))
                .collect();
            if let Some(rule) = matching
                .iter()
                .find(|rule| via_ca || !rule.via_central_authority)
            {
                return Ok(rule.id.clone());
            }
            match matching.first() {
                Some(rule) => Err(format!("rule {} of {country} requires routing via the central authorities", rule.id)),
                None => Err(format!(
                    "no rule of {country} (directory v{}) allows {sender} to send {kind} to {recipient}",
                    dir.version
                )),
            }
        };
        match (pick(sender.country()), pick(recipient.country())) {
            (Ok(outgoing), Ok(incoming)) => Decision::Allowed { outgoing, incoming },
            (Err(e), _) | (_, Err(e)) => Decision::Denied(e),
        }
    }

    // --- persistence: roots/<cc>.cose, directories/<cc>.cose ---

    /// Loads a trust directory written by [`TrustStore::save`]. Every
    /// directory file is verified again; an expired one is kept but not used.
    pub fn load(dir: &Path) -> Result<Self, TrustError> {
        let io = |p: &Path, e: std::io::Error| TrustError::Io(format!("{}: {e}", p.display()));
        let own_path = dir.join("own-country");
        let own = std::fs::read_to_string(&own_path)
            .map_err(|e| io(&own_path, e))?
            .trim()
            .to_owned();
        let mut roots = BTreeMap::new();
        let rdir = dir.join("roots");
        for entry in std::fs::read_dir(&rdir).map_err(|e| io(&rdir, e))? {
            let p = entry.map_err(|e| io(&rdir, e))?.path();
            let Some(cc) = p.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
                continue;
            };
            if p.extension().is_some_and(|x| x == "cose") {
                let bytes = std::fs::read(&p).map_err(|e| io(&p, e))?;
                let key = VerifyingKey::from_cose_key(&bytes)
                    .map_err(|e| TrustError::InvalidDirectory(format!("{}: {e}", p.display())))?;
                roots.insert(cc, key);
            }
        }
        if !roots.contains_key(&own) {
            return Err(TrustError::Io(format!(
                "{}: no root for the own country {own}",
                rdir.display()
            )));
        }
        let mut store = Self {
            own_country: own,
            roots,
            held: BTreeMap::new(),
        };
        let ddir = dir.join("directories");
        if ddir.exists() {
            for entry in std::fs::read_dir(&ddir).map_err(|e| io(&ddir, e))? {
                let p = entry.map_err(|e| io(&ddir, e))?.path();
                if p.extension().is_none_or(|x| x != "cose") {
                    continue;
                }
                let bytes = std::fs::read(&p).map_err(|e| io(&p, e))?;
                let kid = signer_kid(&bytes)?;
                let (country, root) = store
                    .roots
                    .iter()
                    .find(|(_, k)| k.key_id() == kid)
                    .map(|(c, k)| (c.clone(), k.clone()))
                    .ok_or(TrustError::UnknownRoot)?;
                let d = verify_signed(&bytes, &root)?;
                if d.country != country {
                    return Err(TrustError::WrongRoot);
                }
                store.held.insert(
                    country,
                    Held {
                        directory: d,
                        signed: bytes,
                    },
                );
            }
        }
        Ok(store)
    }

    /// Writes the store into `dir` (each file written to a temporary name,
    /// synced and renamed, so a crash leaves the old or the new file).
    pub fn save(&self, dir: &Path) -> Result<(), TrustError> {
        write_atomic(
            &dir.join("own-country"),
            format!("{}\n", self.own_country).as_bytes(),
        )?;
        for (cc, key) in &self.roots {
            write_atomic(
                &dir.join("roots").join(format!("{cc}.cose")),
                &key.to_cose_key(),
            )?;
        }
        for (cc, h) in &self.held {
            write_atomic(
                &dir.join("directories").join(format!("{cc}.cose")),
                &h.signed,
            )?;
        }
        Ok(())
    }
}

fn applies(rule: &Rule, s: &AgencyEntry, r: &AgencyEntry, kind: Kind) -> bool {
    fn matches(sel: &Selector, a: &AgencyEntry) -> bool {
        sel.agency.as_ref().is_none_or(|x| x == &a.id)
            && sel.role.is_none_or(|x| x == a.role)
            && sel.country.as_deref().is_none_or(|c| c == a.id.country())
    }
    matches(&rule.from, s)
        && matches(&rule.to, r)
        && (rule.kinds.is_empty() || rule.kinds.contains(&kind))
}

/// The `kid` of a signed directory, read without verifying (to pick the root).
fn signer_kid(signed: &[u8]) -> Result<KeyId, TrustError> {
    use coset::TaggedCborSerializable as _;
    if signed.len() > crate::directory::MAX_DIRECTORY_BYTES {
        return Err(TrustError::Malformed("signed directory too large".into()));
    }
    let limits = isnad_envelope::Limits {
        max_envelope_bytes: crate::directory::MAX_DIRECTORY_BYTES,
        max_depth: 8,
        max_items: 4096,
        ..Default::default()
    };
    isnad_envelope::cbor::scan(signed, &limits)
        .map_err(|e| TrustError::Malformed(e.to_string()))?;
    let s = coset::CoseSign1::from_tagged_slice(signed)
        .map_err(|_| TrustError::Malformed("not a tagged COSE_Sign1".into()))?;
    let kid: [u8; 32] = s
        .protected
        .header
        .key_id
        .as_slice()
        .try_into()
        .map_err(|_| TrustError::UnknownRoot)?;
    Ok(KeyId::from_bytes(kid))
}

/// What changed from `old` to `new`.
pub fn diff(old: &Directory, new: &Directory) -> Vec<Change> {
    let mut out = Vec::new();
    let kid = |k: &KeyEntry| {
        VerifyingKey::from_cose_key(&k.key)
            .map(|v| v.key_id())
            .or_else(|_| EncryptionPublicKey::from_cose_key(&k.key).map(|e| e.key_id()))
            .ok()
    };
    for a in &new.agencies {
        let Some(o) = old.agency(&a.id) else {
            out.push(Change::AgencyAdded(a.id.clone()));
            continue;
        };
        if o.endpoints != a.endpoints || o.tls_spki_sha256 != a.tls_spki_sha256 {
            out.push(Change::ContactChanged(a.id.clone()));
        }
        let old_keys: Vec<&KeyEntry> = o.signing_keys.iter().chain(&o.encryption_keys).collect();
        for k in a.signing_keys.iter().chain(&a.encryption_keys) {
            let Some(id) = kid(k) else { continue };
            match old_keys.iter().find(|x| kid(x) == Some(id)) {
                None => out.push(Change::KeyAdded {
                    agency: a.id.clone(),
                    kid: id,
                }),
                Some(prev) => {
                    if let (Some(at), None) = (k.revoked_at, prev.revoked_at) {
                        out.push(Change::KeyRevoked {
                            agency: a.id.clone(),
                            kid: id,
                            at,
                            reason: k.revocation_reason.clone(),
                        });
                    } else if let (Some(until), None) = (k.valid_until, prev.valid_until) {
                        out.push(Change::KeyRotated {
                            agency: a.id.clone(),
                            kid: id,
                            until,
                        });
                    }
                }
            }
        }
    }
    for o in &old.agencies {
        if new.agency(&o.id).is_none() {
            out.push(Change::AgencyRemoved(o.id.clone()));
        }
    }
    if old.policy != new.policy {
        out.push(Change::PolicyChanged);
    }
    out
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrustError> {
    use std::io::Write as _;
    let err = |p: &Path, e: std::io::Error| TrustError::Io(format!("{}: {e}", p.display()));
    let parent = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&parent).map_err(|e| err(&parent, e))?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| err(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| err(path, e))?;
    if let Ok(d) = std::fs::File::open(&parent) {
        let _ = d.sync_all();
    }
    Ok(())
}
