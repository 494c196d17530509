//! One typed request per management command ([`Request`]), what running it returned
//! ([`Response`]), and [`Manager::execute`], the one entry point every face calls: the PowerShell
//! binder and the plain subcommands build a `Request`; the REST handlers can build the same.

use fedgate_model::{
    Domain, ExternalAccessPolicy, PartnerChanges, PolicyChanges, PolicyScope, UserJid,
    XmppAllowedPartner, XmppGatewayConfiguration,
};
use fedgate_store::Versioned;

use crate::import::{ImportError, ImportReport};
use crate::params::GatewayChanges;
use crate::partners::{PartnerSelector, SetTarget};
use crate::policies::{Grant, PolicySelector};
use crate::{ManageError, Manager, Mode, Outcome};

/// A management command with typed, checked arguments.
#[derive(Debug, Clone)]
pub enum Request {
    /// Get-CsXmppAllowedPartner.
    GetPartners { selector: PartnerSelector },
    /// New-CsXmppAllowedPartner.
    NewPartner {
        identity: Domain,
        changes: PartnerChanges,
        mode: Mode,
    },
    /// Set-CsXmppAllowedPartner.
    SetPartner {
        target: SetTarget,
        changes: PartnerChanges,
        /// The REST API's If-Match; `None` retries the read-modify-write on a concurrent change.
        expected_version: Option<u64>,
        mode: Mode,
    },
    /// Remove-CsXmppAllowedPartner.
    RemovePartner {
        identity: Domain,
        expected_version: Option<u64>,
        mode: Mode,
    },
    /// Get-CsExternalAccessPolicy.
    GetPolicies { selector: PolicySelector },
    /// New-CsExternalAccessPolicy.
    NewPolicy {
        scope: PolicyScope,
        changes: PolicyChanges,
        mode: Mode,
    },
    /// Set-CsExternalAccessPolicy (on `scope`, or on `instance` as the base).
    SetPolicy {
        scope: PolicyScope,
        instance: Option<Box<ExternalAccessPolicy>>,
        changes: PolicyChanges,
        expected_version: Option<u64>,
        mode: Mode,
    },
    /// Remove-CsExternalAccessPolicy; `force` also removes a granted tag policy's grants.
    RemovePolicy {
        scope: PolicyScope,
        force: bool,
        mode: Mode,
    },
    /// Grant-CsExternalAccessPolicy; `policy: None` takes the user's grant away.
    GrantPolicy {
        user: UserJid,
        policy: Option<String>,
        mode: Mode,
    },
    /// Get-CsXmppGatewayConfiguration.
    GetGateway,
    /// Set-CsXmppGatewayConfiguration (with `instance` as the base, when given).
    SetGateway {
        instance: Option<Box<XmppGatewayConfiguration>>,
        changes: GatewayChanges,
        mode: Mode,
    },
    /// Import-CsXmppAllowedPartner: the exported file at `path`.
    Import { path: String, mode: Mode },
}

impl Request {
    /// The cmdlet this request stands for (error prefixes, confirmation, audit).
    pub fn command(&self) -> &'static str {
        match self {
            Request::GetPartners { .. } => "Get-CsXmppAllowedPartner",
            Request::NewPartner { .. } => "New-CsXmppAllowedPartner",
            Request::SetPartner { .. } => "Set-CsXmppAllowedPartner",
            Request::RemovePartner { .. } => "Remove-CsXmppAllowedPartner",
            Request::GetPolicies { .. } => "Get-CsExternalAccessPolicy",
            Request::NewPolicy { .. } => "New-CsExternalAccessPolicy",
            Request::SetPolicy { .. } => "Set-CsExternalAccessPolicy",
            Request::RemovePolicy { .. } => "Remove-CsExternalAccessPolicy",
            Request::GrantPolicy { .. } => "Grant-CsExternalAccessPolicy",
            Request::GetGateway => "Get-CsXmppGatewayConfiguration",
            Request::SetGateway { .. } => "Set-CsXmppGatewayConfiguration",
            Request::Import { .. } => "Import-CsXmppAllowedPartner",
        }
    }

    /// How a write runs; `None` for the reads.
    pub fn mode(&self) -> Option<Mode> {
        match self {
            Request::GetPartners { .. } | Request::GetPolicies { .. } | Request::GetGateway => None,
            Request::NewPartner { mode, .. }
            | Request::SetPartner { mode, .. }
            | Request::RemovePartner { mode, .. }
            | Request::NewPolicy { mode, .. }
            | Request::SetPolicy { mode, .. }
            | Request::RemovePolicy { mode, .. }
            | Request::GrantPolicy { mode, .. }
            | Request::SetGateway { mode, .. }
            | Request::Import { mode, .. } => Some(*mode),
        }
    }

    /// The record a write acts on, as a confirmation prompt names it; `None` for the reads.
    pub fn target(&self) -> Option<String> {
        Some(match self {
            Request::GetPartners { .. } | Request::GetPolicies { .. } | Request::GetGateway => {
                return None;
            }
            Request::NewPartner { identity, .. } | Request::RemovePartner { identity, .. } => {
                identity.to_string()
            }
            Request::SetPartner { target, .. } => match target {
                SetTarget::Identity(d) => d.to_string(),
                SetTarget::Instance(p) => p.identity.to_string(),
            },
            Request::NewPolicy { scope, .. }
            | Request::SetPolicy { scope, .. }
            | Request::RemovePolicy { scope, .. } => scope.to_string(),
            Request::GrantPolicy { user, .. } => user.to_string(),
            Request::SetGateway { .. } => "Global".into(),
            Request::Import { path, .. } => path.clone(),
        })
    }
}

