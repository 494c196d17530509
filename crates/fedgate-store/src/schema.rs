//! The database schema as numbered migrations, for SQLite ([`MIGRATIONS`]; `PRAGMA user_version`
//! records how many have run) and for PostgreSQL ([`POSTGRES_MIGRATIONS`]; the `fedgate_schema`
//! table records it). A database with a higher number than this build knows was written by a newer
//! fedgate and is refused.

/// One step of the schema: SQL, or Rust code for what SQL cannot do. Both run in the migrating
/// transaction.
pub enum Migration {
    Sql(&'static str),
    Code(fn(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>),
}

impl Migration {
    /// The SQL of an SQL step.
    pub fn sql(&self) -> Option<&'static str> {
        match self {
            Migration::Sql(sql) => Some(sql),
            Migration::Code(_) => None,
        }
    }
}

/// Each entry moves the schema one version up. Never edit an entry that has shipped: add one.
pub const MIGRATIONS: &[Migration] = &[
    // 1: partners, their domains, policies, grants, gateway settings, audit log.
    Migration::Sql(
        r#"
    CREATE TABLE partners (
        identity TEXT PRIMARY KEY NOT NULL,
        description TEXT NOT NULL,
        partner_type TEXT NOT NULL,
        tls_negotiation TEXT NOT NULL,
        sasl_negotiation TEXT NOT NULL,
        support_dialback INTEGER NOT NULL,
        enable_keep_alive INTEGER NOT NULL,
        connection_limit INTEGER,
        proxy_fqdn TEXT,
        bypass_dual_write INTEGER NOT NULL,
        version INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- Every domain or *.domain pattern a partner owns, its Identity included (position 0).
    -- The primary key makes a domain belong to at most one partner, across processes.
    CREATE TABLE partner_domains (
        pattern TEXT PRIMARY KEY NOT NULL,
        identity TEXT NOT NULL REFERENCES partners(identity) ON DELETE CASCADE,
        position INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX partner_domains_by_identity ON partner_domains(identity, position);
    CREATE TABLE policies (
        key TEXT PRIMARY KEY NOT NULL,
        identity TEXT NOT NULL,
        description TEXT NOT NULL,
        enable_federation_access INTEGER NOT NULL,
        enable_xmpp_access INTEGER NOT NULL,
        enable_outside_access INTEGER NOT NULL,
        enable_public_cloud_access INTEGER NOT NULL,
        enable_public_cloud_audio_video_access INTEGER NOT NULL,
        version INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE policy_grants (
        user_jid TEXT PRIMARY KEY NOT NULL,
        tag TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE gateway_settings (
        name TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        actor TEXT NOT NULL,
        command TEXT NOT NULL,
        target TEXT NOT NULL,
        before TEXT,
        after TEXT
    );
    CREATE INDEX audit_log_by_target ON audit_log(target COLLATE NOCASE, id);
    "#,
    ),
    // 2: API tokens for the REST API. Only a SHA-256 hash of each token is kept; revoking deletes the row.
    Migration::Sql(
        r#"
    CREATE TABLE api_tokens (
        name TEXT PRIMARY KEY NOT NULL COLLATE NOCASE,
        role TEXT NOT NULL CHECK (role IN ('admin', 'reader')),
        hash TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    ) WITHOUT ROWID;
    "#,
    ),
    // 3: PublicUnverified authorisations: a local user sent subscribe/subscribed to a remote bare JID.
    Migration::Sql(
        r#"
    CREATE TABLE authorisations (
        local_user TEXT NOT NULL,
        remote_user TEXT NOT NULL,
        since TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (local_user, remote_user)
    ) WITHOUT ROWID;
    "#,
    ),
    // 4: user JIDs stored before localparts went through nodeprep (they were only lowercased) are
    // re-keyed to their normalised form, so that a grant or authorisation stored for `ａｌｉｃｅ`
    // is alice's, and rows that now compare equal do not shadow each other.
    Migration::Code(crate::sqlite::normalise_stored_user_jids),
    // 5: partner health per partner and direction (issue 14), kept across restarts; `data` is
    // the gateway's JSON record. Not audited: it is what the gateway saw, not an admin change.
    Migration::Sql(
        r#"
    CREATE TABLE partner_health (
        partner TEXT NOT NULL,
        direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
        data TEXT NOT NULL,
        PRIMARY KEY (partner, direction)
    ) WITHOUT ROWID;
    "#,
    ),
    // 6: the nodes of a pool (their heartbeats) and the stream leases that the cluster-wide
    // connection limits count (crate::cluster). Operational state: not audited. Times are the
    // database's, as text in UTC.
    Migration::Sql(
        r#"
    CREATE TABLE nodes (
        name TEXT PRIMARY KEY NOT NULL,
        started_at TEXT NOT NULL,
        last_heartbeat TEXT NOT NULL,
        version TEXT NOT NULL,
        address TEXT,
        inbound_streams INTEGER NOT NULL,
        outbound_streams INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE stream_leases (
        node TEXT NOT NULL REFERENCES nodes(name) ON DELETE CASCADE,
        stream INTEGER NOT NULL,
        partner TEXT NOT NULL,
        direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
        opened_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (node, stream)
    ) WITHOUT ROWID;
    CREATE INDEX stream_leases_by_partner ON stream_leases(partner);
    "#,
    ),
];

/// The schema version this build writes.
pub fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// The PostgreSQL schema, one SQL script per version (run in the migrating transaction). The same
/// tables and columns as SQLite's; text keys compare bytewise (`COLLATE "C"`, as SQLite does) so
/// that orders and case-insensitive matches (ASCII only, as SQLite's NOCASE) are the same on both.
/// SQLite's migration 4 (re-keying user JIDs stored before nodeprep) has no counterpart: no
/// PostgreSQL store predates nodeprep. Never edit an entry that has shipped: add one.
pub const POSTGRES_MIGRATIONS: &[&str] = &[
    // 1: everything SQLite's migrations 1-4 make.
    r#"
    CREATE FUNCTION fedgate_utc_now() RETURNS TEXT LANGUAGE sql STABLE
        AS $$ SELECT to_char(statement_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') $$;
    CREATE TABLE partners (
        identity TEXT COLLATE "C" PRIMARY KEY,
        description TEXT NOT NULL,
        partner_type TEXT NOT NULL,
        tls_negotiation TEXT NOT NULL,
        sasl_negotiation TEXT NOT NULL,
        support_dialback BOOLEAN NOT NULL,
        enable_keep_alive BOOLEAN NOT NULL,
        connection_limit BIGINT,
        proxy_fqdn TEXT,
        bypass_dual_write BOOLEAN NOT NULL,
        version BIGINT NOT NULL
    );
    -- Every domain or *.domain pattern a partner claims, its Identity included (position 0). The
    -- primary key is the unique index that makes a domain belong to at most one partner, whichever
    -- node writes it.
    CREATE TABLE partner_domains (
        pattern TEXT COLLATE "C" PRIMARY KEY,
        identity TEXT COLLATE "C" NOT NULL REFERENCES partners(identity) ON DELETE CASCADE,
        position INTEGER NOT NULL
    );
    CREATE INDEX partner_domains_by_identity ON partner_domains(identity, position);
    CREATE TABLE policies (
        key TEXT COLLATE "C" PRIMARY KEY,
        identity TEXT NOT NULL,
        description TEXT NOT NULL,
        enable_federation_access BOOLEAN NOT NULL,
        enable_xmpp_access BOOLEAN NOT NULL,
        enable_outside_access BOOLEAN NOT NULL,
        enable_public_cloud_access BOOLEAN NOT NULL,
        enable_public_cloud_audio_video_access BOOLEAN NOT NULL,
        version BIGINT NOT NULL
    );
    CREATE TABLE policy_grants (
        user_jid TEXT COLLATE "C" PRIMARY KEY,
        tag TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE gateway_settings (
        name TEXT COLLATE "C" PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE audit_log (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        time TEXT NOT NULL DEFAULT fedgate_utc_now(),
        actor TEXT NOT NULL,
        command TEXT NOT NULL,
        target TEXT COLLATE "C" NOT NULL,
        before TEXT,
        after TEXT
    );
    CREATE INDEX audit_log_by_target ON audit_log(lower(target), id);
    -- API tokens: only a SHA-256 hash of each; names unique without (ASCII) case.
    CREATE TABLE api_tokens (
        name TEXT COLLATE "C" PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('admin', 'reader')),
        hash TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL DEFAULT fedgate_utc_now()
    );
    CREATE UNIQUE INDEX api_tokens_name_nocase ON api_tokens(lower(name));
    -- PublicUnverified authorisations: a local user sent subscribe/subscribed to a remote bare JID.
    CREATE TABLE authorisations (
        local_user TEXT COLLATE "C" NOT NULL,
        remote_user TEXT COLLATE "C" NOT NULL,
        since TEXT NOT NULL DEFAULT fedgate_utc_now(),
        PRIMARY KEY (local_user, remote_user)
    );
    "#,
    // 2: partner health per partner and direction (SQLite's migration 5): what a gateway saw, not
    // an admin change, so not audited and not announced; the last node to save a row wins.
    r#"
    CREATE TABLE partner_health (
        partner TEXT COLLATE "C" NOT NULL,
        direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
        data TEXT NOT NULL,
        PRIMARY KEY (partner, direction)
    );
    "#,
    // 3: the nodes of the pool (their heartbeats) and the stream leases that the cluster-wide
    // connection limits count (SQLite's migration 6; crate::cluster). Operational state: not
    // audited, not announced. Times are the database server's.
    r#"
    CREATE TABLE nodes (
        name TEXT COLLATE "C" PRIMARY KEY,
        started_at TIMESTAMPTZ NOT NULL,
        last_heartbeat TIMESTAMPTZ NOT NULL,
        version TEXT NOT NULL,
        address TEXT,
        inbound_streams BIGINT NOT NULL,
        outbound_streams BIGINT NOT NULL
    );
    CREATE TABLE stream_leases (
        node TEXT COLLATE "C" NOT NULL REFERENCES nodes(name) ON DELETE CASCADE,
        stream BIGINT NOT NULL,
        partner TEXT COLLATE "C" NOT NULL,
        direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
        opened_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (node, stream)
    );
    CREATE INDEX stream_leases_by_partner ON stream_leases(partner);
    "#,
];
