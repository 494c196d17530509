//! External access policies (`*-CsExternalAccessPolicy`): scopes, per-user grants, and which policy
//! applies to a local user (user `Tag:` grant > `Site:` policy of the user's site > Global).

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use crate::domain::Domain;
use crate::error::InvalidValue;
use crate::jid;
use crate::short::ShortStr;

/// Longest site or tag name.
pub const MAX_POLICY_NAME_CHARS: usize = 256;

/// Where a policy applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyScope {
    Global,
    /// All users of the hosted domains that the config puts in this site.
    Site(String),
    /// Users granted this policy by name (per-user policy).
    Tag(String),
}

impl PolicyScope {
    /// `Global`, `site:NAME`, `tag:NAME`, or a bare `NAME` (a per-user policy, as upstream).
    /// Prefixes are case-insensitive; names keep their case but compare without it.
    pub fn parse(text: &str) -> Result<PolicyScope, InvalidValue> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("global") {
            return Ok(PolicyScope::Global);
        }
        let (kind, name) = match t.split_once(':') {
            Some((prefix, name)) if prefix.eq_ignore_ascii_case("site") => ("site", name),
            Some((prefix, name)) if prefix.eq_ignore_ascii_case("tag") => ("tag", name),
            Some(_) => return Err(scope_error(text, "unknown scope prefix")),
            None => ("tag", t),
        };
        check_policy_name(text, name)?;
        Ok(match kind {
            "site" => PolicyScope::Site(name.to_owned()),
            _ => PolicyScope::Tag(name.to_owned()),
        })
    }

    /// Case-insensitive identity, used as the storage key.
    pub fn key(&self) -> String {
        match self {
            PolicyScope::Global => "global".to_owned(),
            PolicyScope::Site(n) => format!("site:{}", n.to_lowercase()),
            PolicyScope::Tag(n) => format!("tag:{}", n.to_lowercase()),
        }
    }
}

fn scope_error(text: &str, why: &str) -> InvalidValue {
    InvalidValue::new(
        "Identity",
        format!(
            "'{text}' is not a valid policy identity: {why}. Allowed values: Global, site:<name>, tag:<name> or <name> (a per-user policy); names are 1 to {MAX_POLICY_NAME_CHARS} characters without spaces or ':'."
        ),
    )
}

fn check_policy_name(text: &str, name: &str) -> Result<(), InvalidValue> {
    if name.is_empty() {
        return Err(scope_error(text, "the name is empty"));
    }
    if name.chars().count() > MAX_POLICY_NAME_CHARS {
        return Err(scope_error(text, "the name is too long"));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ':' | '*' | '?' | '"' | '\''))
    {
        return Err(scope_error(
            text,
            "the name contains a space or a character that is not allowed",
        ));
    }
    Ok(())
}

impl fmt::Display for PolicyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyScope::Global => f.write_str("Global"),
            PolicyScope::Site(n) => write!(f, "Site:{n}"),
            PolicyScope::Tag(n) => write!(f, "Tag:{n}"),
        }
    }
}

impl Serialize for PolicyScope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The field names, in output order.
pub const POLICY_FIELDS: [&str; 7] = [
    "Identity",
    "Description",
    "EnableFederationAccess",
    "EnableXmppAccess",
    "EnableOutsideAccess",
    "EnablePublicCloudAccess",
    "EnablePublicCloudAudioVideoAccess",
];

/// One external access policy. Only EnableXmppAccess matters to fedgate; the other flags are stored
/// so that exported Skype for Business policies round-trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExternalAccessPolicy {
    pub identity: PolicyScope,
    pub description: String,
    pub enable_federation_access: bool,
    pub enable_xmpp_access: bool,
    pub enable_outside_access: bool,
    pub enable_public_cloud_access: bool,
    pub enable_public_cloud_audio_video_access: bool,
}

impl ExternalAccessPolicy {
    /// A policy with every flag False (upstream defaults).
    pub fn new(identity: PolicyScope) -> Self {
        ExternalAccessPolicy {
            identity,
            description: String::new(),
            enable_federation_access: false,
            enable_xmpp_access: false,
            enable_outside_access: false,
            enable_public_cloud_access: false,
            enable_public_cloud_audio_video_access: false,
        }
    }

    pub fn validate(&self) -> Result<(), InvalidValue> {
        crate::partner::check_description(&self.description)
    }
}

/// Changes a New/Set makes to a policy; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyChanges {
    pub description: Option<String>,
    pub enable_federation_access: Option<bool>,
    pub enable_xmpp_access: Option<bool>,
    pub enable_outside_access: Option<bool>,
    pub enable_public_cloud_access: Option<bool>,
    pub enable_public_cloud_audio_video_access: Option<bool>,
}