/// What a [`Request`] returned, one variant per kind of result.
#[derive(Debug, Clone)]
pub enum Response {
    /// Get-CsXmppAllowedPartner.
    Partners(Vec<Versioned<XmppAllowedPartner>>),
    /// New/Set-CsXmppAllowedPartner: the partner after the command.
    Partner(Outcome<XmppAllowedPartner>),
    /// Remove-CsXmppAllowedPartner: the partner removed.
    PartnerRemoved(Outcome<XmppAllowedPartner>),
    /// Get-CsExternalAccessPolicy.
    Policies(Vec<Versioned<ExternalAccessPolicy>>),
    /// New/Set-CsExternalAccessPolicy: the policy after the command.
    Policy(Outcome<ExternalAccessPolicy>),
    /// Remove-CsExternalAccessPolicy: the policy removed (Global: reset).
    PolicyRemoved(Outcome<ExternalAccessPolicy>),
    /// Grant-CsExternalAccessPolicy: the grant after the command (`None`: taken away).
    Grant(Outcome<Option<Grant>>),
    /// Get-CsXmppGatewayConfiguration.
    Gateway(XmppGatewayConfiguration),
    /// Set-CsXmppGatewayConfiguration: the settings after the command.
    GatewaySet(Outcome<XmppGatewayConfiguration>),
    /// Import-CsXmppAllowedPartner.
    Imported(Box<ImportReport>),
}

/// Why a request failed; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Manage(#[from] ManageError),
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The file to import cannot be read (or is too large); the text says which and why.
    #[error("{0}")]
    File(String),
}

/// The bytes of a file to import, refusing one too large before reading it.
fn read_import_file(path: &str) -> Result<Vec<u8>, RequestError> {
    let max = crate::formats::MAX_FILE_BYTES;
    let unreadable = |e: std::io::Error| RequestError::File(format!("Cannot read '{path}': {e}."));
    let len = std::fs::metadata(path).map_err(unreadable)?.len();
    if len > max as u64 {
        return Err(RequestError::File(format!(
            "'{path}' is {len} bytes, more than the {} MiB an import accepts; split the export.",
            max / (1024 * 1024)
        )));
    }
    std::fs::read(path).map_err(unreadable)
}

