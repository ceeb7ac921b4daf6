//! Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP), HMAC by
//! ring. The console uses HMAC-SHA1, 6 digits and a 30-second step, the
//! parameters every authenticator app reads from an `otpauth://` URI; the
//! other algorithms exist for the RFC's test vectors.

use ring::hmac;

/// The step of a code, seconds.
pub const STEP_SECS: u64 = 30;
/// Digits of the console's codes.
pub const DIGITS: u32 = 6;
/// Bytes of a new secret (160 bits, RFC 4226 §4 recommends at least 128).
pub const SECRET_LEN: usize = 20;

/// The HMAC of a TOTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Algorithm {
    /// HMAC-SHA1 (what authenticator apps use).
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl Algorithm {
    fn ring(self) -> hmac::Algorithm {
        match self {
            Algorithm::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Algorithm::Sha256 => hmac::HMAC_SHA256,
            Algorithm::Sha512 => hmac::HMAC_SHA512,
        }
    }
}

/// The HOTP value (RFC 4226 §5.3) of `counter` with `digits` digits.
pub fn hotp(alg: Algorithm, secret: &[u8], counter: u64, digits: u32) -> u32 {
    let key = hmac::Key::new(alg.ring(), secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    // Dynamic truncation: the low nibble of the last byte is the offset.
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    bin % 10u32.pow(digits)
}

/// The TOTP value at `unix_secs` (T0 = 0, step [`STEP_SECS`]).
pub fn totp(alg: Algorithm, secret: &[u8], unix_secs: u64, digits: u32) -> u32 {
    hotp(alg, secret, unix_secs / STEP_SECS, digits)
}

/// Checks a 6-digit code typed by a person against the console's TOTP at
/// `unix_secs`, accepting the previous and the next step (clock drift).
/// Returns the step it matched, which the caller must remember per user
/// and refuse to accept again (a code is single-use, RFC 6238 §5.2).
pub fn check(secret: &[u8], code: &str, unix_secs: u64, last_used: Option<u64>) -> Option<u64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let given: u32 = code.parse().ok()?;
    let now = unix_secs / STEP_SECS;
    let mut matched = None;
    // Every candidate is computed (no early exit on the first match).
    for step in [now.saturating_sub(1), now, now + 1] {
        let ok = hotp(Algorithm::Sha1, secret, step, DIGITS) == given;
        if ok && last_used.is_none_or(|u| step > u) {
            matched = Some(step);
        }
    }
    matched
}

/// RFC 4648 base32 (upper case, no padding), the form authenticator apps
/// take a secret in.
pub fn base32_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        acc = (acc << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes [`base32_encode`]'s form (case-insensitive, padding and spaces
/// ignored); `None` on any other character.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            b'=' | b' ' => continue,
            _ => return None,
        };
        acc = (acc << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const VECTORS: &str = include_str!("../../../spec/vectors/totp-rfc6238.txt");

    #[test]
    fn rfc6238_appendix_b_vectors() {
        let sha1 = b"12345678901234567890".to_vec();
        let sha256 = b"12345678901234567890123456789012".to_vec();
        let sha512 = b"1234567890".repeat(7)[..64].to_vec();
        let mut n = 0;
        for line in VECTORS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            let t: u64 = f[0].parse().unwrap();
            let (alg, seed) = match f[1] {
                "SHA1" => (Algorithm::Sha1, &sha1),
                "SHA256" => (Algorithm::Sha256, &sha256),
                "SHA512" => (Algorithm::Sha512, &sha512),
                other => panic!("unknown algorithm {other}"),
            };
            let want: u32 = f[2].parse().unwrap();
            assert_eq!(totp(alg, seed, t, 8), want, "{line}");
            n += 1;
        }
        assert_eq!(n, 18);
    }

    #[test]
    fn codes_are_checked_with_one_step_of_drift_and_used_once() {
        let secret = b"12345678901234567890";
        let t = 1_111_111_111;
        let code = format!("{:06}", totp(Algorithm::Sha1, secret, t, 6));
        let step = check(secret, &code, t, None).unwrap();
        assert_eq!(
            check(secret, &code, t, Some(step)),
            None,
            "replayed code accepted"
        );
        assert!(check(secret, &code, t + STEP_SECS, None).is_some());
        assert_eq!(check(secret, &code, t + 3 * STEP_SECS, None), None);
        assert_eq!(check(secret, "12345", t, None), None);
        assert_eq!(check(secret, "abcdef", t, None), None);
    }

    #[test]
    fn base32_round_trips() {
        // RFC 4648 §10.
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("MZXW6YTBOI======").unwrap(), b"foobar");
        let secret: Vec<u8> = (0u8..20).collect();
        assert_eq!(base32_decode(&base32_encode(&secret)).unwrap(), secret);
        assert_eq!(base32_decode("MZ1"), None);
    }
}
