//! The PowerShell face's binder: a cmdlet whose arguments `fedgate_pwsh::bind` matched to its
//! spec becomes an [`Invocation`] — a typed [`Request`] plus the switches only the CLI acts on.
//! Every conversion error names the parameter and the allowed values.

use std::collections::HashMap;

use fedgate_manage::Mode;
use fedgate_manage::Request;
use fedgate_manage::params::{
    self, ParamValue, pairs, parse_partner_identity, partner_from_json, policy_from_json,
};
use fedgate_manage::partners::{PartnerSelector, SetTarget};
use fedgate_manage::policies::PolicySelector;
use fedgate_model::{Domain, InvalidValue, PolicyScope, UserJid};
use fedgate_pwsh::{BoundArgs, CmdletSpec, Value};

use crate::engine::{CliError, Object};
use crate::specs;

/// The shell's variables: lower-case name → the objects assigned.
pub type Variables = HashMap<String, Vec<Object>>;

/// A request and how the CLI runs it.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request: Request,
    /// `-Confirm`: ask before writing.
    pub confirm: bool,
    /// `-Force`: do not show warnings.
    pub force: bool,
    /// `-PassThru` (Grant): show the grant.
    pub pass_thru: bool,
}

impl Invocation {
    /// A request run without prompts, warnings shown.
    pub fn plain(request: Request) -> Self {
        Invocation {
            request,
            confirm: false,
            force: false,
            pass_thru: false,
        }
    }
}

/// The error for a test cmdlet anywhere but alone on the command line.
pub fn runs_alone(cmd: &str) -> CliError {
    CliError::Failed {
        command: cmd.into(),
        message: format!(
            "The test runs as a command of its own (fedgate --config <FILE> {cmd} …), not in the shell, a script or a pipeline."
        ),
    }
}

/// The record an [`Object`] of the variant `$variant` holds, if it is one.
macro_rules! pick {
    ($variant:path) => {
        |object| match object {
            $variant(inner) => Some(inner),
            _ => None,
        }
    };
}

/// The objects held in `$name`.
pub fn variable<'v>(variables: &'v Variables, name: &str) -> Result<&'v [Object], CliError> {
    variables.get(&name.to_lowercase()).map(Vec::as_slice).ok_or_else(|| CliError::Failed {
        command: format!("${name}"),
        message: format!("The variable '${name}' is not set. Assign it first, e.g. $p = New-CsXmppAllowedPartner -Identity contoso.com -InMemory"),
    })
}

/// A PowerShell value as an untyped parameter value (variables are refused: give the value).
pub fn to_param(cmd: &str, parameter: &str, value: &Value) -> Result<ParamValue, CliError> {
    Ok(match value {
        Value::String(s) => ParamValue::Text(s.clone()),
        Value::Bool(b) => ParamValue::Bool(*b),
        Value::Null => ParamValue::Null,
        Value::List(items) => ParamValue::List(
            items
                .iter()
                .map(|i| to_param(cmd, parameter, i))
                .collect::<Result<_, _>>()?,
        ),
        Value::Hashtable(entries) => ParamValue::Map(
            entries
                .iter()
                .map(|(k, v)| Ok((k.clone(), to_param(cmd, parameter, v)?)))
                .collect::<Result<_, CliError>>()?,
        ),
        Value::Variable(name) => {
            return Err(usage(
                cmd,
                parameter,
                &format!("The variable '${name}' cannot be used here: give the value itself."),
            ));
        }
    })
}

/// A usage error of `cmd` about `parameter`.
pub fn usage(cmd: &str, parameter: &str, reason: &str) -> CliError {
    CliError::invalid(cmd)(InvalidValue::new(parameter, reason))
}

fn missing(cmd: &str, parameter: &str, reason: &str) -> CliError {
    usage(
        cmd,
        parameter,
        &format!("The parameter is required. {reason}"),
    )
}

/// Binds the arguments of one cmdlet run (with the Identity piped in, if any) to a request.
pub fn invocation(
    spec: &CmdletSpec,
    bound: &BoundArgs,
    piped_identity: Option<String>,
    variables: &Variables,
) -> Result<Invocation, CliError> {
    let binder = Binder {
        cmd: spec.name,
        spec,
        bound,
        variables,
    };
    let request = binder.request(piped_identity)?;
    Ok(Invocation {
        request,
        confirm: bound.switch("Confirm"),
        force: bound.switch("Force"),
        pass_thru: bound.switch("PassThru"),
    })
}

