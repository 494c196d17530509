//! The store URL given with `--store`, `FEDGATE_STORE` or the config file's `store =`:
//! `sqlite:<path>` (the default is `sqlite:fedgate.db` in the working directory) or
//! `postgres://user[:password]@host[:port][/database][?sslmode=…&sslrootcert=…&connect_timeout=…]`.
//!
//! A password never prints: `Display` and `Debug` mask it, and so do parse errors. Where the
//! password comes from when the URL has none is [`PostgresUrl::resolve_password`]'s business.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use fedgate_model::gateway_settings::Secret;

use crate::StoreError;

/// The default store when none is given.
pub const DEFAULT_STORE_URL: &str = "sqlite:fedgate.db";

/// The file holding the PostgreSQL password (first line), checked first.
pub const PASSWORD_FILE_ENV: &str = "FEDGATE_STORE_PASSWORD_FILE";
/// The PostgreSQL password itself, checked second.
pub const PASSWORD_ENV: &str = "FEDGATE_STORE_PASSWORD";

const ALLOWED: &str = "Allowed values: sqlite:<path>, as sqlite:fedgate.db or sqlite:/var/lib/fedgate/fedgate.db; \
     postgres://user@host[:port]/database[?sslmode=disable|prefer|require|verify-full]";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
    Postgres(PostgresUrl),
}

/// How to use TLS to PostgreSQL (libpq's `sslmode` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never: plain TCP.
    Disable,
    /// TLS when the server offers it, plain TCP when it does not (libpq's default). When TLS is
    /// used the certificate is verified, as with `verify-full`.
    Prefer,
    /// TLS or no connection; the certificate and host name are verified (stricter than libpq,
    /// whose `require` does not verify).
    Require,
    /// TLS or no connection; the certificate and host name are verified.
    VerifyFull,
}

impl SslMode {
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// A parsed `postgres://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    pub user: String,
    /// The password written in the URL, if any (discouraged: it shows in `ps` and shell history).
    pub password: Option<Secret>,
    /// A host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub database: String,
    pub ssl_mode: SslMode,
    /// PEM file of the CA certificates that authenticate the server (default: the system's roots).
    pub ssl_root_cert: Option<PathBuf>,
    pub connect_timeout: Duration,
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The Display form masks the password.
        write!(f, "PostgresUrl({self})")
    }
}

impl PostgresUrl {
    /// `host:port`, as errors name the server.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The password to log in with, from the first of: the file named by
    /// `FEDGATE_STORE_PASSWORD_FILE` (its first line), `FEDGATE_STORE_PASSWORD`, the URL,
    /// `PGPASSWORD`. None when no source has one (the server may not ask: trust, peer).
    pub fn resolve_password(&self) -> Result<Option<Secret>, StoreError> {
        self.password_from(&|name| std::env::var(name).ok())
    }

