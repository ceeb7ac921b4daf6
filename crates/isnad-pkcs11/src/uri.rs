//! RFC 7512 PKCS#11 URIs as key references.
//!
//! A key reference names one key object in one token:
//! `pkcs11:token=Isnad%20node;object=signing;type=private`. The parser
//! accepts the path attributes of RFC 7512 §2.3 and the query attributes
//! `module-path` and `module-name`; every value is percent-decoded once.
//! It rejects, with a typed error each: a missing `pkcs11:` scheme, an
//! attribute without `=`, an empty or unknown attribute name, a repeated
//! attribute, a bad percent escape, a value that is not UTF-8 where text is
//! required, a `type` other than `private`/`public`, and a PIN in the URI
//! (`pin-value`, `pin-source`): the PIN comes from a file or an environment
//! variable chosen by the operator, never from configuration text.
//! Vendor attributes (`x-…`, RFC 7512 §2.3) are accepted and ignored.

use std::fmt;

/// Which half of a key pair a URI names (`type=` in RFC 7512).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    /// `type=private`: the private key, which never leaves the token.
    Private,
    /// `type=public`: the public key object.
    Public,
}

/// A parsed key reference: which token, which object.
///
/// `token` and `object` are required (a reference that could match several
/// tokens or keys is refused rather than guessed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUri {
    token: String,
    object: String,
    id: Option<Vec<u8>>,
    object_type: Option<ObjectType>,
    serial: Option<String>,
    module_path: Option<String>,
    module_name: Option<String>,
}

/// Why a PKCS#11 URI was refused. Every case is an operator's
/// configuration mistake; the message names the attribute to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// The text does not start with `pkcs11:`.
    #[error("a PKCS#11 key reference starts with `pkcs11:`")]
    Scheme,
    /// An attribute has no `=` (e.g. `pkcs11:token`).
    #[error("PKCS#11 URI attribute `{0}` has no `=value`")]
    MissingEquals(String),
    /// An attribute name is empty (e.g. `pkcs11:=x` or `;;`).
    #[error("PKCS#11 URI has an empty attribute name")]
    EmptyName,
    /// An attribute that RFC 7512 does not define and that is not a vendor
    /// (`x-`) attribute.
    #[error("PKCS#11 URI attribute `{0}` is not defined by RFC 7512")]
    UnknownAttribute(String),
    /// The same attribute appears twice (RFC 7512 §2.3 forbids it).
    #[error("PKCS#11 URI attribute `{0}` appears more than once")]
    Duplicate(String),
    /// A `%` not followed by two hexadecimal digits.
    #[error("PKCS#11 URI attribute `{0}` has a malformed percent escape")]
    PercentEscape(String),
    /// A text attribute that is not UTF-8 after percent-decoding.
    #[error("PKCS#11 URI attribute `{0}` is not UTF-8 text")]
    NotUtf8(String),
    /// `type=` other than `private` or `public` (a key reference names a key).
    #[error("PKCS#11 URI `type={0}` does not name a key: use `type=private` or `type=public`")]
    ObjectType(String),
    /// The URI carries a PIN (`pin-value` or `pin-source`): give the PIN in
    /// a file or an environment variable instead.
    #[error("PKCS#11 URI carries a PIN (`{0}`): put the PIN in a file or an environment variable, never in configuration")]
    PinInUri(String),
    /// `token=` is missing: the reference must name its token.
    #[error("PKCS#11 URI has no `token=`: name the token holding the key")]
    MissingToken,
    /// `object=` is missing: the reference must name its key.
    #[error("PKCS#11 URI has no `object=`: name the key (its CKA_LABEL)")]
    MissingObject,
}

