//! API tokens: 256 random bits shown once as `fgt_<base64url>`; the store keeps only the hex
//! SHA-256 of the text. A fast hash is enough because the token is random (nothing to guess), and
//! the lookup by hash means the token itself is never compared or kept.
//!
//! The CLI (`fedgate token create|list|revoke`) and the API's authentication both use this
//! module: [`check`] says who a token (by its hash) is and whether its role allows the request;
//! the HTTP layer only reads the header and turns a [`Refused`] into a status.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fedgate_model::InvalidValue;
use fedgate_store::{AuditContext, Store, StoreError, TokenInfo, TokenRole};
use sha2::{Digest, Sha256};

use crate::ManageError;

/// Every token starts with this, so leaked tokens are easy to recognise (and to scan for).
pub const TOKEN_PREFIX: &str = "fgt_";

/// Longest token name.
pub const MAX_NAME_CHARS: usize = 64;

/// A fresh token text: the prefix and 32 random bytes in unpadded base64url.
pub fn generate() -> Result<String, ManageError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        ManageError::Refused(format!("The system's random number generator failed: {e}"))
    })?;
    Ok(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The hex SHA-256 of a token's text, as the store keeps it.
pub fn hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest.iter() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// A token name: 1 to 64 characters from `A-Z a-z 0-9 . _ -` (it appears in the audit log as
/// `token:<name>`).
pub fn check_name(name: &str) -> Result<(), InvalidValue> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(InvalidValue::new(
            "Name",
            format!(
                "'{name}' is not a valid token name. Allowed values: 1 to {MAX_NAME_CHARS} characters from A-Z, a-z, 0-9, '.', '_' and '-'."
            ),
        ))
    }
}

/// `admin` or `reader`, with an error naming the allowed values.
pub fn parse_role(text: &str) -> Result<TokenRole, InvalidValue> {
    TokenRole::parse(text).ok_or_else(|| {
        InvalidValue::new(
            "Role",
            format!("Cannot convert value \"{text}\" to type \"TokenRole\". Allowed values: admin, reader."),
        )
    })
}

/// Make a token: returns what is listed and the token text, which exists nowhere else afterwards.
pub fn create(
    store: &dyn Store,
    name: &str,
    role: TokenRole,
    actor: &str,
) -> Result<(TokenInfo, String), ManageError> {
    check_name(name)?;
    let token = generate()?;
    let info = store.create_token(name, role, &hash(&token), &audit(actor, "token create"))?;
    Ok((info, token))
}

/// Revoke a token by name: requests with it fail from then on.
pub fn revoke(store: &dyn Store, name: &str, actor: &str) -> Result<TokenInfo, ManageError> {
    Ok(store.revoke_token(name, &audit(actor, "token revoke"))?)
}

/// Who is calling: the token's name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: TokenRole,
}

impl Caller {
    /// The audit-log actor: `token:<name>`.
    pub fn actor(&self) -> String {
        format!("token:{}", self.name)
    }
}

/// Why [`check`] refused a request.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// No live token has this hash (unknown or revoked).
    #[error("The API token is not valid or has been revoked.")]
    Unknown,
    /// A `reader` token asked for a change.
    #[error("The token '{0}' has the reader role and cannot change anything; use an admin token.")]
    ReadOnly(String),
    /// The store could not be asked.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The caller a token hash stands for, if its role allows the request: `reads` (GET/HEAD) are
/// open to every role, anything else to `admin` tokens only.
pub fn check(store: &dyn Store, token_hash: &str, reads: bool) -> Result<Caller, Refused> {
    let info = store.token_by_hash(token_hash)?.ok_or(Refused::Unknown)?;
    let caller = Caller {
        name: info.name,
        role: info.role,
    };
    if caller.role == TokenRole::Reader && !reads {
        return Err(Refused::ReadOnly(caller.name));
    }
    Ok(caller)
}

fn audit(actor: &str, command: &str) -> AuditContext {
    AuditContext {
        actor: actor.to_owned(),
        command: command.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        // The stored form is the SHA-256 of the token (64 hex digits), never the token; each
        // token has its own.
        let h = hash(&a);
        assert_eq!(h.len(), 64);
        assert!(
            h.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "{h}"
        );
        assert!(!h.contains(&a[TOKEN_PREFIX.len()..]));
        assert_ne!(h, hash(&b));
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_store_keeps_only_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fedgate.db");
        let store = fedgate_store::open(&fedgate_store::StoreUrl::Sqlite(path.clone())).unwrap();
        let (info, token) = create(store.as_ref(), "ops", TokenRole::Admin, "test").unwrap();
        assert_eq!(info.name, "ops");
        let found = store
            .token_by_hash(&hash(&token))
            .unwrap()
            .expect("found by its hash");
        assert_eq!(found.name, "ops");
        assert!(
            store.token_by_hash(&token).unwrap().is_none(),
            "found by the token itself"
        );
        drop(store);
        // Neither the database nor its journal holds the token's secret part.
        let secret = &token.as_bytes()[TOKEN_PREFIX.len()..];
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "the token is stored in clear"
            );
        }
    }

    #[test]
    fn names_and_roles() {
        assert!(check_name("ops-admin_1.x").is_ok());
        for bad in ["", "a b", "ops:admin", &"x".repeat(65), "é"] {
            let e = check_name(bad).unwrap_err();
            assert_eq!(e.parameter, "Name");
            assert!(e.to_string().contains("Allowed values"), "{e}");
        }
        assert_eq!(parse_role("Admin").unwrap(), TokenRole::Admin);
        assert!(
            parse_role("root")
                .unwrap_err()
                .to_string()
                .contains("admin, reader")
        );
    }
}
