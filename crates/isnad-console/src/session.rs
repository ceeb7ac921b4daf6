//! Server-side sessions, CSRF tokens and the lockout of login names.
//!
//! A session id is 32 random bytes (hex) known only to the browser's
//! cookie and this table; nothing about the person is in the cookie. A
//! login always makes a new id (the pre-login id that carried the login
//! form's CSRF token is dropped: no session fixation). Sessions live in
//! memory: a restart signs everybody out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use crate::i18n::Lang;
use crate::users::Role;

/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(15 * 60);
/// A session ends this long after login whatever its use.
pub const ABSOLUTE: Duration = Duration::from_secs(8 * 3600);
/// Failed logins of one name, in a row, that lock it.
pub const MAX_FAILURES: u32 = 5;
/// How long a locked name stays locked.
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Most sessions (signed in or not) kept; the oldest go first.
const MAX_SESSIONS: usize = 10_000;

/// Who is signed in.
#[derive(Debug, Clone)]
pub struct Person {
    /// Login name.
    pub name: String,
    /// Pseudonymous id (audit log).
    pub id: String,
    /// Role.
    pub role: Role,
    /// Language chosen.
    pub lang: Lang,
}

/// One session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The synchronizer token every form of this session carries.
    pub csrf: String,
    /// The person, once signed in.
    pub person: Option<Person>,
    created: Instant,
    last: Instant,
}

/// The session table and the failure counts.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, (u32, Option<Instant>)>>,
}

impl Sessions {
    /// A new session (not signed in unless `person`); returns its id.
    pub fn create(&self, person: Option<Person>, now: Instant) -> Option<(String, Session)> {
        let person_given = person.is_some();
        let id = random_hex()?;
        let s = Session {
            csrf: random_hex()?,
            person,
            created: now,
            last: now,
        };
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| alive(s, now));
        if map.len() >= MAX_SESSIONS {
            // The oldest session before sign-in goes first: anyone can make
            // those, so they must never push out a signed-in person. A new
            // one before sign-in is refused when only signed-in ones are left.
            let oldest = |signed_in: bool| {
                map.iter()
                    .filter(|(_, s)| s.person.is_some() == signed_in)
                    .min_by_key(|(_, s)| s.last)
                    .map(|(k, _)| k.clone())
            };
            let victim = match (oldest(false), person_given) {
                (Some(k), _) => k,
                (None, true) => oldest(true)?,
                (None, false) => return None,
            };
            map.remove(&victim);
        }
        map.insert(id.clone(), s.clone());
        Some((id, s))
    }

    /// The live session `id`, touched.
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(id) {
            Some(s) if alive(s, now) => {
                s.last = now;
                Some(s.clone())
            }
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Changes the language of session `id`.
    pub fn set_lang(&self, id: &str, lang: Lang) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = map.get_mut(id).and_then(|s| s.person.as_mut()) {
            p.lang = lang;
        }
    }

    /// Ends session `id`.
    pub fn end(&self, id: &str) -> Option<Session> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
    }

    /// Whether `key` (a login name and its password hash, so a reset
    /// unlocks) is locked now.
    pub fn locked(&self, key: &str, now: Instant) -> bool {
        let f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        matches!(f.get(key), Some((_, Some(until))) if *until > now)
    }

    /// Counts a failed login of `key`; returns whether it is now locked.
    pub fn failed(&self, key: &str, now: Instant) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() >= MAX_SESSIONS && !f.contains_key(key) {
            // Bounded: counts that lock nothing now are forgotten first.
            f.retain(|_, (_, until)| until.is_some_and(|u| u > now));
        }
        let e = f.entry(key.to_owned()).or_insert((0, None));
        if e.1.is_some_and(|until| until <= now) {
            *e = (0, None);
        }
        e.0 += 1;
        if e.0 >= MAX_FAILURES {
            e.1 = Some(now + LOCKOUT);
        }
        e.1.is_some()
    }

    /// Forgets the failures of `key` after a successful login.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

fn alive(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last) < IDLE && now.duration_since(s.created) < ABSOLUTE
}

/// 32 random bytes as hex.
pub fn random_hex() -> Option<String> {
    let mut b = [0u8; 32];
    SystemRandom::new().fill(&mut b).ok()?;
    Some(crate::users::hex(&b))
}

/// Compares two tokens in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    let da = ring::digest::digest(&ring::digest::SHA256, a.as_bytes());
    let db = ring::digest::digest(&ring::digest::SHA256, b.as_bytes());
    da.as_ref()
        .iter()
        .zip(db.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sessions_expire_and_names_lock_after_repeated_failures() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let (id, _) = s.create(None, t0).unwrap();
        assert!(s.get(&id, t0 + IDLE / 2).is_some());
        assert!(
            s.get(&id, t0 + IDLE / 2 + IDLE).is_none(),
            "idle session kept"
        );
        for i in 1..MAX_FAILURES {
            assert!(!s.failed("amal", t0), "locked after {i}");
        }
        assert!(s.failed("amal", t0));
        assert!(s.locked("amal", t0 + LOCKOUT / 2));
        assert!(!s.locked("amal", t0 + LOCKOUT));
        assert!(!s.locked("other", t0));
        assert!(same_token("ab", "ab") && !same_token("ab", "ac"));
    }

    /// Sessions made before sign-in (anyone can make them) never push out
    /// a signed-in person's session.
    #[test]
    fn sessions_before_sign_in_never_evict_a_signed_in_one() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let person = Person {
            name: "amal".into(),
            id: "u-0123456789abcdef".into(),
            role: Role::Officer,
            lang: Lang::Ar,
        };
        let (signed_in, _) = s.create(Some(person.clone()), t0).unwrap();
        // Each later than the signed-in session, which is the oldest.
        let later = |i: u64| t0 + Duration::from_micros(i + 1);
        let n = MAX_SESSIONS as u64 + 10;
        let made = (0..n)
            .filter(|&i| s.create(None, later(i)).is_some())
            .count();
        assert_eq!(made as u64, n, "every new session before sign-in is made");
        let now = later(n);
        assert!(
            s.get(&signed_in, now).is_some(),
            "signed-in session evicted"
        );
        // A sign-in still gets a session: it takes the place of one made
        // before sign-in.
        assert!(s.create(Some(person), now).is_some());
        assert!(s.get(&signed_in, now).is_some());
    }
}