impl PolicyChanges {
    pub fn apply(&self, p: &mut ExternalAccessPolicy) {
        if let Some(v) = &self.description {
            p.description.clone_from(v);
        }
        let flags = [
            (
                self.enable_federation_access,
                &mut p.enable_federation_access,
            ),
            (self.enable_xmpp_access, &mut p.enable_xmpp_access),
            (self.enable_outside_access, &mut p.enable_outside_access),
            (
                self.enable_public_cloud_access,
                &mut p.enable_public_cloud_access,
            ),
            (
                self.enable_public_cloud_audio_video_access,
                &mut p.enable_public_cloud_audio_video_access,
            ),
        ];
        for (change, field) in flags {
            if let Some(v) = change {
                *field = v;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == PolicyChanges::default()
    }
}

/// A user's bare JID, normalised as the internal XMPP servers normalise it (see [`crate::jid`]):
/// the localpart through nodeprep (`ＡＬＩＣＥ`, `Alice` and `al\u{AD}ice` are all `alice`), the
/// domain through [`Domain::parse`]. Policies, grants and PublicUnverified authorisations are keyed
/// on this form, so a variant spelling names the same user as on the internal server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserJid {
    local: ShortStr,
    domain: Domain,
}

impl UserJid {
    /// A bare JID typed by an admin (`alice@corp.example`, also `sip:alice@corp.example`) or read
    /// from the store; no resource.
    pub fn parse(text: &str) -> Result<UserJid, InvalidValue> {
        let bad = |why: &dyn fmt::Display| {
            InvalidValue::new(
                "Identity",
                format!(
                    "'{text}' is not a valid user: {why}. Allowed values: a bare JID such as alice@corp.example."
                ),
            )
        };
        let t = text.trim();
        let t = t.strip_prefix("sip:").unwrap_or(t);
        let (local, domain) = t.split_once('@').ok_or_else(|| bad(&"it has no '@'"))?;
        let local = ShortStr::from(jid::nodeprep(local).map_err(|e| bad(&e))?);
        let domain = Domain::parse(domain).map_err(|e| bad(&e))?;
        Ok(UserJid { local, domain })
    }

    /// From parts already prepared by [`crate::jid`].
    pub(crate) fn from_prepared(local: ShortStr, domain: Domain) -> UserJid {
        UserJid { local, domain }
    }

    /// The localpart (nodeprep'd).
    pub fn local(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &Domain {
        &self.domain
    }
}

impl fmt::Display for UserJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl Serialize for UserJid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Every policy and grant, for effective-policy resolution.
#[derive(Debug, Clone)]
pub struct AccessPolicies {
    global: ExternalAccessPolicy,
    /// By [`PolicyScope::key`], Site and Tag policies.
    scoped: HashMap<String, ExternalAccessPolicy>,
    /// User → tag policy key.
    grants: HashMap<UserJid, String>,
}

impl Default for AccessPolicies {
    fn default() -> Self {
        AccessPolicies {
            global: ExternalAccessPolicy::new(PolicyScope::Global),
            scoped: HashMap::new(),
            grants: HashMap::new(),
        }
    }
}

impl AccessPolicies {
    /// Build from stored policies and grants (user, tag name). A missing Global gets the defaults.
    pub fn new(
        policies: impl IntoIterator<Item = ExternalAccessPolicy>,
        grants: impl IntoIterator<Item = (UserJid, String)>,
    ) -> Self {
        let mut set = AccessPolicies::default();
        for p in policies {
            match p.identity {
                PolicyScope::Global => set.global = p,
                _ => {
                    set.scoped.insert(p.identity.key(), p);
                }
            }
        }
        set.grants = grants
            .into_iter()
            .map(|(user, tag)| (user, PolicyScope::Tag(tag).key()))
            .collect();
        set
    }