    /// [`resolve_password`](Self::resolve_password) with `env` for the process environment.
    fn password_from(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Secret>, StoreError> {
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        if let Some(file) = env(PASSWORD_FILE_ENV) {
            let text = std::fs::read_to_string(&file).map_err(|e| {
                StoreError::Url(format!(
                    "Cannot read the store password from {PASSWORD_FILE_ENV}='{file}': {e}."
                ))
            })?;
            let line = text.lines().next().unwrap_or("");
            if line.is_empty() {
                return Err(StoreError::Url(format!(
                    "The store password file {PASSWORD_FILE_ENV}='{file}' is empty."
                )));
            }
            return Ok(Some(Secret::new(line.to_owned())));
        }
        if let Some(password) = env(PASSWORD_ENV) {
            return Ok(Some(Secret::new(password)));
        }
        if let Some(password) = &self.password {
            return Ok(Some(password.clone()));
        }
        Ok(env("PGPASSWORD").map(Secret::new))
    }

    fn parse(text: &str, bad: &dyn Fn(&str) -> StoreError) -> Result<PostgresUrl, StoreError> {
        let (authority_path, query) = match text.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (text, None),
        };
        let (authority, database) = match authority_path.split_once('/') {
            Some((a, d)) => (a, Some(d)),
            None => (authority_path, None),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (u, h),
            None => return Err(bad("it names no user (postgres://user@host/database)")),
        };
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        let user = percent_decode(user).ok_or_else(|| bad("the user is not valid UTF-8"))?;
        if user.is_empty() {
            return Err(bad("it names no user (postgres://user@host/database)"));
        }
        let password = password
            .map(|p| percent_decode(p).ok_or_else(|| bad("the password is not valid UTF-8")))
            .transpose()?
            .filter(|p| !p.is_empty())
            .map(Secret::new);
        let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 host lacks its ']'"))?;
            (h.to_owned(), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (hostport.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("it names no host"));
        }
        let port =
            match port {
                None => 5432,
                Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    bad(&format!("the port '{p}' is not a number from 1 to 65535"))
                })?,
            };
        let database = match database.map(percent_decode) {
            None => user.clone(),
            Some(None) => return Err(bad("the database name is not valid UTF-8")),
            Some(Some(d)) if d.is_empty() => user.clone(),
            Some(Some(d)) => d,
        };
        let mut url = PostgresUrl {
            user,
            password,
            host,
            port,
            database,
            ssl_mode: SslMode::Prefer,
            ssl_root_cert: None,
            connect_timeout: Duration::from_secs(10),
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value)
                .ok_or_else(|| bad(&format!("the value of '{key}' is not valid UTF-8")))?;
            match key {
                "sslmode" => {
                    url.ssl_mode = match value.as_str() {
                        "disable" => SslMode::Disable,
                        "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-full" | "verify-ca" => SslMode::VerifyFull,
                        other => {
                            return Err(bad(&format!(
                                "sslmode '{other}' is not one of disable, prefer, require, verify-full"
                            )));
                        }
                    }
                }
                "sslrootcert" if !value.is_empty() => url.ssl_root_cert = Some(value.into()),
                "connect_timeout" => {
                    let secs = value
                        .parse::<u64>()
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or_else(|| {
                            bad(&format!(
                                "connect_timeout '{value}' is not a whole number of seconds"
                            ))
                        })?;
                    url.connect_timeout = Duration::from_secs(secs);
                }
                other => {
                    return Err(bad(&format!(
                        "the parameter '{other}' is not supported (sslmode, sslrootcert, connect_timeout are)"
                    )));
                }
            }
        }
        Ok(url)
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = if self.password.is_some() {
            ":********"
        } else {
            ""
        };
        write!(
            f,
            "postgres://{}{password}@{}/{}",
            percent_encode(&self.user),
            self.address(),
            percent_encode(&self.database)
        )?;
        let mut sep = '?';
        if self.ssl_mode != SslMode::Prefer {
            write!(f, "{sep}sslmode={}", self.ssl_mode.name())?;
            sep = '&';
        }
        if let Some(ca) = &self.ssl_root_cert {
            write!(
                f,
                "{sep}sslrootcert={}",
                percent_encode(&ca.to_string_lossy())
            )?;
            sep = '&';
        }
        if self.connect_timeout != Duration::from_secs(10) {
            write!(f, "{sep}connect_timeout={}", self.connect_timeout.as_secs())?;
        }
        Ok(())
    }
}