impl KeyUri {
    /// Parses an RFC 7512 URI naming a key.
    pub fn parse(text: &str) -> Result<Self, UriError> {
        let rest = text.strip_prefix("pkcs11:").ok_or(UriError::Scheme)?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut seen: Vec<String> = Vec::new();
        let mut token = None;
        let mut object = None;
        let mut id = None;
        let mut object_type = None;
        let mut serial = None;
        let mut module_path = None;
        let mut module_name = None;
        let path_attrs = path
            .split(';')
            .filter(|s| !path.is_empty() || !s.is_empty());
        for attr in path_attrs {
            let (name, raw) = split_attr(attr, &mut seen)?;
            let value = percent_decode(name, raw)?;
            match name {
                "token" => token = Some(text_value(name, value)?),
                "object" => object = Some(text_value(name, value)?),
                "id" => id = Some(value),
                "serial" => serial = Some(text_value(name, value)?),
                "type" => {
                    object_type = Some(match value.as_slice() {
                        b"private" => ObjectType::Private,
                        b"public" => ObjectType::Public,
                        other => {
                            return Err(UriError::ObjectType(
                                String::from_utf8_lossy(other).into_owned(),
                            ))
                        }
                    })
                }
                "manufacturer"
                | "model"
                | "library-manufacturer"
                | "library-description"
                | "library-version"
                | "slot-description"
                | "slot-manufacturer"
                | "slot-id" => {}
                n if n.starts_with("x-") => {}
                n => return Err(UriError::UnknownAttribute(n.to_owned())),
            }
        }
        if let Some(query) = query {
            for attr in query
                .split('&')
                .filter(|s| !query.is_empty() || !s.is_empty())
            {
                let (name, raw) = split_attr(attr, &mut seen)?;
                let value = percent_decode(name, raw)?;
                match name {
                    "module-path" => module_path = Some(text_value(name, value)?),
                    "module-name" => module_name = Some(text_value(name, value)?),
                    "pin-value" | "pin-source" => return Err(UriError::PinInUri(name.to_owned())),
                    n if n.starts_with("x-") => {}
                    n => return Err(UriError::UnknownAttribute(n.to_owned())),
                }
            }
        }
        Ok(KeyUri {
            token: token.ok_or(UriError::MissingToken)?,
            object: object.ok_or(UriError::MissingObject)?,
            id,
            object_type,
            serial,
            module_path,
            module_name,
        })
    }

    /// The token label (`token=`, CKA token label).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The key's label (`object=`, CKA_LABEL).
    pub fn object(&self) -> &str {
        &self.object
    }

    /// The key's CKA_ID (`id=`), if given.
    pub fn id(&self) -> Option<&[u8]> {
        self.id.as_deref()
    }

    /// `type=`, if given.
    pub fn object_type(&self) -> Option<ObjectType> {
        self.object_type
    }

    /// The token serial number (`serial=`), if given.
    pub fn serial(&self) -> Option<&str> {
        self.serial.as_deref()
    }

    /// `module-path=` from the query, if given.
    pub fn module_path(&self) -> Option<&str> {
        self.module_path.as_deref()
    }

    /// `module-name=` from the query, if given.
    pub fn module_name(&self) -> Option<&str> {
        self.module_name.as_deref()
    }
}

impl std::str::FromStr for KeyUri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Self, UriError> {
        KeyUri::parse(s)
    }
}

impl fmt::Display for KeyUri {
    /// The canonical form: `token`, `object`, then `id`, `serial`, `type`;
    /// every value percent-encoded outside RFC 3986 unreserved characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pkcs11:token={};object={}",
            pct(self.token.as_bytes()),
            pct(self.object.as_bytes())
        )?;
        if let Some(id) = &self.id {
            write!(f, ";id={}", pct(id))?;
        }
        if let Some(serial) = &self.serial {
            write!(f, ";serial={}", pct(serial.as_bytes()))?;
        }
        match self.object_type {
            Some(ObjectType::Private) => f.write_str(";type=private")?,
            Some(ObjectType::Public) => f.write_str(";type=public")?,
            None => {}
        }
        let mut sep = '?';
        if let Some(p) = &self.module_path {
            write!(f, "{sep}module-path={}", pct(p.as_bytes()))?;
            sep = '&';
        }
        if let Some(n) = &self.module_name {
            write!(f, "{sep}module-name={}", pct(n.as_bytes()))?;
        }
        Ok(())
    }
}

