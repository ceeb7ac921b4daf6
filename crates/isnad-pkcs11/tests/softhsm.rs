//! The token operations against a real SoftHSM2 token created in a
//! temporary directory. Signatures are verified and shared secrets
//! recomputed in software (ring, p256), so a token that returned the
//! wrong bytes fails here.
//!
//! Needs SoftHSM2 (`apt-get install softhsm2`): without it every test
//! FAILS naming what is missing, unless `ISNAD_SKIP_PKCS11=1` (then the
//! skip is printed). `ISNAD_PKCS11_MODULE` overrides the module path.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use isnad_pkcs11::{softhsm, KeyKind, KeyUri, PinSource, Token, TokenConfig, TokenError};
use ring::signature::{self, UnparsedPublicKey};

const PIN: &str = "4711-isnad";
const TOKEN: &str = "isnad test";
const WRONG_PIN_TOKEN: &str = "isnad wrong pin";

struct Fixture {
    module: PathBuf,
    dir: PathBuf,
    token: Token,
}

/// The shared token (SoftHSM reads its configuration once per process,
/// at C_Initialize, so all tests of this binary use one token directory).
fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    FIXTURE.get_or_init(setup).as_ref()
}

fn setup() -> Option<Fixture> {
    let dir = tempfile::Builder::new()
        .prefix("isnad-softhsm")
        .tempdir()
        .expect("tempdir")
        .keep();
    let module = match softhsm::init_tokens(&dir, &[TOKEN, WRONG_PIN_TOKEN], PIN) {
        Ok(module) => module,
        Err(softhsm::Missing(what)) if std::env::var("ISNAD_SKIP_PKCS11").as_deref() == Ok("1") => {
            eprintln!("SKIPPED (ISNAD_SKIP_PKCS11=1): {what}");
            return None;
        }
        Err(softhsm::Missing(what)) => panic!("{what}; ISNAD_SKIP_PKCS11=1 skips these tests"),
    };
    let pin_file = dir.join("pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).expect("pin file");
    let token =
        Token::open(&config(&module, TOKEN, PinSource::File(pin_file), 4)).expect("open token");
    Some(Fixture { module, dir, token })
}

fn config(module: &Path, token: &str, pin: PinSource, sessions: usize) -> TokenConfig {
    TokenConfig {
        module: module.to_owned(),
        token: token.to_owned(),
        pin,
        sessions: NonZeroUsize::new(sessions).expect("nonzero"),
    }
}

fn uri(object: &str) -> KeyUri {
    KeyUri::parse(&format!(
        "pkcs11:token=isnad%20test;object={object};type=private"
    ))
    .expect("uri")
}

#[test]
fn ed25519_signature_from_the_token_verifies_with_ring() {
    let Some(f) = fixture() else { return };
    let key = f
        .token
        .generate(KeyKind::Ed25519, "ed-sign")
        .expect("generate");
    assert_eq!(key.public().len(), 32);
    // Found again through its URI: same public key.
    let found = f
        .token
        .key(&uri("ed-sign"), KeyKind::Ed25519)
        .expect("find");
    assert_eq!(found.public(), key.public());
    let msg = b"Sig_structure bytes as received";
    let sig = f.token.sign_ed25519(&found, msg).expect("sign");
    let pk = UnparsedPublicKey::new(&signature::ED25519, key.public());
    pk.verify(msg, &sig)
        .expect("ring verifies the token's signature");
    assert!(pk.verify(b"other message", &sig).is_err());
}

#[test]
fn es256_signature_from_the_token_verifies_with_ring_raw_and_der() {
    let Some(f) = fixture() else { return };
    let key = f
        .token
        .generate(KeyKind::Es256, "es-sign")
        .expect("generate");
    assert_eq!(key.public().len(), 65);
    let msg = b"COSE ToBeSigned";
    let sig = f.token.sign_es256(&key, msg).expect("sign");
    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, key.public())
        .verify(msg, sig.raw())
        .expect("r||s verifies (COSE/JOSE form)");
    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, key.public())
        .verify(msg, &sig.to_der())
        .expect("DER verifies (TLS form)");
    assert!(
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, key.public())
            .verify(b"other", sig.raw())
            .is_err()
    );
    // A signing key is not an agreement key.
    assert!(matches!(
        f.token.derive(&key, key.public()),
        Err(TokenError::WrongKeyKind { .. })
    ));
}

