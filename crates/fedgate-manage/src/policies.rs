//! New/Get/Set/Remove/Grant-CsExternalAccessPolicy.

use fedgate_model::{ExternalAccessPolicy, PolicyChanges, PolicyScope, UserJid};
use fedgate_store::{StoreError, Versioned};

use crate::{MAX_WRITE_ATTEMPTS, ManageError, Manager, Mode, Outcome, retry_backoff, what_if_text};

/// Which policies a Get returns.
#[derive(Debug, Clone)]
pub enum PolicySelector {
    All,
    Identity(PolicyScope),
    /// `*`/`?` wildcard on the Identity text (`Tag:Sales`), case-insensitive.
    Filter(String),
}

/// A per-user grant, as Get shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Grant {
    pub identity: UserJid,
    pub external_access_policy: String,
}

/// `*` and `?` wildcard match, case-insensitive.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl Manager<'_> {
    pub fn get_policies(
        &self,
        selector: &PolicySelector,
    ) -> Result<Vec<Versioned<ExternalAccessPolicy>>, ManageError> {
        match selector {
            PolicySelector::All => Ok(self.store.policies()?),
            PolicySelector::Filter(glob) => Ok(self
                .store
                .policies()?
                .into_iter()
                .filter(|p| wildcard_match(glob, &p.value.identity.to_string()))
                .collect()),
            PolicySelector::Identity(scope) => match self.store.policy(scope)? {
                Some(p) => Ok(vec![p]),
                None => Err(StoreError::PolicyNotFound(scope.clone()).into()),
            },
        }
    }

    pub fn new_policy(
        &self,
        scope: PolicyScope,
        changes: &PolicyChanges,
        mode: Mode,
    ) -> Result<Outcome<ExternalAccessPolicy>, ManageError> {
        const CMD: &str = "New-CsExternalAccessPolicy";
        let mut policy = ExternalAccessPolicy::new(scope);
        changes.apply(&mut policy);
        policy.validate()?;
        if mode == Mode::InMemory {
            return Ok(Outcome {
                value: policy,
                version: 0,
                warnings: Vec::new(),
                what_if: None,
            });
        }
        if self.store.policy(&policy.identity)?.is_some() {
            return Err(StoreError::PolicyExists(policy.identity.clone()).into());
        }
        if mode == Mode::WhatIf {
            let what_if = Some(what_if_text(CMD, &policy.identity.to_string()));
            return Ok(Outcome {
                value: policy,
                version: 0,
                warnings: Vec::new(),
                what_if,
            });
        }
        let stored = self.store.create_policy(&policy, &self.audit(CMD))?;
        Ok(Outcome {
            value: stored.value,
            version: stored.version,
            warnings: Vec::new(),
            what_if: None,
        })
    }

    /// Set-CsExternalAccessPolicy on `scope` (or an `-Instance` object, which creates it if absent).
    pub fn set_policy(
        &self,
        scope: &PolicyScope,
        instance: Option<&ExternalAccessPolicy>,
        changes: &PolicyChanges,
        expected_version: Option<u64>,
        mode: Mode,
    ) -> Result<Outcome<ExternalAccessPolicy>, ManageError> {
        const CMD: &str = "Set-CsExternalAccessPolicy";
        for attempt in 1..=MAX_WRITE_ATTEMPTS {
            if attempt > 1 {
                retry_backoff(attempt);
            }
            let current = self.store.policy(scope)?;
            let (mut policy, version) = match (current, instance) {
                (Some(c), None) => (c.value, Some(c.version)),
                (Some(c), Some(i)) => (i.clone(), Some(c.version)),
                (None, Some(i)) if expected_version.is_none() => (i.clone(), None),
                (None, _) => return Err(StoreError::PolicyNotFound(scope.clone()).into()),
            };
            if let (Some(expected), Some(found)) = (expected_version, version) {
                if expected != found {
                    return Err(StoreError::Conflict {
                        target: scope.to_string(),
                        expected,
                        found,
                    }
                    .into());
                }
            }
            changes.apply(&mut policy);
            policy.validate()?;
            if mode != Mode::Commit {
                let what_if = Some(what_if_text(CMD, &scope.to_string()));
                return Ok(Outcome {
                    value: policy,
                    version: version.unwrap_or(0),
                    warnings: Vec::new(),
                    what_if,
                });
            }
            let result = match version {
                Some(v) => self.store.update_policy(&policy, v, &self.audit(CMD)),
                None => self.store.create_policy(&policy, &self.audit(CMD)),
            };
            match result {
                Ok(stored) => {
                    return Ok(Outcome {
                        value: stored.value,
                        version: stored.version,
                        warnings: Vec::new(),
                        what_if: None,
                    });
                }
                Err(StoreError::Conflict { .. } | StoreError::PolicyExists(_))
                    if expected_version.is_none() =>
                {
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ManageError::Refused(format!(
            "The policy '{scope}' kept changing while this command ran; try again."
        )))
    }

    /// Remove-CsExternalAccessPolicy. Global is reset to its defaults. A tag policy granted to users
    /// is removed (with its grants) only with `force`.
    pub fn remove_policy(
        &self,
        scope: &PolicyScope,
        force: bool,
        mode: Mode,
    ) -> Result<Outcome<ExternalAccessPolicy>, ManageError> {
        const CMD: &str = "Remove-CsExternalAccessPolicy";
        let current = self
            .store
            .policy(scope)?
            .ok_or_else(|| StoreError::PolicyNotFound(scope.clone()))?;
        let mut warnings = Vec::new();
        if let PolicyScope::Tag(_) = scope {
            let users: Vec<String> = self
                .store
                .grants()?
                .into_iter()
                .filter(|(_, tag)| PolicyScope::Tag(tag.clone()).key() == scope.key())
                .map(|(u, _)| u.to_string())
                .collect();
            if !users.is_empty() {
                if !force {
                    return Err(ManageError::Refused(format!(
                        "The policy '{scope}' is granted to {} user(s) ({}); use -Force to remove it and those grants.",
                        users.len(),
                        users.join(", ")
                    )));
                }
                warnings.push(format!(
                    "Removing the grants of '{scope}' from: {}.",
                    users.join(", ")
                ));
            }
        }
        if *scope == PolicyScope::Global {
            warnings.push(
                "The Global policy cannot be removed; its settings are reset to the defaults."
                    .into(),
            );
        }
        if mode != Mode::Commit {
            return Ok(Outcome {
                value: current.value,
                version: current.version,
                warnings,
                what_if: Some(what_if_text(CMD, &scope.to_string())),
            });
        }
        let removed = self.store.delete_policy(scope, &self.audit(CMD))?;
        Ok(Outcome {
            value: removed,
            version: 0,
            warnings,
            what_if: None,
        })
    }

    /// Grant-CsExternalAccessPolicy: give `user` the tag policy `policy_name`, or with None take
    /// their grant away (they fall back to their site's policy, then Global).
    pub fn grant_policy(
        &self,
        user: &UserJid,
        policy_name: Option<&str>,
        mode: Mode,
    ) -> Result<Outcome<Option<Grant>>, ManageError> {
        const CMD: &str = "Grant-CsExternalAccessPolicy";
        let name = match policy_name {
            Some(name) => {
                let scope = PolicyScope::parse(name)?;
                let PolicyScope::Tag(tag) = &scope else {
                    return Err(fedgate_model::InvalidValue::new(
                        "PolicyName",
                        format!("'{name}' is not a per-user policy. Allowed values: the name of a tag: policy, or $null to remove the grant."),
                    )
                    .into());
                };
                let stored = self
                    .store
                    .policy(&scope)?
                    .ok_or_else(|| StoreError::PolicyNotFound(scope.clone()))?;
                match stored.value.identity {
                    PolicyScope::Tag(n) => Some(n),
                    _ => Some(tag.clone()),
                }
            }
            None => None,
        };
        let grant = name.clone().map(|n| Grant {
            identity: user.clone(),
            external_access_policy: n,
        });
        if mode != Mode::Commit {
            return Ok(Outcome {
                value: grant,
                version: 0,
                warnings: Vec::new(),
                what_if: Some(what_if_text(CMD, &user.to_string())),
            });
        }
        self.store
            .grant_policy(user, name.as_deref(), &self.audit(CMD))?;
        Ok(Outcome {
            value: grant,
            version: 0,
            warnings: Vec::new(),
            what_if: None,
        })
    }

    /// Every per-user grant.
    pub fn get_grants(&self) -> Result<Vec<Grant>, ManageError> {
        Ok(self
            .store
            .grants()?
            .into_iter()
            .map(|(identity, external_access_policy)| Grant {
                identity,
                external_access_policy,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("tag:*", "Tag:Sales"));
        assert!(wildcard_match("*sales", "Tag:Sales"));
        assert!(wildcard_match("?lobal", "Global"));
        assert!(!wildcard_match("site:*", "Tag:Sales"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("a", ""));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
    }
}