    /// The policy for `user`, whose hosted domain belongs to `site` (from the config), if any:
    /// the user's granted tag policy, else the site's policy, else Global.
    pub fn effective(&self, user: &UserJid, site: Option<&str>) -> &ExternalAccessPolicy {
        if let Some(p) = self.grants.get(user).and_then(|key| self.scoped.get(key)) {
            return p;
        }
        if let Some(p) = site.and_then(|s| self.scoped.get(&PolicyScope::Site(s.to_owned()).key()))
        {
            return p;
        }
        &self.global
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(scope: &str, xmpp: bool) -> ExternalAccessPolicy {
        let mut p = ExternalAccessPolicy::new(PolicyScope::parse(scope).unwrap());
        p.enable_xmpp_access = xmpp;
        p
    }

    #[test]
    fn scopes_parse_and_display() {
        assert_eq!(PolicyScope::parse("global").unwrap(), PolicyScope::Global);
        assert_eq!(
            PolicyScope::parse("SITE:Redmond").unwrap().to_string(),
            "Site:Redmond"
        );
        assert_eq!(
            PolicyScope::parse("tag:Sales").unwrap().to_string(),
            "Tag:Sales"
        );
        assert_eq!(
            PolicyScope::parse("Sales").unwrap(),
            PolicyScope::Tag("Sales".into())
        );
        assert_eq!(
            PolicyScope::parse("Tag:SALES").unwrap().key(),
            PolicyScope::parse("sales").unwrap().key()
        );
        for bad in ["", "site:", "user:x", "tag:a b", "tag:a:b"] {
            let e = PolicyScope::parse(bad).unwrap_err();
            assert_eq!(e.parameter, "Identity");
            assert!(
                e.reason.contains("Allowed values: Global, site:<name>"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn user_jids() {
        assert_eq!(
            UserJid::parse("Alice@Corp.Example").unwrap().to_string(),
            "alice@corp.example"
        );
        assert_eq!(
            UserJid::parse("sip:bob@corp.example").unwrap().to_string(),
            "bob@corp.example"
        );
        for bad in [
            "alice",
            "@corp.example",
            "a b@corp.example",
            "alice@",
            "alice@corp.example/res",
            "a/b@corp.example",
            "\u{00AD}@corp.example",
            "ali\u{FF20}ce@corp.example",
            "\u{05D0}1@corp.example",
        ] {
            let e = UserJid::parse(bad).unwrap_err();
            assert_eq!(e.parameter, "Identity", "{bad}");
            assert!(e.reason.contains("is not a valid user"), "{bad}: {e}");
        }
    }

    #[test]
    fn user_jids_are_normalised_as_the_internal_server_does() {
        // Grant-CsExternalAccessPolicy -Identity ＡＬＩＣＥ@corp.example stores alice@corp.example.
        for variant in [
            "ＡＬＩＣＥ@corp.example",
            "ａｌｉｃｅ@corp.example",
            "al\u{00AD}ice@corp.example",
            "ali\u{200B}ce@Corp.Example",
            "alice@ｃｏｒｐ.example",
            "sip:ＡＬＩＣＥ@corp.example",
        ] {
            assert_eq!(
                UserJid::parse(variant).unwrap(),
                UserJid::parse("alice@corp.example").unwrap(),
                "{variant:?}"
            );
        }
        assert_eq!(
            UserJid::parse("\u{FB01}ona@corp.example")
                .unwrap()
                .to_string(),
            "fiona@corp.example"
        );
        assert_eq!(
            UserJid::parse("A\u{030A}sa@corp.example").unwrap(),
            UserJid::parse("\u{00C5}SA@corp.example").unwrap()
        );
        let u = UserJid::parse("Stra\u{00DF}e@corp.example").unwrap();
        assert_eq!(
            (u.local(), u.domain().as_str()),
            ("strasse", "corp.example")
        );
        // A variant's grant is the user's grant.
        let set = AccessPolicies::new(
            [policy("Global", true), policy("tag:NoXmpp", false)],
            [(
                UserJid::parse("ＣＡＲＯＬ@corp.example").unwrap(),
                "NoXmpp".to_owned(),
            )],
        );
        for variant in ["carol@corp.example", "car\u{00AD}ol@corp.example"] {
            assert!(
                !set.effective(&UserJid::parse(variant).unwrap(), None)
                    .enable_xmpp_access,
                "{variant:?}"
            );
        }
    }

    #[test]
    fn user_grant_beats_site_beats_global() {
        let set = AccessPolicies::new(
            [
                policy("Global", false),
                policy("site:Redmond", true),
                policy("tag:NoXmpp", false),
                policy("tag:Xmpp", true),
            ],
            [
                (
                    UserJid::parse("carol@corp.example").unwrap(),
                    "noxmpp".to_owned(),
                ),
                (
                    UserJid::parse("dave@other.example").unwrap(),
                    "Xmpp".to_owned(),
                ),
            ],
        );
        let u = |s: &str| UserJid::parse(s).unwrap();
        // No grant, site policy applies.
        assert!(
            set.effective(&u("alice@corp.example"), Some("Redmond"))
                .enable_xmpp_access
        );
        // Grant overrides site.
        assert!(
            !set.effective(&u("carol@corp.example"), Some("redmond"))
                .enable_xmpp_access
        );
        // No site policy for this site: Global.
        assert!(
            !set.effective(&u("alice@corp.example"), Some("Paris"))
                .enable_xmpp_access
        );
        assert!(
            !set.effective(&u("alice@corp.example"), None)
                .enable_xmpp_access
        );
        // Grant overrides Global.
        assert!(
            set.effective(&u("dave@other.example"), None)
                .enable_xmpp_access
        );
        // A grant naming a policy that no longer exists falls back to site, then Global.
        let set2 = AccessPolicies::new(
            [policy("site:Redmond", true)],
            [(u("erin@corp.example"), "gone".to_owned())],
        );
        assert!(
            set2.effective(&u("erin@corp.example"), Some("Redmond"))
                .enable_xmpp_access
        );
        assert!(
            !AccessPolicies::default()
                .effective(&u("x@y.z"), None)
                .enable_xmpp_access
        );
    }

    #[test]
    fn changes_apply() {
        let mut p = policy("Global", false);
        PolicyChanges {
            enable_xmpp_access: Some(true),
            description: Some("d".into()),
            ..Default::default()
        }
        .apply(&mut p);
        assert!(p.enable_xmpp_access && p.description == "d" && !p.enable_outside_access);
    }
}