#[test]
fn p256_derive_in_the_token_equals_software_ecdh() {
    let Some(f) = fixture() else { return };
    let made = f
        .token
        .generate(KeyKind::P256Ecdh, "p256-enc")
        .expect("generate");
    let key = f
        .token
        .key(&uri("p256-enc"), KeyKind::P256Ecdh)
        .expect("find");
    // The sender's ephemeral key, in software.
    assert_eq!(key.public(), made.public());
    let eph = p256::SecretKey::from_slice(&[0x42; 32]).expect("scalar");
    let token_pub = p256::PublicKey::from_sec1_bytes(key.public()).expect("token public key");
    let software = p256::ecdh::diffie_hellman(eph.to_nonzero_scalar(), token_pub.as_affine());
    let token_side = f
        .token
        .derive(&key, &eph.public_key().to_sec1_bytes())
        .expect("derive");
    assert_eq!(
        token_side.bytes().as_slice(),
        software.raw_secret_bytes().as_slice()
    );
    // A point off the curve is refused before reaching the token.
    let mut bad = eph.public_key().to_sec1_bytes().to_vec();
    bad[40] ^= 1;
    assert!(matches!(
        f.token.derive(&key, &bad),
        Err(TokenError::InvalidPeerKey)
    ));
    // An agreement key does not sign.
    assert!(matches!(
        f.token.sign_es256(&key, b"x"),
        Err(TokenError::WrongKeyKind { .. })
    ));
}

#[test]
fn x25519_derive_in_the_token_equals_software_ecdh() {
    let Some(f) = fixture() else { return };
    let made = f
        .token
        .generate(KeyKind::X25519, "x-enc")
        .expect("generate");
    let key = f.token.key(&uri("x-enc"), KeyKind::X25519).expect("find");
    assert_eq!(key.public(), made.public());
    let rng = ring::rand::SystemRandom::new();
    let eph = ring::agreement::EphemeralPrivateKey::generate(&ring::agreement::X25519, &rng)
        .expect("eph");
    let eph_pub = eph.compute_public_key().expect("pub");
    let software = ring::agreement::agree_ephemeral(
        eph,
        &ring::agreement::UnparsedPublicKey::new(&ring::agreement::X25519, key.public()),
        |s| s.to_vec(),
    )
    .expect("software agree");
    let token_side = f.token.derive(&key, eph_pub.as_ref()).expect("derive");
    assert_eq!(token_side.bytes().as_slice(), software.as_slice());
}

#[test]
fn private_keys_are_sensitive_and_never_extractable() {
    let Some(f) = fixture() else { return };
    for (kind, label) in [
        (KeyKind::Ed25519, "flags-ed"),
        (KeyKind::Es256, "flags-es"),
        (KeyKind::P256Ecdh, "flags-p256"),
        (KeyKind::X25519, "flags-x"),
    ] {
        let key = f.token.generate(kind, label).expect("generate");
        let flags = f.token.private_flags(&key).expect("flags");
        assert!(
            flags.sensitive && flags.always_sensitive,
            "{label}: {flags:?}"
        );
        assert!(
            !flags.extractable && flags.never_extractable,
            "{label}: {flags:?}"
        );
    }
}

#[test]
fn wrong_pin_is_one_error_naming_the_token() {
    let Some(f) = fixture() else { return };
    let pin_file = f.dir.join("wrong-pin");
    std::fs::write(&pin_file, "0000-wrong\n").expect("pin file");
    let err = Token::open(&config(
        &f.module,
        WRONG_PIN_TOKEN,
        PinSource::File(pin_file),
        2,
    ))
    .expect_err("wrong PIN must fail");
    assert!(
        matches!(&err, TokenError::WrongPin { token } if token == WRONG_PIN_TOKEN),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(WRONG_PIN_TOKEN) && !text.contains("0000-wrong"),
        "{text}"
    );
}

