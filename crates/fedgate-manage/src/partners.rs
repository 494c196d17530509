//! New/Get/Set/Remove-CsXmppAllowedPartner.

use fedgate_model::{Domain, DomainPattern, InvalidValue, PartnerChanges, XmppAllowedPartner};
use fedgate_store::{StoreError, Versioned};

use crate::{MAX_WRITE_ATTEMPTS, ManageError, Manager, Mode, Outcome, retry_backoff, what_if_text};

/// The TLS × SASL × Dialback warnings are about the admin's choice: show them when the command
/// sets one of the three fields (or a whole object), not for untouched defaults.
fn negotiation_warnings(warnings: Vec<String>, changes: &PartnerChanges) -> Vec<String> {
    let chosen = changes.tls_negotiation.is_some()
        || changes.sasl_negotiation.is_some()
        || changes.support_dialback_negotiation.is_some();
    if chosen { warnings } else { Vec::new() }
}

/// Which partners a Get returns.
#[derive(Debug, Clone)]
pub enum PartnerSelector {
    All,
    /// One partner; not finding it is an error.
    Identity(Domain),
    /// `*` and `?` wildcards on Identity; no match is an empty result.
    Filter(String),
}

/// What a Set changes.
#[derive(Debug, Clone)]
pub enum SetTarget {
    /// `-Identity`: an existing partner, changed by the given fields.
    Identity(Domain),
    /// `-Instance`: a whole object (e.g. from `-InMemory` or an export). Creates the partner if it
    /// does not exist yet (the upstream `New -InMemory` then `Set -Instance` workflow).
    Instance(Box<XmppAllowedPartner>),
}