struct Binder<'a> {
    cmd: &'static str,
    spec: &'a CmdletSpec,
    bound: &'a BoundArgs,
    variables: &'a Variables,
}

impl Binder<'_> {
    fn request(&self, piped_identity: Option<String>) -> Result<Request, CliError> {
        let (cmd, bound) = (self.cmd, self.bound);
        let mode = if bound.switch("WhatIf") {
            Mode::WhatIf
        } else {
            Mode::Commit
        };
        // New only: -InMemory builds the object and writes nothing.
        let new_mode = if bound.switch("InMemory") {
            Mode::InMemory
        } else {
            mode
        };
        let identity = match piped_identity {
            Some(id) => Some(id),
            None => self.text_of("Identity")?,
        };
        Ok(match cmd {
            "Get-CsXmppAllowedPartner" => {
                let selector = match (&identity, bound.value("Filter")) {
                    (Some(_), Some(_)) => {
                        return Err(usage(
                            cmd,
                            "Identity",
                            "Specify either -Identity or -Filter, not both.",
                        ));
                    }
                    (Some(id), None) => PartnerSelector::Identity(
                        params::partner_lookup(id).map_err(CliError::invalid(cmd))?,
                    ),
                    (None, Some(f)) => PartnerSelector::Filter(self.text("Filter", f)?),
                    (None, None) => PartnerSelector::All,
                };
                Request::GetPartners { selector }
            }
            "New-CsXmppAllowedPartner" => {
                let identity = match (identity, bound.value("Domain")) {
                    (Some(_), Some(_)) => {
                        return Err(usage(
                            cmd,
                            "Domain",
                            "Specify the primary domain with either -Identity or -Domain, not both.",
                        ));
                    }
                    (Some(id), None) => self.domain("Identity", &id)?,
                    (None, Some(d)) => self.domain("Domain", &self.text("Domain", d)?)?,
                    (None, None) => {
                        return Err(missing(
                            cmd,
                            "Identity",
                            "Specify the partner's domain with -Identity (or -Domain).",
                        ));
                    }
                };
                let changes = params::partner_changes(pairs(&self.field_pairs()?));
                let changes = changes.map_err(self.invalid())?;
                Request::NewPartner {
                    identity,
                    changes,
                    mode: new_mode,
                }
            }
            "Set-CsXmppAllowedPartner" => {
                let changes = params::partner_changes(pairs(&self.field_pairs()?));
                let changes = changes.map_err(self.invalid())?;
                let target = match (identity, bound.value("Instance")) {
                    (Some(_), Some(_)) => {
                        return Err(usage(
                            cmd,
                            "Instance",
                            "Specify either -Identity or -Instance, not both.",
                        ));
                    }
                    (Some(id), None) => SetTarget::Identity(self.domain("Identity", &id)?),
                    (None, Some(instance)) => SetTarget::Instance(Box::new(self.instance_of(
                        instance,
                        "an XMPP allowed partner",
                        pick!(Object::Partner),
                        partner_from_json,
                    )?)),
                    (None, None) => {
                        return Err(missing(
                            cmd,
                            "Identity",
                            "Specify the partner with -Identity or -Instance.",
                        ));
                    }
                };
                Request::SetPartner {
                    target,
                    changes,
                    expected_version: None,
                    mode,
                }
            }
            "Remove-CsXmppAllowedPartner" => {
                let id = identity.ok_or_else(|| {
                    missing(
                        cmd,
                        "Identity",
                        "Specify the partner to remove with -Identity.",
                    )
                })?;
                Request::RemovePartner {
                    identity: self.domain("Identity", &id)?,
                    expected_version: None,
                    mode,
                }
            }
            "Test-CsXmppAllowedPartner" | "Test-CsXmppGatewayConfiguration" => {
                return Err(runs_alone(cmd));
            }
            "Import-CsXmppAllowedPartner" => {
                let path = self.text_of("Path")?.ok_or_else(|| {
                    missing(
                        cmd,
                        "Path",
                        "Specify the exported file (Export-Clixml, Export-Csv, ConvertTo-Json) with -Path.",
                    )
                })?;
                Request::Import { path, mode }
            }
            "Get-CsExternalAccessPolicy" => {
                let selector = match (&identity, bound.value("Filter")) {
                    (Some(_), Some(_)) => {
                        return Err(usage(
                            cmd,
                            "Identity",
                            "Specify either -Identity or -Filter, not both.",
                        ));
                    }
                    (Some(id), None) => PolicySelector::Identity(self.scope(id)?),
                    (None, Some(f)) => PolicySelector::Filter(self.text("Filter", f)?),
                    (None, None) => PolicySelector::All,
                };
                Request::GetPolicies { selector }
            }
            "New-CsExternalAccessPolicy" => {
                let id = identity.ok_or_else(|| {
                    missing(
                        cmd,
                        "Identity",
                        "Specify the policy with -Identity (Global, site:<name> or tag:<name>).",
                    )
                })?;
                let scope = self.scope(&id)?;
                let changes = params::policy_changes(pairs(&self.field_pairs()?));
                let changes = changes.map_err(self.invalid())?;
                Request::NewPolicy {
                    scope,
                    changes,
                    mode: new_mode,
                }
            }
            "Set-CsExternalAccessPolicy" => {
                let changes = params::policy_changes(pairs(&self.field_pairs()?));
                let changes = changes.map_err(self.invalid())?;
                let instance = bound
                    .value("Instance")
                    .map(|v| {
                        let what = "an external access policy";
                        self.instance_of(v, what, pick!(Object::Policy), policy_from_json)
                    })
                    .transpose()?;
                let scope = match (&identity, &instance) {
                    (Some(_), Some(_)) => {
                        return Err(usage(
                            cmd,
                            "Instance",
                            "Specify either -Identity or -Instance, not both.",
                        ));
                    }
                    (Some(id), None) => self.scope(id)?,
                    (None, Some(p)) => p.identity.clone(),
                    (None, None) => PolicyScope::Global,
                };
                Request::SetPolicy {
                    scope,
                    instance: instance.map(Box::new),
                    changes,
                    expected_version: None,
                    mode,
                }
            }
            "Remove-CsExternalAccessPolicy" => {
                let id = identity.ok_or_else(|| {
                    missing(
                        cmd,
                        "Identity",
                        "Specify the policy to remove with -Identity.",
                    )
                })?;
                Request::RemovePolicy {
                    scope: self.scope(&id)?,
                    force: bound.switch("Force"),
                    mode,
                }
            }
            "Grant-CsExternalAccessPolicy" => {
                let id = identity.ok_or_else(|| {
                    missing(
                        cmd,
                        "Identity",
                        "Specify the user with -Identity, as alice@corp.example.",
                    )
                })?;
                let user = UserJid::parse(&id).map_err(CliError::invalid(cmd))?;
                let policy = match bound.value("PolicyName") {
                    None => {
                        return Err(missing(
                            cmd,
                            "PolicyName",
                            "Specify -PolicyName <tag policy name>, or -PolicyName $null to remove the grant.",
                        ));
                    }
                    Some(Value::Null) => None,
                    Some(v) => Some(self.text("PolicyName", v)?),
                };
                Request::GrantPolicy { user, policy, mode }
            }
            "Get-CsXmppGatewayConfiguration" => {
                self.check_global(identity.as_deref())?;
                Request::GetGateway
            }
            "Set-CsXmppGatewayConfiguration" => {
                self.check_global(identity.as_deref())?;
                let changes = params::gateway_changes(pairs(&self.field_pairs()?));
                let changes = changes.map_err(self.invalid())?;
                let instance = bound
                    .value("Instance")
                    .map(|v| {
                        let what = "the gateway configuration";
                        // Unknown settings are refused, not ignored.
                        let from_json = |json: &serde_json::Value| {
                            Ok((params::gateway_from_json(json)?, Vec::new()))
                        };
                        self.instance_of(v, what, pick!(Object::Gateway), from_json)
                    })
                    .transpose()?;
                Request::SetGateway {
                    instance: instance.map(Box::new),
                    changes,
                    mode,
                }
            }
            other => return Err(CliError::UnknownCommand(other.into())),
        })
    }

    /// Turns a bad value into this command's usage error.
    fn invalid(&self) -> impl FnOnce(InvalidValue) -> CliError + '_ {
        CliError::invalid(self.cmd)
    }

    fn check_global(&self, identity: Option<&str>) -> Result<(), CliError> {
        match identity {
            None => Ok(()),
            Some(id) if id.eq_ignore_ascii_case("global") => Ok(()),
            Some(id) => Err(usage(
                self.cmd,
                "Identity",
                &format!(
                    "'{id}' is not valid: there is one gateway configuration. Allowed values: Global."
                ),
            )),
        }
    }

    /// The bound settable fields as untyped values.
    fn field_pairs(&self) -> Result<Vec<(&'static str, ParamValue)>, CliError> {
        self.bound
            .iter()
            .filter(|(name, _)| specs::is_field(self.spec, name))
            .filter_map(|(name, v)| v.as_value().map(|v| (name, v)))
            .map(|(name, v)| Ok((name, to_param(self.cmd, name, v)?)))
            .collect()
    }

    /// The text of a value parameter, if it was given.
    fn text_of(&self, parameter: &str) -> Result<Option<String>, CliError> {
        self.bound
            .value(parameter)
            .map(|v| self.text(parameter, v))
            .transpose()
    }

    fn text(&self, parameter: &str, value: &Value) -> Result<String, CliError> {
        to_param(self.cmd, parameter, value)?
            .text(parameter)
            .map_err(CliError::invalid(self.cmd))
    }

    fn domain(&self, parameter: &str, text: &str) -> Result<Domain, CliError> {
        parse_partner_identity(parameter, text).map_err(CliError::invalid(self.cmd))
    }

    fn scope(&self, text: &str) -> Result<PolicyScope, CliError> {
        PolicyScope::parse(text).map_err(CliError::invalid(self.cmd))
    }

    /// `-Instance`: a `$variable`, JSON text, or the path of a JSON file.
    fn instance_json(&self, value: &Value) -> Result<InstanceSource, CliError> {
        let cmd = self.cmd;
        match value {
            Value::Variable(name) => match variable(self.variables, name)? {
                [object] => Ok(InstanceSource::Object(Box::new(object.clone()))),
                many => Err(usage(
                    cmd,
                    "Instance",
                    &format!(
                        "'${name}' holds {} objects; -Instance takes one.",
                        many.len()
                    ),
                )),
            },
            Value::String(text) => {
                let body = if text.trim_start().starts_with('{') {
                    text.clone()
                } else {
                    std::fs::read_to_string(text).map_err(|e| {
                        usage(cmd, "Instance", &format!("'{text}' is neither a JSON object nor a readable JSON file ({e}). Allowed values: a $variable, a JSON object, or the path of a JSON file."))
                    })?
                };
                serde_json::from_str(&body)
                    .map(InstanceSource::Json)
                    .map_err(|e| {
                        usage(
                            cmd,
                            "Instance",
                            &format!("The object is not valid JSON: {e}."),
                        )
                    })
            }
            _ => Err(usage(
                cmd,
                "Instance",
                "Allowed values: a $variable, a JSON object, or the path of a JSON file.",
            )),
        }
    }

    /// An `-Instance` object of one kind: a variable holding that kind, or JSON converted by
    /// `from_json` (unknown properties are reported as a warning and ignored).
    fn instance_of<T>(
        &self,
        value: &Value,
        what: &str,
        from_object: fn(Object) -> Option<T>,
        from_json: FromJson<T>,
    ) -> Result<T, CliError> {
        match self.instance_json(value)? {
            InstanceSource::Object(o) => from_object(*o)
                .ok_or_else(|| usage(self.cmd, "Instance", &format!("The object is not {what}."))),
            InstanceSource::Json(json) => {
                let (object, ignored) = from_json(&json).map_err(CliError::invalid(self.cmd))?;
                if !ignored.is_empty() {
                    eprintln!(
                        "WARNING: ignored properties of the object: {}",
                        ignored.join(", ")
                    );
                }
                Ok(object)
            }
        }
    }
}

