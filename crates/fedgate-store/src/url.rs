//! The store URL given with `--store` or `FEDGATE_STORE`: `sqlite:<path>` (the default is
//! `sqlite:fedgate.db` in the working directory).

use std::fmt;
use std::path::PathBuf;

use crate::StoreError;

/// The default store when none is given.
pub const DEFAULT_STORE_URL: &str = "sqlite:fedgate.db";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
}

impl StoreUrl {
    pub fn parse(text: &str) -> Result<StoreUrl, StoreError> {
        let bad = |why: &str| {
            StoreError::Url(format!(
                "The store URL '{text}' is not valid: {why}. Allowed values: sqlite:<path>, as sqlite:fedgate.db or sqlite:/var/lib/fedgate/fedgate.db."
            ))
        };
        let (scheme, rest) = text
            .split_once(':')
            .ok_or_else(|| bad("it has no scheme"))?;
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.is_empty() {
                    return Err(bad("the path is empty"));
                }
                Ok(StoreUrl::Sqlite(PathBuf::from(path)))
            }
            "postgres" | "postgresql" => Err(bad("PostgreSQL is not supported by this build yet")),
            _ => Err(bad("unknown scheme")),
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sqlite_and_rejects_others() {
        assert_eq!(
            StoreUrl::parse("sqlite:fedgate.db").unwrap(),
            StoreUrl::Sqlite("fedgate.db".into())
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///var/x.db").unwrap(),
            StoreUrl::Sqlite("/var/x.db".into())
        );
        assert_eq!(
            StoreUrl::parse(DEFAULT_STORE_URL).unwrap().to_string(),
            DEFAULT_STORE_URL
        );
        for bad in [
            "fedgate.db",
            "sqlite:",
            "mysql://x",
            "postgres://localhost/db",
        ] {
            let e = StoreUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains("Allowed values: sqlite:<path>"), "{bad}: {e}");
        }
    }
}