fn split_attr<'a>(attr: &'a str, seen: &mut Vec<String>) -> Result<(&'a str, &'a str), UriError> {
    let (name, value) = attr
        .split_once('=')
        .ok_or_else(|| UriError::MissingEquals(attr.to_owned()))?;
    if name.is_empty() {
        return Err(UriError::EmptyName);
    }
    if seen.iter().any(|s| s == name) {
        return Err(UriError::Duplicate(name.to_owned()));
    }
    seen.push(name.to_owned());
    Ok((name, value))
}

fn percent_decode(name: &str, raw: &str) -> Result<Vec<u8>, UriError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| {
                    u8::from_str_radix(h, 16)
                        .ok()
                        .filter(|_| h.bytes().all(|c| c.is_ascii_hexdigit()))
                })
                .ok_or_else(|| UriError::PercentEscape(name.to_owned()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn text_value(name: &str, value: Vec<u8>) -> Result<String, UriError> {
    String::from_utf8(value).map_err(|_| UriError::NotUtf8(name.to_owned()))
}

fn pct(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_token_object_type_and_decodes_percent_escapes() {
        let uri = KeyUri::parse(
            "pkcs11:token=Isnad%20node;object=sign%3Bing;type=private;id=%01%ff?module-path=/usr/lib/softhsm/libsofthsm2.so",
        )
        .expect("valid");
        assert_eq!(uri.token(), "Isnad node");
        assert_eq!(uri.object(), "sign;ing");
        assert_eq!(uri.object_type(), Some(ObjectType::Private));
        assert_eq!(uri.id(), Some(&[0x01, 0xff][..]));
        assert_eq!(uri.module_path(), Some("/usr/lib/softhsm/libsofthsm2.so"));
        // Display round-trips through parse.
        assert_eq!(KeyUri::parse(&uri.to_string()), Ok(uri));
    }

    #[test]
    fn ignores_library_and_vendor_attributes() {
        let uri = KeyUri::parse("pkcs11:manufacturer=SoftHSM%20project;token=t;object=o;x-foo=bar")
            .expect("valid");
        assert_eq!(
            (uri.token(), uri.object(), uri.object_type()),
            ("t", "o", None)
        );
    }

    #[test]
    fn every_malformed_uri_has_its_own_error() {
        let cases: &[(&str, UriError)] = &[
            ("token=t;object=o", UriError::Scheme),
            ("PKCS11:token=t;object=o", UriError::Scheme),
            (
                "pkcs11:token;object=o",
                UriError::MissingEquals("token".into()),
            ),
            ("pkcs11:=x;token=t;object=o", UriError::EmptyName),
            (
                "pkcs11:token=t;;object=o",
                UriError::MissingEquals(String::new()),
            ),
            (
                "pkcs11:token=t;object=o;label=x",
                UriError::UnknownAttribute("label".into()),
            ),
            (
                "pkcs11:token=t;object=o;token=u",
                UriError::Duplicate("token".into()),
            ),
            (
                "pkcs11:token=t%2;object=o",
                UriError::PercentEscape("token".into()),
            ),
            (
                "pkcs11:token=t%zz;object=o",
                UriError::PercentEscape("token".into()),
            ),
            (
                "pkcs11:token=t%+1;object=o",
                UriError::PercentEscape("token".into()),
            ),
            (
                "pkcs11:token=%ff;object=o",
                UriError::NotUtf8("token".into()),
            ),
            (
                "pkcs11:token=t;object=o;type=cert",
                UriError::ObjectType("cert".into()),
            ),
            (
                "pkcs11:token=t;object=o?pin-value=1234",
                UriError::PinInUri("pin-value".into()),
            ),
            (
                "pkcs11:token=t;object=o?pin-source=/etc/pin",
                UriError::PinInUri("pin-source".into()),
            ),
            (
                "pkcs11:token=t;object=o?module-path=a&module-path=b",
                UriError::Duplicate("module-path".into()),
            ),
            (
                "pkcs11:token=t;object=o?slot=1",
                UriError::UnknownAttribute("slot".into()),
            ),
            ("pkcs11:object=o", UriError::MissingToken),
            ("pkcs11:token=t", UriError::MissingObject),
            ("pkcs11:", UriError::MissingToken),
        ];
        for (text, want) in cases {
            assert_eq!(KeyUri::parse(text).as_ref(), Err(want), "{text}");
        }
    }
}