/// Converts an `-Instance` JSON object: the record and the properties it ignored.
type FromJson<T> = fn(&serde_json::Value) -> Result<(T, Vec<String>), InvalidValue>;

enum InstanceSource {
    Object(Box<Object>),
    Json(serde_json::Value),
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedgate_pwsh::{Statement, bind, parse_argv};

    /// The invocation of one cmdlet line typed as process arguments.
    fn bind_line(words: &[&str]) -> Result<Invocation, CliError> {
        let argv: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let Ok(Statement::Pipeline { commands, .. }) = parse_argv(&argv) else {
            panic!("not a command: {words:?}");
        };
        let spec = specs::find(&commands[0].name).expect("a known cmdlet");
        let bound = bind(&commands[0], spec).expect("arguments that bind");
        invocation(spec, &bound, None, &Variables::new())
    }

    fn usage_error(words: &[&str]) -> InvalidValue {
        match bind_line(words) {
            Err(CliError::Invalid { error, .. }) => error,
            other => panic!("{words:?}: expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn cmdlets_bind_to_typed_requests() {
        let i = bind_line(&[
            "New-CsXmppAllowedPartner",
            "contoso.com",
            "-PartnerType",
            "Federated",
            "-InMemory",
            "-WhatIf",
            "-Force",
        ])
        .expect("a valid command");
        assert!(i.force && !i.confirm);
        let Request::NewPartner {
            identity,
            changes,
            mode,
        } = i.request
        else {
            panic!("not a New: {:?}", i.request);
        };
        assert_eq!(identity.as_str(), "contoso.com");
        assert!(changes.partner_type.is_some());
        assert_eq!(mode, Mode::InMemory, "-InMemory wins over -WhatIf");
        let i = bind_line(&[
            "Grant-CsExternalAccessPolicy",
            "alice@corp.example",
            "$null",
            "-PassThru",
            "-WhatIf",
        ])
        .expect("a valid grant");
        assert!(i.pass_thru);
        assert!(matches!(
            i.request,
            Request::GrantPolicy {
                policy: None,
                mode: Mode::WhatIf,
                ..
            }
        ));
        let i = bind_line(&[
            "Set-CsXmppGatewayConfiguration",
            "-KeepAliveInterval",
            "120",
        ])
        .expect("a valid setting");
        assert!(
            matches!(i.request, Request::SetGateway { ref changes, .. } if changes.numeric == [("KeepAliveInterval", 120)])
        );
    }

    #[test]
    fn binding_errors_name_the_parameter_and_the_allowed_values() {
        // (the command line, split at spaces; the parameter at fault; part of the reason)
        let cases = [
            (
                "New-CsXmppAllowedPartner -PartnerType Federated",
                "Identity",
                "is required",
            ),
            (
                "New-CsXmppAllowedPartner a.com -Domain b.com",
                "Domain",
                "not both",
            ),
            (
                "New-CsXmppAllowedPartner a.com -TlsNegotiation Maybe",
                "TlsNegotiation",
                "Required, Optional, NotSupported",
            ),
            (
                "Get-CsXmppAllowedPartner *.com",
                "Identity",
                "use -Filter for wildcards",
            ),
            (
                "Get-CsXmppGatewayConfiguration site:x",
                "Identity",
                "Allowed values: Global",
            ),
            (
                "Grant-CsExternalAccessPolicy alice@corp.example",
                "PolicyName",
                "$null",
            ),
            (
                "Set-CsXmppAllowedPartner -Instance nofile",
                "Instance",
                "Allowed values: a $variable",
            ),
            ("Import-CsXmppAllowedPartner", "Path", "Export-Clixml"),
        ];
        for (line, parameter, allowed) in cases {
            let words: Vec<&str> = line.split(' ').collect();
            let e = usage_error(&words);
            assert_eq!(e.parameter, *parameter, "{words:?}: {e}");
            assert!(e.to_string().contains(allowed), "{words:?}: {e}");
        }
    }

    #[test]
    fn tests_and_unset_variables_are_failures() {
        assert!(matches!(
            bind_line(&["Test-CsXmppAllowedPartner", "-Domain", "a.com"]),
            Err(CliError::Failed { ref message, .. }) if message.contains("command of its own")
        ));
        let e = variable(&Variables::new(), "p").expect_err("no such variable");
        assert!(e.to_string().contains("'$p' is not set"), "{e}");
        assert!(matches!(
            to_param("Set-CsXmppAllowedPartner", "Description", &Value::Variable("x".into())),
            Err(CliError::Invalid { ref error, .. }) if error.parameter == "Description"
        ));
    }
}