impl Manager<'_> {
    pub fn get_partners(
        &self,
        selector: &PartnerSelector,
    ) -> Result<Vec<Versioned<XmppAllowedPartner>>, ManageError> {
        match selector {
            PartnerSelector::All => Ok(self.store.partners(None)?),
            PartnerSelector::Filter(glob) => Ok(self.store.partners(Some(glob))?),
            PartnerSelector::Identity(identity) => match self.store.partner(identity)? {
                Some(p) => Ok(vec![p]),
                None => Err(StoreError::PartnerNotFound(identity.clone()).into()),
            },
        }
    }

    /// New-CsXmppAllowedPartner.
    pub fn new_partner(
        &self,
        identity: Domain,
        changes: &PartnerChanges,
        mode: Mode,
    ) -> Result<Outcome<XmppAllowedPartner>, ManageError> {
        const CMD: &str = "New-CsXmppAllowedPartner";
        let mut partner = XmppAllowedPartner::new(identity);
        changes.apply(&mut partner);
        let warnings = negotiation_warnings(self.check_partner(&partner)?, changes);
        if mode == Mode::InMemory {
            return Ok(Outcome {
                value: partner,
                version: 0,
                warnings,
                what_if: None,
            });
        }
        if self.store.partner(&partner.identity)?.is_some() {
            return Err(StoreError::PartnerExists(partner.identity.clone()).into());
        }
        self.check_domains_free(&partner)?;
        if mode == Mode::WhatIf {
            let what_if = Some(what_if_text(CMD, partner.identity.as_str()));
            return Ok(Outcome {
                value: partner,
                version: 0,
                warnings,
                what_if,
            });
        }
        let stored = self.store.create_partner(&partner, &self.audit(CMD))?;
        Ok(Outcome {
            value: stored.value,
            version: stored.version,
            warnings,
            what_if: None,
        })
    }

    /// Set-CsXmppAllowedPartner. `expected_version`, when given, must match the stored record
    /// (the REST API's If-Match); otherwise the read-modify-write is retried on a concurrent change.
    pub fn set_partner(
        &self,
        target: &SetTarget,
        changes: &PartnerChanges,
        expected_version: Option<u64>,
        mode: Mode,
    ) -> Result<Outcome<XmppAllowedPartner>, ManageError> {
        const CMD: &str = "Set-CsXmppAllowedPartner";
        if mode == Mode::InMemory {
            return Err(ManageError::Refused(
                "Set-CsXmppAllowedPartner has no -InMemory.".into(),
            ));
        }
        let identity = match target {
            SetTarget::Identity(d) => d.clone(),
            SetTarget::Instance(p) => p.identity.clone(),
        };
        for attempt in 1..=MAX_WRITE_ATTEMPTS {
            if attempt > 1 {
                retry_backoff(attempt);
            }
            let current = self.store.partner(&identity)?;
            let (mut partner, version) = match (current, target) {
                (Some(c), SetTarget::Identity(_)) => (c.value, Some(c.version)),
                (Some(c), SetTarget::Instance(p)) => ((**p).clone(), Some(c.version)),
                (None, SetTarget::Instance(p)) if expected_version.is_none() => {
                    ((**p).clone(), None)
                }
                (None, _) => return Err(StoreError::PartnerNotFound(identity).into()),
            };
            if let (Some(expected), Some(found)) = (expected_version, version) {
                if expected != found {
                    return Err(StoreError::Conflict {
                        target: identity.to_string(),
                        expected,
                        found,
                    }
                    .into());
                }
            }
            changes.apply(&mut partner);
            let mut warnings = self.check_partner(&partner)?;
            if matches!(target, SetTarget::Identity(_)) {
                warnings = negotiation_warnings(warnings, changes);
            }
            self.check_domains_free(&partner)?;
            if mode == Mode::WhatIf {
                let what_if = Some(what_if_text(CMD, identity.as_str()));
                return Ok(Outcome {
                    value: partner,
                    version: version.unwrap_or(0),
                    warnings,
                    what_if,
                });
            }
            let result = match version {
                Some(v) => self.store.update_partner(&partner, v, &self.audit(CMD)),
                None => self.store.create_partner(&partner, &self.audit(CMD)),
            };
            match result {
                Ok(stored) => {
                    return Ok(Outcome {
                        value: stored.value,
                        version: stored.version,
                        warnings,
                        what_if: None,
                    });
                }
                // Someone else changed it between our read and write: read again, unless the
                // caller pinned a version.
                Err(StoreError::Conflict { .. } | StoreError::PartnerExists(_))
                    if expected_version.is_none() =>
                {
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ManageError::Refused(format!(
            "The partner '{identity}' kept changing while this command ran; try again."
        )))
    }

    /// Remove-CsXmppAllowedPartner.
    pub fn remove_partner(
        &self,
        identity: &Domain,
        expected_version: Option<u64>,
        mode: Mode,
    ) -> Result<Outcome<XmppAllowedPartner>, ManageError> {
        const CMD: &str = "Remove-CsXmppAllowedPartner";
        let current = self
            .store
            .partner(identity)?
            .ok_or_else(|| StoreError::PartnerNotFound(identity.clone()))?;
        if mode != Mode::Commit {
            // A dry run is held to `expected_version` as the real run would be.
            if let Some(expected) = expected_version.filter(|v| *v != current.version) {
                return Err(StoreError::Conflict {
                    target: identity.to_string(),
                    expected,
                    found: current.version,
                }
                .into());
            }
            return Ok(Outcome {
                value: current.value,
                version: current.version,
                warnings: Vec::new(),
                what_if: Some(what_if_text(CMD, identity.as_str())),
            });
        }
        let removed = self
            .store
            .delete_partner(identity, expected_version, &self.audit(CMD))?;
        Ok(Outcome {
            value: removed,
            version: 0,
            warnings: Vec::new(),
            what_if: None,
        })
    }

    /// The record's own rules plus "not one of our hosted domains". Returns warning texts.
    fn check_partner(&self, partner: &XmppAllowedPartner) -> Result<Vec<String>, ManageError> {
        let warnings = partner.validate()?;
        for pattern in partner.patterns() {
            if let Some(hosted) = self.hosted_domains.iter().find(|h| pattern.matches(h)) {
                let parameter = if pattern == DomainPattern::Exact(partner.identity.clone()) {
                    "Identity"
                } else {
                    "AdditionalDomains"
                };
                return Err(InvalidValue::new(
                    parameter,
                    format!("'{hosted}' is one of this gateway's own hosted domains and cannot be a partner domain."),
                )
                .into());
            }
        }
        Ok(warnings.iter().map(|w| w.to_string()).collect())
    }

    /// No other partner owns any of the partner's patterns.
    fn check_domains_free(&self, partner: &XmppAllowedPartner) -> Result<(), ManageError> {
        for pattern in partner.patterns() {
            let text = pattern.to_string();
            if let Some(owner) = self.store.domain_owner(&text)? {
                if owner != partner.identity {
                    return Err(StoreError::DomainTaken {
                        domain: text,
                        owner,
                    }
                    .into());
                }
            }
        }
        Ok(())
    }
}