impl Manager<'_> {
    /// Run one request.
    pub fn execute(&self, request: Request) -> Result<Response, RequestError> {
        self.execute_with_progress(request, &mut |_, _| {})
    }

    /// [`execute`](Self::execute), calling `progress(done, total)` while an import checks its
    /// records (for a progress bar on large files); other requests never call it.
    pub fn execute_with_progress(
        &self,
        request: Request,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Response, RequestError> {
        Ok(match request {
            Request::GetPartners { selector } => Response::Partners(self.get_partners(&selector)?),
            Request::NewPartner {
                identity,
                changes,
                mode,
            } => Response::Partner(self.new_partner(identity, &changes, mode)?),
            Request::SetPartner {
                target,
                changes,
                expected_version,
                mode,
            } => Response::Partner(self.set_partner(&target, &changes, expected_version, mode)?),
            Request::RemovePartner {
                identity,
                expected_version,
                mode,
            } => {
                Response::PartnerRemoved(self.remove_partner(&identity, expected_version, mode)?)
            }
            Request::GetPolicies { selector } => Response::Policies(self.get_policies(&selector)?),
            Request::NewPolicy {
                scope,
                changes,
                mode,
            } => Response::Policy(self.new_policy(scope, &changes, mode)?),
            Request::SetPolicy {
                scope,
                instance,
                changes,
                expected_version,
                mode,
            } => Response::Policy(self.set_policy(
                &scope,
                instance.as_deref(),
                &changes,
                expected_version,
                mode,
            )?),
            Request::RemovePolicy { scope, force, mode } => {
                Response::PolicyRemoved(self.remove_policy(&scope, force, mode)?)
            }
            Request::GrantPolicy { user, policy, mode } => {
                Response::Grant(self.grant_policy(&user, policy.as_deref(), mode)?)
            }
            Request::GetGateway => Response::Gateway(self.get_gateway_configuration()?),
            Request::SetGateway {
                instance,
                changes,
                mode,
            } => Response::GatewaySet(self.set_gateway_configuration(
                instance.as_deref(),
                &changes,
                mode,
            )?),
            Request::Import { path, mode } => {
                let bytes = read_import_file(&path)?;
                let report = self.import_with_progress(&path, &bytes, mode, progress)?;
                Response::Imported(Box::new(report))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{ParamValue, partner_changes};
    use fedgate_store::SqliteStore;

    fn domain(text: &str) -> Domain {
        Domain::parse(text).expect("a valid domain")
    }

    fn with_manager(test: impl FnOnce(&Manager)) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(&dir.path().join("fedgate.db")).expect("a new store");
        test(&Manager::new(&store, "test"));
    }

    #[test]
    fn partner_requests_round_trip() {
        with_manager(|m| {
            let changes = partner_changes([("PartnerType", &ParamValue::Text("Federated".into()))])
                .expect("valid changes");
            let new = Request::NewPartner {
                identity: domain("contoso.com"),
                changes,
                mode: Mode::Commit,
            };
            assert_eq!(new.command(), "New-CsXmppAllowedPartner");
            assert_eq!(new.target().as_deref(), Some("contoso.com"));
            assert!(matches!(
                m.execute(new),
                Ok(Response::Partner(Outcome { what_if: None, .. }))
            ));
            let get = Request::GetPartners {
                selector: PartnerSelector::Filter("*.com".into()),
            };
            assert_eq!(get.target(), None);
            assert!(matches!(m.execute(get), Ok(Response::Partners(p)) if p.len() == 1));
            // A dry run is held to the version as the real run would be.
            let stale = Request::RemovePartner {
                identity: domain("contoso.com"),
                expected_version: Some(99),
                mode: Mode::WhatIf,
            };
            assert!(matches!(
                m.execute(stale),
                Err(RequestError::Manage(ManageError::Store(
                    fedgate_store::StoreError::Conflict { expected: 99, .. }
                )))
            ));
            let remove = Request::RemovePartner {
                identity: domain("contoso.com"),
                expected_version: None,
                mode: Mode::WhatIf,
            };
            assert!(matches!(
                m.execute(remove),
                Ok(Response::PartnerRemoved(Outcome {
                    what_if: Some(_),
                    ..
                }))
            ));
            let missing = Request::GetPartners {
                selector: PartnerSelector::Identity(domain("fabrikam.com")),
            };
            assert!(matches!(
                m.execute(missing),
                Err(RequestError::Manage(ManageError::Store(_)))
            ));
        });
    }

    #[test]
    fn policy_gateway_and_grant_requests() {
        with_manager(|m| {
            let tag = PolicyScope::parse("tag:Sales").expect("a valid scope");
            let new = Request::NewPolicy {
                scope: tag.clone(),
                changes: PolicyChanges::default(),
                mode: Mode::Commit,
            };
            assert_eq!(new.target().as_deref(), Some("Tag:Sales"));
            assert!(matches!(m.execute(new), Ok(Response::Policy(_))));
            let user = UserJid::parse("alice@corp.example").expect("a valid user");
            let grant = Request::GrantPolicy {
                user,
                policy: Some("Sales".into()),
                mode: Mode::Commit,
            };
            assert_eq!(grant.mode(), Some(Mode::Commit));
            assert!(matches!(
                m.execute(grant),
                Ok(Response::Grant(Outcome { value: Some(_), .. }))
            ));
            let set = Request::SetGateway {
                instance: None,
                changes: GatewayChanges {
                    numeric: vec![("KeepAliveInterval", 120)],
                    ..GatewayChanges::default()
                },
                mode: Mode::Commit,
            };
            assert_eq!(set.target().as_deref(), Some("Global"));
            assert!(matches!(m.execute(set), Ok(Response::GatewaySet(_))));
            assert!(matches!(
                m.execute(Request::GetGateway),
                Ok(Response::Gateway(g)) if g.keep_alive_interval == 120
            ));
        });
    }

    #[test]
    fn import_of_a_missing_file_names_it() {
        with_manager(|m| {
            let request = Request::Import {
                path: "/nonexistent/partners.xml".into(),
                mode: Mode::WhatIf,
            };
            assert_eq!(
                request.target().as_deref(),
                Some("/nonexistent/partners.xml")
            );
            let e = m.execute(request).expect_err("no such file");
            assert!(
                e.to_string()
                    .starts_with("Cannot read '/nonexistent/partners.xml': "),
                "{e}"
            );
        });
    }
}