#[test]
fn pin_from_environment_and_missing_pin_source() {
    let Some(f) = fixture() else { return };
    // Reading an unset variable: a clear error naming the variable, not the PIN.
    let err = Token::open(&config(
        &f.module,
        TOKEN,
        PinSource::Env("ISNAD_TEST_PIN_UNSET".into()),
        1,
    ))
    .expect_err("unset variable");
    assert!(
        matches!(&err, TokenError::PinUnavailable { source_name, .. } if source_name.contains("ISNAD_TEST_PIN_UNSET"))
    );
    let err = Token::open(&config(
        &f.module,
        "no such token",
        PinSource::File(f.dir.join("pin")),
        1,
    ))
    .expect_err("absent token");
    assert!(
        matches!(&err, TokenError::TokenAbsent { token } if token == "no such token"),
        "{err:?}"
    );
}

#[test]
fn missing_key_and_wrong_kind_are_typed_errors() {
    let Some(f) = fixture() else { return };
    let err = f
        .token
        .key(&uri("no-such-key"), KeyKind::Ed25519)
        .expect_err("absent");
    assert!(
        matches!(&err, TokenError::KeyNotFound { token, object, .. } if token == TOKEN && object == "no-such-key"),
        "{err:?}"
    );
    f.token
        .generate(KeyKind::Es256, "kind-es")
        .expect("generate");
    let err = f
        .token
        .key(&uri("kind-es"), KeyKind::Ed25519)
        .expect_err("wrong kind");
    assert!(
        matches!(
            err,
            TokenError::WrongKeyKind {
                expected: KeyKind::Ed25519,
                ..
            }
        ),
        "{err:?}"
    );
    let other = KeyUri::parse("pkcs11:token=other;object=kind-es").expect("uri");
    assert!(matches!(
        f.token.key(&other, KeyKind::Es256),
        Err(TokenError::UriMismatch { .. })
    ));
}

#[test]
fn a_pool_of_one_session_serves_concurrent_signers() {
    let Some(f) = fixture() else { return };
    let token = Token::open(&config(
        &f.module,
        TOKEN,
        PinSource::File(f.dir.join("pin")),
        1,
    ))
    .expect("open");
    let key = token
        .generate(KeyKind::Ed25519, "pool-ed")
        .expect("generate");
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let (token, key) = (&token, &key);
            s.spawn(move || {
                for i in 0..20u8 {
                    let msg = [t, i];
                    let sig = token.sign_ed25519(key, &msg).expect("sign");
                    UnparsedPublicKey::new(&signature::ED25519, key.public())
                        .verify(&msg, &sig)
                        .expect("verify");
                }
            });
        }
    });
}

#[test]
fn a_missing_module_is_named() {
    let err = Token::open(&config(
        Path::new("/nonexistent/libpkcs11-missing.so"),
        TOKEN,
        PinSource::Env("UNUSED".into()),
        1,
    ))
    .expect_err("no module");
    assert!(
        matches!(&err, TokenError::ModuleUnavailable { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("libpkcs11-missing.so"));
}

/// Key pairs generated from many threads at once all succeed. SoftHSM2's
/// file-based object store fails concurrent C_GenerateKeyPair calls now
/// and then (CKR_GENERAL_ERROR, softhsm/SoftHSMv2 issue 573; seen once in
/// this project's CI, in `p256_derive_in_the_token_equals_software_ecdh`),
/// so `Token::generate` makes one at a time. The race is rare: without the
/// lock this test passed 8 runs out of 8 here, so it guards the lock
/// without proving it.
#[test]
fn keys_generated_from_many_threads_at_once_all_succeed() {
    let Some(f) = fixture() else { return };
    let kinds = [KeyKind::Ed25519, KeyKind::Es256, KeyKind::P256Ecdh];
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..16)
            .map(|t| {
                scope.spawn(move || {
                    for i in 0..20 {
                        let kind = kinds[(t + i) % kinds.len()];
                        f.token
                            .generate(kind, &format!("many-{t}-{i}"))
                            .unwrap_or_else(|e| panic!("thread {t} key {i} ({kind:?}): {e}"));
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker");
        }
    });
}