/// `%XX` escapes decoded; None when the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h)? * 16 + hex(l)?) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `text` with the password of a `scheme://user:password@…?password=…` URL replaced by
/// `********`, for error messages about a URL that did not parse.
fn mask_password(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:********@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let mut out = format!("{scheme}://{authority}{path}");
    if let Some(query) = query {
        let pairs: Vec<&str> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => "password=********",
                _ => pair,
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

impl StoreUrl {
    pub fn parse(text: &str) -> Result<StoreUrl, StoreError> {
        let shown = mask_password(text);
        let bad = |why: &str| {
            StoreError::Url(format!(
                "The store URL '{shown}' is not valid: {why}. {ALLOWED}."
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
            "postgres" | "postgresql" => {
                let rest = rest
                    .strip_prefix("//")
                    .ok_or_else(|| bad("it does not start with postgres://"))?;
                Ok(StoreUrl::Postgres(PostgresUrl::parse(rest, &bad)?))
            }
            _ => Err(bad("unknown scheme")),
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StoreUrl::Postgres(url) => url.fmt(f),
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
            "postgres:localhost/db",
        ] {
            let e = StoreUrl::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains("Allowed values: sqlite:<path>") && e.contains("postgres://user@host"),
                "{bad}: {e}"
            );
        }
    }

    fn pg(text: &str) -> PostgresUrl {
        match StoreUrl::parse(text) {
            Ok(StoreUrl::Postgres(url)) => url,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn parses_postgres_urls() {
        let url = pg("postgres://fedgate@db.example:6543/pool?sslmode=verify-full");
        assert_eq!(url.user, "fedgate");
        assert_eq!(url.password, None);
        assert_eq!(url.address(), "db.example:6543");
        assert_eq!(url.database, "pool");
        assert_eq!(url.ssl_mode, SslMode::VerifyFull);
        assert_eq!(
            url.to_string(),
            "postgres://fedgate@db.example:6543/pool?sslmode=verify-full"
        );
        // Defaults: port 5432, database named as the user, sslmode prefer.
        let url = pg("postgresql://fedgate@10.0.0.5");
        assert_eq!(
            (url.port, url.database.as_str(), url.ssl_mode),
            (5432, "fedgate", SslMode::Prefer)
        );
        let url = pg(
            "postgres://fed%40gate@[2001:db8::1]:5433/fg?sslmode=disable&connect_timeout=3&sslrootcert=/etc/fedgate/pg-ca.pem",
        );
        assert_eq!(url.user, "fed@gate");
        assert_eq!(url.host, "2001:db8::1");
        assert_eq!(url.address(), "[2001:db8::1]:5433");
        assert_eq!(url.connect_timeout, Duration::from_secs(3));
        assert_eq!(
            url.ssl_root_cert.as_deref(),
            Some(std::path::Path::new("/etc/fedgate/pg-ca.pem"))
        );
        assert_eq!(pg(&url.to_string()), url, "Display parses back");
    }

    #[test]
    fn a_password_never_prints() {
        let url = pg("postgres://fedgate:s3cr%3At@db.example/fg");
        assert_eq!(url.password.as_ref().unwrap().expose(), "s3cr:t");
        let shown = format!(
            "{url} {url:?} {:?} {}",
            StoreUrl::Postgres(url.clone()),
            StoreUrl::Postgres(url.clone())
        );
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(shown.contains("postgres://fedgate:********@db.example:5432/fg"));
        // Nor in the error about a URL that does not parse.
        for bad in [
            "postgres://fedgate:s3cret@db.example:99999/fg",
            "postgres://fedgate:s3cret@db.example/fg?sslmode=always",
            "postgres://fedgate:s3cret@db.example/fg?password=s3cret",
        ] {
            let e = StoreUrl::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("s3cret"), "{e}");
            assert!(e.contains("fedgate:********@db.example"), "{e}");
        }
    }

    #[test]
    fn the_password_comes_from_file_env_url_pgpassword_in_that_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\nignored second line\n").unwrap();
        let file = file.to_string_lossy().into_owned();
        let with_url = pg("postgres://fedgate:from-url@db/fg");
        let without = pg("postgres://fedgate@db/fg");
        let resolve = |url: &PostgresUrl, vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            url.password_from(&|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
                .map(|p| p.map(|s| s.expose().to_owned()))
        };
        let all = [
            (PASSWORD_FILE_ENV, file.as_str()),
            (PASSWORD_ENV, "from-env"),
            ("PGPASSWORD", "from-pgpassword"),
        ];
        assert_eq!(
            resolve(&with_url, &all).unwrap().as_deref(),
            Some("from-file")
        );
        assert_eq!(
            resolve(&with_url, &all[1..]).unwrap().as_deref(),
            Some("from-env")
        );
        assert_eq!(
            resolve(&with_url, &all[2..]).unwrap().as_deref(),
            Some("from-url")
        );
        assert_eq!(
            resolve(&without, &all[2..]).unwrap().as_deref(),
            Some("from-pgpassword")
        );
        assert_eq!(resolve(&without, &[]).unwrap(), None);
        // An unreadable or empty file is an error naming the variable and file, not a fallback.
        let missing = format!("{file}.missing");
        let e = resolve(&with_url, &[(PASSWORD_FILE_ENV, &missing)])
            .unwrap_err()
            .to_string();
        assert!(e.contains(PASSWORD_FILE_ENV) && e.contains(&missing), "{e}");
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let empty = dir.path().join("empty").to_string_lossy().into_owned();
        let e = resolve(&with_url, &[(PASSWORD_FILE_ENV, &empty)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("is empty"), "{e}");
    }

    #[test]
    fn bad_postgres_urls_say_what_is_wrong() {
        for (bad, why) in [
            ("postgres://db.example/fg", "names no user"),
            ("postgres://fedgate@:5432/fg", "names no host"),
            ("postgres://fedgate@db:0/fg", "port '0'"),
            ("postgres://fedgate@db/fg?sslmode=on", "sslmode 'on'"),
            (
                "postgres://fedgate@db/fg?host=/tmp",
                "'host' is not supported",
            ),
            (
                "postgres://fedgate@db/fg?connect_timeout=x",
                "connect_timeout 'x'",
            ),
        ] {
            let e = StoreUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
