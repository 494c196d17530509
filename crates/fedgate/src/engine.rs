//! The cmdlet engine: binds a parsed PowerShell command to its spec, converts the values, runs it
//! through the [`Manager`] and returns objects. Every face of the CLI (argv cmdlets, `fedgate shell`,
//! `fedgate run`, the idiomatic subcommands) goes through [`Session::run_statement`].

use std::collections::HashMap;

use fedgate_manage::import::ImportReport;
use fedgate_manage::params::{
    self, ParamValue, parse_partner_identity, partner_from_json, policy_from_json,
};
use fedgate_manage::partners::{PartnerSelector, SetTarget};
use fedgate_manage::policies::{Grant, PolicySelector};
use fedgate_manage::{ManageError, Manager, Mode, Outcome};
use fedgate_model::{
    Domain, ExternalAccessPolicy, InvalidValue, PolicyScope, UserJid, XmppAllowedPartner,
    XmppGatewayConfiguration,
};
use fedgate_pwsh::{
    BindError, BoundArgs, CmdletSpec, Command, Statement, SyntaxError, Value, bind,
};
use fedgate_store::{AuditEntry, Authorisation};
use serde_json::json;

use crate::specs;

/// A result object of a command.
#[derive(Debug, Clone)]
pub enum Object {
    Partner(XmppAllowedPartner),
    Policy(ExternalAccessPolicy),
    Gateway(XmppGatewayConfiguration),
    Grant(Grant),
    Audit(AuditEntry),
    /// A local user's authorisation of a remote user (PublicUnverified partners).
    Authorisation(Authorisation),
    /// What an import did (its lines are the reply's notes; shown as an object in JSON only).
    Import(Box<ImportReport>),
}

impl Object {
    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            Object::Partner(p) => serde_json::to_value(p),
            Object::Policy(p) => serde_json::to_value(p),
            Object::Gateway(g) => serde_json::to_value(g),
            Object::Grant(g) => serde_json::to_value(g),
            Object::Audit(a) => serde_json::to_value(a),
            Object::Authorisation(a) => serde_json::to_value(a),
            Object::Import(r) => serde_json::to_value(r),
        };
        // Our records always serialize.
        value.unwrap_or_else(|e| json!({ "error": e.to_string() }))
    }

    /// The Identity the object carries, for pipeline binding.
    fn identity(&self) -> String {
        match self {
            Object::Partner(p) => p.identity.to_string(),
            Object::Policy(p) => p.identity.to_string(),
            Object::Gateway(_) => "Global".into(),
            Object::Grant(g) => g.identity.to_string(),
            Object::Audit(a) => a.target.clone(),
            Object::Authorisation(a) => a.local_user.to_string(),
            Object::Import(r) => r.file.clone(),
        }
    }
}

/// Why a command failed; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Syntax(#[from] SyntaxError),
    #[error("{command} : {error}")]
    Bind { command: String, error: BindError },
    #[error("{command} : {error}")]
    Invalid {
        command: String,
        error: InvalidValue,
    },
    #[error("{command} : {message}")]
    Failed { command: String, message: String },
    #[error(
        "The term '{0}' is not recognized as the name of a cmdlet. Run 'fedgate help' for the list of commands."
    )]
    UnknownCommand(String),
}

impl CliError {
    /// 2 for usage errors (syntax, binding, bad values), 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Syntax(_)
            | CliError::Bind { .. }
            | CliError::Invalid { .. }
            | CliError::UnknownCommand(_) => 2,
            CliError::Failed { .. } => 1,
        }
    }

    /// Turns a bad value into this command's usage error (`.map_err(CliError::invalid(cmd))`).
    fn invalid(command: &str) -> impl FnOnce(InvalidValue) -> CliError + '_ {
        move |error| CliError::Invalid {
            command: command.into(),
            error,
        }
    }

    fn from_manage(command: &str, e: ManageError) -> CliError {
        match e {
            ManageError::Invalid(error) => CliError::invalid(command)(error),
            other => CliError::Failed {
                command: command.into(),
                message: other.to_string(),
            },
        }
    }
}

/// Asks the admin to confirm a change (`-Confirm`).
pub trait Prompt {
    fn confirm(&mut self, question: &str) -> bool;
}

/// What a statement produced.
#[derive(Debug, Default)]
pub struct Reply {
    pub objects: Vec<Object>,
    /// `WARNING:` lines.
    pub warnings: Vec<String>,
    /// `What if:` lines and other notes for the admin.
    pub notes: Vec<String>,
    /// True when the objects come from a Get (printed as a JSON array).
    pub is_listing: bool,
    /// True when an assignment stored the objects instead of showing them.
    pub assigned: bool,
}

/// One admin's session: the manager, the shell variables and the confirmation prompt.
pub struct Session<'a> {
    manager: Manager<'a>,
    variables: HashMap<String, Vec<Object>>,
    prompt: &'a mut dyn Prompt,
    stop_requested: bool,
}

type CmdResult = Result<Reply, CliError>;

impl<'a> Session<'a> {
    pub fn new(manager: Manager<'a>, prompt: &'a mut dyn Prompt) -> Self {
        Session {
            manager,
            variables: HashMap::new(),
            prompt,
            stop_requested: false,
        }
    }

    /// Run one statement: a pipeline, an assignment or a variable display.
    pub fn run_statement(&mut self, statement: &Statement) -> CmdResult {
        match statement {
            Statement::Pipeline { commands, .. } => self.run_pipeline(commands),
            Statement::AssignPipeline {
                variable, commands, ..
            } => {
                let mut reply = self.run_pipeline(commands)?;
                self.variables
                    .insert(variable.to_lowercase(), std::mem::take(&mut reply.objects));
                reply.assigned = true;
                Ok(reply)
            }
            Statement::ShowVariable { variable, .. } => {
                let objects = self.variable(variable)?.to_vec();
                Ok(Reply {
                    objects,
                    ..Reply::default()
                })
            }
            Statement::AssignProperty {
                variable,
                property,
                value,
                ..
            } => {
                self.assign_property(variable, property, value)?;
                Ok(Reply {
                    assigned: true,
                    ..Reply::default()
                })
            }
        }
    }

    fn variable(&self, name: &str) -> Result<&[Object], CliError> {
        self.variables.get(&name.to_lowercase()).map(Vec::as_slice).ok_or_else(|| CliError::Failed {
            command: format!("${name}"),
            message: format!("The variable '${name}' is not set. Assign it first, e.g. $p = New-CsXmppAllowedPartner -Identity contoso.com -InMemory"),
        })
    }

    /// `$p.Field = value`: change one field of the object held in a variable.
    fn assign_property(
        &mut self,
        variable: &str,
        property: &str,
        value: &Value,
    ) -> Result<(), CliError> {
        let cmd = format!("${variable}.{property}");
        let value = self.to_param(&cmd, property, value)?;
        let objects = self
            .variables
            .get_mut(&variable.to_lowercase())
            .ok_or_else(|| CliError::Failed {
                command: cmd.clone(),
                message: format!("The variable '${variable}' is not set."),
            })?;
        let [object] = objects.as_mut_slice() else {
            return Err(CliError::Failed {
                command: cmd.clone(),
                message: format!(
                    "'${variable}' holds {} objects; assign a single object.",
                    objects.len()
                ),
            });
        };
        let pair = [(property, &value)];
        match object {
            Object::Partner(p) => params::partner_changes(pair)
                .map_err(CliError::invalid(&cmd))?
                .apply(p),
            Object::Policy(p) => params::policy_changes(pair)
                .map_err(CliError::invalid(&cmd))?
                .apply(p),
            _ => {
                return Err(CliError::Failed {
                    command: cmd,
                    message: "Only partner and policy objects can be changed this way.".into(),
                });
            }
        }
        Ok(())
    }

    fn run_pipeline(&mut self, commands: &[Command]) -> CmdResult {
        let mut reply = Reply::default();
        let mut input: Option<Vec<Object>> = None;
        for command in commands {
            let mut step = self.run_command(command, input.take())?;
            reply.warnings.append(&mut step.warnings);
            reply.notes.append(&mut step.notes);
            reply.is_listing = step.is_listing;
            input = Some(step.objects);
        }
        reply.objects = input.unwrap_or_default();
        Ok(reply)
    }

    /// Run one command, with the objects of the previous pipeline stage as input.
    pub fn run_command(&mut self, command: &Command, input: Option<Vec<Object>>) -> CmdResult {
        let spec = specs::find(&command.name)
            .ok_or_else(|| CliError::UnknownCommand(command.name.clone()))?;
        let bound = bind(command, spec).map_err(|error| CliError::Bind {
            command: spec.name.into(),
            error,
        })?;
        let stop = bound
            .value("ErrorAction")
            .and_then(Value::as_str)
            .is_some_and(|v| v.eq_ignore_ascii_case("stop"));
        let result = match input {
            // Pipeline input binds to Identity, one run per object.
            Some(objects)
                if !bound.contains("Identity")
                    && !bound.contains("Instance")
                    && accepts_pipeline(spec) =>
            {
                let mut total = Reply::default();
                for object in objects {
                    let mut step = self.dispatch(spec, &bound, Some(object.identity()))?;
                    total.objects.append(&mut step.objects);
                    total.warnings.append(&mut step.warnings);
                    total.notes.append(&mut step.notes);
                }
                Ok(total)
            }
            _ => self.dispatch(spec, &bound, None),
        };
        self.stop_requested |= stop;
        result
    }

    /// True once a command in this statement asked for `-ErrorAction Stop`; cleared by the caller.
    pub fn take_stop_requested(&mut self) -> bool {
        std::mem::take(&mut self.stop_requested)
    }

    fn dispatch(
        &mut self,
        spec: &CmdletSpec,
        bound: &BoundArgs,
        piped_identity: Option<String>,
    ) -> CmdResult {
        let cmd = spec.name;
        let mode = if bound.switch("WhatIf") {
            Mode::WhatIf
        } else {
            Mode::Commit
        };
        let identity_text = match piped_identity {
            Some(id) => Some(id),
            None => bound
                .value("Identity")
                .map(|v| self.text(cmd, "Identity", v))
                .transpose()?,
        };
        match cmd {
            "Get-CsXmppAllowedPartner" => {
                let selector = match (&identity_text, bound.value("Filter")) {
                    (Some(_), Some(_)) => {
                        return Err(usage(
                            cmd,
                            "Identity",
                            "Specify either -Identity or -Filter, not both.",
                        ));
                    }
                    (Some(id), None) => {
                        if id.contains('*') || id.contains('?') {
                            return Err(usage(
                                cmd,
                                "Identity",
                                "Identity does not accept wildcards. Allowed values: a domain name; use -Filter for wildcards.",
                            ));
                        }
                        PartnerSelector::Identity(self.domain(cmd, "Identity", id)?)
                    }
                    (None, Some(f)) => PartnerSelector::Filter(self.text(cmd, "Filter", f)?),
                    (None, None) => PartnerSelector::All,
                };
                let found = self
                    .manager
                    .get_partners(&selector)
                    .map_err(|e| CliError::from_manage(cmd, e))?;
                Ok(listing(
                    found
                        .into_iter()
                        .map(|p| Object::Partner(p.value))
                        .collect(),
                ))
            }
            "New-CsXmppAllowedPartner" => {
                let identity = match (identity_text, bound.value("Domain")) {
                    (Some(_), Some(_)) => {
                        return Err(usage(
                            cmd,
                            "Domain",
                            "Specify the primary domain with either -Identity or -Domain, not both.",
                        ));
                    }
                    (Some(id), None) => self.domain(cmd, "Identity", &id)?,
                    (None, Some(d)) => {
                        let text = self.text(cmd, "Domain", d)?;
                        self.domain(cmd, "Domain", &text)?
                    }
                    (None, None) => {
                        return Err(missing(
                            cmd,
                            "Identity",
                            "Specify the partner's domain with -Identity (or -Domain).",
                        ));
                    }
                };
                let changes = self.partner_changes(spec, bound)?;
                let mode = if bound.switch("InMemory") {
                    Mode::InMemory
                } else {
                    mode
                };
                if !self.confirmed(bound, cmd, identity.as_str()) {
                    return Ok(declined(cmd, identity.as_str()));
                }
                let out = self
                    .manager
                    .new_partner(identity, &changes, mode)
                    .map_err(|e| CliError::from_manage(cmd, e))?;
                Ok(written(out, bound, Object::Partner))
            }
            "Set-CsXmppAllowedPartner" => {
                let changes = self.partner_changes(spec, bound)?;
                let target = match (identity_text, bound.value("Instance")) {
                    (Some(_), Some(_)) => {
                        return Err(usage(
                            cmd,
                            "Instance",
                            "Specify either -Identity or -Instance, not both.",
                        ));
                    }
                    (Some(id), None) => SetTarget::Identity(self.domain(cmd, "Identity", &id)?),
                    (None, Some(instance)) => {
                        SetTarget::Instance(Box::new(self.partner_instance(cmd, instance)?))
                    }
                    (None, None) => {
                        return Err(missing(
                            cmd,
                            "Identity",
                            "Specify the partner with -Identity or -Instance.",
                        ));
                    }
                };
                let target_name = match &target {
                    SetTarget::Identity(d) => d.to_string(),
                    SetTarget::Instance(p) => p.identity.to_string(),
                };
                if !self.confirmed(bound, cmd, &target_name) {
                    return Ok(declined(cmd, &target_name));
                }
                let out = self
                    .manager
                    .set_partner(&target, &changes, None, mode)
                    .map_err(|e| CliError::from_manage(cmd, e))?;
                Ok(written(out, bound, Object::Partner))
            }
            "Test-CsXmppAllowedPartner" | "Test-CsXmppGatewayConfiguration" => {
                Err(CliError::Failed {
                    command: cmd.into(),
                    message: format!(
                        "The test runs as a command of its own (fedgate --config <FILE> {cmd} …), not in the shell, a script or a pipeline."
                    ),
                })
            }
            "Import-CsXmppAllowedPartner" => {
                let path = bound
                    .value("Path")
                    .map(|v| self.text(cmd, "Path", v))
                    .transpose()?
                    .ok_or_else(|| {
                        missing(
                            cmd,
                            "Path",
                            "Specify the exported file (Export-Clixml, Export-Csv, ConvertTo-Json) with -Path.",
                        )
                    })?;
                if !self.confirmed(bound, cmd, &path) {
                    return Ok(declined(cmd, &path));
                }
                let bytes = read_import_file(&path).map_err(|message| CliError::Failed {
                    command: cmd.into(),
                    message,
                })?;
                let mut bar = ProgressBar::on_terminal();
                let report =
                    self.manager
                        .import_with_progress(&path, &bytes, mode, &mut |done, total| {
                            bar.show(done, total)
                        });
                bar.finish();
                let report = report.map_err(|e| CliError::Failed {
                    command: cmd.into(),
                    message: e.to_string(),
                })?;
                Ok(Reply {
                    notes: report.lines(),
                    warnings: shown_warnings(report.warnings.clone(), bound),
                    objects: vec![Object::Import(Box::new(report))],
                    ..Reply::default()
                })
            }
            "Remove-CsXmppAllowedPartner" => {
                let id = identity_text.ok_or_else(|| {
                    missing(
                        cmd,
                        "Identity",
                        "Specify the partner to remove with -Identity.",
                    )
                })?;
                let identity = self.domain(cmd, "Identity", &id)?;
                if !self.confirmed(bound, cmd, identity.as_str()) {
                    return Ok(declined(cmd, identity.as_str()));
                }
                let out = self
                    .manager
                    .remove_partner(&identity, None, mode)
                    .map_err(|e| CliError::from_manage(cmd, e))?;
                Ok(removed(out, bound))
            }
            "Get-CsExternalAccessPolicy" => {
                let selector = match (&identity_text, bound.value("Filter")) {
                    (Some(_), Some(_)) => {
                        return Err(usage(
                            cmd,
                            "Identity",
                            "Specify either -Identity or -Filter, not both.",
                        ));
                    }
                    (Some(id), None) => PolicySelector::Identity(self.scope(cmd, id)?),
                    (None, Some(f)) => PolicySelector::Filter(self.text(cmd, "Filter", f)?),
                    (None, None) => PolicySelector::All,
                };
                let found = self
                    .manager
                    .get_policies(&selector)
                    .map_err(|e| CliError::from_manage(cmd, e))?;
                Ok(listing(
                    found.into_iter().map(|p| Object::Policy(p.value)).collect(),
                ))
            }
            "New-CsExternalAccessPolicy" => {
                let id = identity_text.ok_or_else(|| {
                    missing(
                        cmd,
                        "Identity",
                        "Specify the policy with -Identity (Global, site:<name> or tag:<name>).",
                    )
                })?;
                let scope = self.scope(cmd, &id)?;
                let changes =
                    params::policy_changes(self.fields(spec, bound)?.iter().map(|(n, v)| (*n, v)))
                        .map_err(CliError::invalid(cmd))?;
                let mode = if bound.switch("InMemory") {
                    Mode::InMemory
                } else {
                    mode
                };
                if !self.confirmed(bound, cmd, &scope.to_string()) {
                    return Ok(declined(cmd, &scope.to_string()));
                }
                let out = self
                    .manager
                    .new_policy(scope, &changes, mode)
                    .map_err(|e| CliError::from_manage(cmd, e))?;
                Ok(written(out, bound, Object::Policy))
            }
            "Set-CsExternalAccessPolicy" => {
                let changes =
                    params::policy_changes(self.fields(spec, bound)?.iter().map(|(n, v)| (*n, v)))
                        .map_err(CliError::invalid(cmd))?;
                let instance = bound
                    .value("Instance")
                    .map(|v| self.policy_instance(cmd, v))
                    .transpose()?;
                let scope = match (&identity_text, &instance) {
                    (Some(_), Some(_)) => {
                        return Err(usage(
                            cmd,
                            "Instance",
                            "Specify either -Identity or -Instance, not both.",
                        ));
                    }
                    (Some(id), None) => self.scope(cmd, id)?,
                    (None, Some(p)) => p.identity.clone(),
                    (None, None) => PolicyScope::Global,
                };
                if !self.confirmed(bound, cmd, &scope.to_string()) {
                    return Ok(declined(cmd, &scope.to_string()));
                }
                let out = self
                    .manager
                    .set_policy(&scope, instance.as_ref(), &changes, None, mode)
                    .map_err(|e| CliError::from_manage(cmd, e))?;
                Ok(written(out, bound, Object::Policy))
            }
            "Remove-CsExternalAccessPolicy" => {
                let id = identity_text.ok_or_else(|| {
                    missing(
                        cmd,
                        "Identity",
                        "Specify the policy to remove with -Identity.",
                    )
                })?;
                let scope = self.scope(cmd, &id)?;
                if !self.confirmed(bound, cmd, &scope.to_string()) {
                    return Ok(declined(cmd, &scope.to_string()));
                }
                let out = self
                    .manager
                    .remove_policy(&scope, bound.switch("Force"), mode)
                    .map_err(|e| CliError::from_manage(cmd, e))?;
                Ok(removed(out, bound))
            }
            "Grant-CsExternalAccessPolicy" => {
                let id = identity_text.ok_or_else(|| {
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
                    Some(v) => Some(self.text(cmd, "PolicyName", v)?),
                };
                if !self.confirmed(bound, cmd, &user.to_string()) {
                    return Ok(declined(cmd, &user.to_string()));
                }
                let out = self
                    .manager
                    .grant_policy(&user, policy.as_deref(), mode)
                    .map_err(|e| CliError::from_manage(cmd, e))?;
                let passthru = bound.switch("PassThru");
                let Outcome {
                    value,
                    warnings,
                    what_if,
                    ..
                } = out;
                Ok(Reply {
                    objects: if passthru {
                        value.into_iter().map(Object::Grant).collect()
                    } else {
                        Vec::new()
                    },
                    warnings: shown_warnings(warnings, bound),
                    notes: what_if.into_iter().collect(),
                    ..Reply::default()
                })
            }
            "Get-CsXmppGatewayConfiguration" => {
                self.check_global(cmd, identity_text.as_deref())?;
                let config = self
                    .manager
                    .get_gateway_configuration()
                    .map_err(|e| CliError::from_manage(cmd, e))?;
                Ok(listing(vec![Object::Gateway(config)]))
            }
            "Set-CsXmppGatewayConfiguration" => {
                self.check_global(cmd, identity_text.as_deref())?;
                let changes =
                    params::gateway_changes(self.fields(spec, bound)?.iter().map(|(n, v)| (*n, v)))
                        .map_err(CliError::invalid(cmd))?;
                let instance = bound
                    .value("Instance")
                    .map(|v| self.gateway_instance(cmd, v))
                    .transpose()?;
                if !self.confirmed(bound, cmd, "Global") {
                    return Ok(declined(cmd, "Global"));
                }
                let out = self
                    .manager
                    .set_gateway_configuration(instance.as_ref(), &changes, mode)
                    .map_err(|e| CliError::from_manage(cmd, e))?;
                Ok(written(out, bound, Object::Gateway))
            }
            other => Err(CliError::UnknownCommand(other.into())),
        }
    }

    fn check_global(&self, cmd: &str, identity: Option<&str>) -> Result<(), CliError> {
        match identity {
            None => Ok(()),
            Some(id) if id.eq_ignore_ascii_case("global") => Ok(()),
            Some(id) => Err(usage(
                cmd,
                "Identity",
                &format!(
                    "'{id}' is not valid: there is one gateway configuration. Allowed values: Global."
                ),
            )),
        }
    }

    /// Ask before a change when `-Confirm` was given (and not `-WhatIf`).
    fn confirmed(&mut self, bound: &BoundArgs, cmd: &str, target: &str) -> bool {
        if !bound.switch("Confirm") || bound.switch("WhatIf") || bound.switch("InMemory") {
            return true;
        }
        self.prompt.confirm(&format!(
            "Confirm\nAre you sure you want to perform this action?\nPerforming the operation \"{cmd}\" on target \"{target}\".\n[Y] Yes  [N] No (default is \"Y\"): "
        ))
    }

    fn partner_changes(
        &self,
        spec: &CmdletSpec,
        bound: &BoundArgs,
    ) -> Result<fedgate_model::PartnerChanges, CliError> {
        let fields = self.fields(spec, bound)?;
        params::partner_changes(fields.iter().map(|(n, v)| (*n, v)))
            .map_err(CliError::invalid(spec.name))
    }

    /// The bound settable fields as untyped values.
    fn fields(
        &self,
        spec: &CmdletSpec,
        bound: &BoundArgs,
    ) -> Result<Vec<(&'static str, ParamValue)>, CliError> {
        bound
            .iter()
            .filter(|(name, _)| specs::is_field(spec, name))
            .filter_map(|(name, v)| v.as_value().map(|v| (name, v)))
            .map(|(name, v)| Ok((name, self.to_param(spec.name, name, v)?)))
            .collect()
    }

    fn to_param(&self, cmd: &str, parameter: &str, value: &Value) -> Result<ParamValue, CliError> {
        Ok(match value {
            Value::String(s) => ParamValue::Text(s.clone()),
            Value::Bool(b) => ParamValue::Bool(*b),
            Value::Null => ParamValue::Null,
            Value::List(items) => ParamValue::List(
                items
                    .iter()
                    .map(|i| self.to_param(cmd, parameter, i))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Hashtable(entries) => ParamValue::Map(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), self.to_param(cmd, parameter, v)?)))
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

    fn text(&self, cmd: &str, parameter: &str, value: &Value) -> Result<String, CliError> {
        self.to_param(cmd, parameter, value)?
            .text(parameter)
            .map_err(CliError::invalid(cmd))
    }

    fn domain(&self, cmd: &str, parameter: &str, text: &str) -> Result<Domain, CliError> {
        parse_partner_identity(parameter, text).map_err(CliError::invalid(cmd))
    }

    fn scope(&self, cmd: &str, text: &str) -> Result<PolicyScope, CliError> {
        PolicyScope::parse(text).map_err(CliError::invalid(cmd))
    }

    /// `-Instance`: a `$variable`, JSON text, or the path of a JSON file.
    fn instance_json(&self, cmd: &str, value: &Value) -> Result<InstanceSource, CliError> {
        match value {
            Value::Variable(name) => match self.variable(name)? {
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
        cmd: &str,
        value: &Value,
        what: &str,
        from_object: fn(Object) -> Option<T>,
        from_json: FromJson<T>,
    ) -> Result<T, CliError> {
        match self.instance_json(cmd, value)? {
            InstanceSource::Object(o) => from_object(*o)
                .ok_or_else(|| usage(cmd, "Instance", &format!("The object is not {what}."))),
            InstanceSource::Json(json) => {
                let (object, ignored) = from_json(&json).map_err(CliError::invalid(cmd))?;
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

    fn partner_instance(&self, cmd: &str, value: &Value) -> Result<XmppAllowedPartner, CliError> {
        let from_object = |o| match o {
            Object::Partner(p) => Some(p),
            _ => None,
        };
        self.instance_of(
            cmd,
            value,
            "an XMPP allowed partner",
            from_object,
            partner_from_json,
        )
    }

    fn policy_instance(&self, cmd: &str, value: &Value) -> Result<ExternalAccessPolicy, CliError> {
        let from_object = |o| match o {
            Object::Policy(p) => Some(p),
            _ => None,
        };
        self.instance_of(
            cmd,
            value,
            "an external access policy",
            from_object,
            policy_from_json,
        )
    }

    fn gateway_instance(
        &self,
        cmd: &str,
        value: &Value,
    ) -> Result<XmppGatewayConfiguration, CliError> {
        match self.instance_json(cmd, value)? {
            InstanceSource::Object(o) => match *o {
                Object::Gateway(g) => Ok(g),
                _ => Err(usage(
                    cmd,
                    "Instance",
                    "The object is not the gateway configuration.",
                )),
            },
            InstanceSource::Json(json) => {
                let map = json
                    .as_object()
                    .ok_or_else(|| usage(cmd, "Instance", "A JSON object is expected."))?;
                let fields: Vec<(String, ParamValue)> = map
                    .iter()
                    .filter(|(k, v)| {
                        // Skip the Identity and the masked secret of an exported object.
                        let masked = k.eq_ignore_ascii_case("DialbackPassphrase")
                            && v.as_str() == Some("********");
                        !k.eq_ignore_ascii_case("Identity") && !masked
                    })
                    .map(|(k, v)| (k.clone(), params::from_json(v)))
                    .collect();
                let changes = params::gateway_changes(fields.iter().map(|(k, v)| (k.as_str(), v)))
                    .map_err(CliError::invalid(cmd))?;
                let mut config = XmppGatewayConfiguration::default();
                for (name, value) in &changes.numeric {
                    if let Some(f) = config.numeric_mut(name) {
                        *f = *value;
                    }
                }
                config.dialback_passphrase = changes.dialback_passphrase;
                if let Some(v) = changes.enable_logging_all_message_bodies {
                    config.enable_logging_all_message_bodies = v;
                }
                Ok(config)
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

/// A progress bar on stderr for imports of large files, only when stderr is a terminal (never
/// in scripts, pipes or logs).
struct ProgressBar {
    enabled: bool,
    shown: bool,
}

impl ProgressBar {
    /// Files with fewer records finish before a bar would help.
    const MIN_RECORDS: usize = 2_000;

    fn on_terminal() -> Self {
        use std::io::IsTerminal;
        ProgressBar {
            enabled: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    fn show(&mut self, done: usize, total: usize) {
        if !self.enabled || total < Self::MIN_RECORDS {
            return;
        }
        const WIDTH: usize = 30;
        let filled = done * WIDTH / total.max(1);
        eprint!(
            "\rChecking records [{}{}] {done}/{total}",
            "#".repeat(filled),
            " ".repeat(WIDTH - filled)
        );
        self.shown = true;
    }

    fn finish(&mut self) {
        if self.shown {
            eprintln!();
            self.shown = false;
        }
    }
}

/// The bytes of a file to import, refusing one too large before reading it.
fn read_import_file(path: &str) -> Result<Vec<u8>, String> {
    let too_large = |len: u64| {
        format!(
            "'{path}' is {len} bytes, more than the {} MiB an import accepts; split the export.",
            fedgate_manage::formats::MAX_FILE_BYTES / (1024 * 1024)
        )
    };
    let len = std::fs::metadata(path)
        .map_err(|e| format!("Cannot read '{path}': {e}."))?
        .len();
    if len > fedgate_manage::formats::MAX_FILE_BYTES as u64 {
        return Err(too_large(len));
    }
    std::fs::read(path).map_err(|e| format!("Cannot read '{path}': {e}."))
}

fn accepts_pipeline(spec: &CmdletSpec) -> bool {
    matches!(
        spec.name,
        "Set-CsXmppAllowedPartner"
            | "Remove-CsXmppAllowedPartner"
            | "Set-CsExternalAccessPolicy"
            | "Remove-CsExternalAccessPolicy"
            | "Grant-CsExternalAccessPolicy"
    )
}

fn usage(cmd: &str, parameter: &str, reason: &str) -> CliError {
    CliError::invalid(cmd)(InvalidValue::new(parameter, reason))
}

fn missing(cmd: &str, parameter: &str, reason: &str) -> CliError {
    usage(
        cmd,
        parameter,
        &format!("The parameter is required. {reason}"),
    )
}

fn listing(objects: Vec<Object>) -> Reply {
    Reply {
        objects,
        is_listing: true,
        ..Reply::default()
    }
}

/// `-Force` suppresses non-fatal messages.
fn shown_warnings(warnings: Vec<String>, bound: &BoundArgs) -> Vec<String> {
    if bound.switch("Force") {
        Vec::new()
    } else {
        warnings
    }
}

fn written<T>(out: Outcome<T>, bound: &BoundArgs, wrap: impl Fn(T) -> Object) -> Reply {
    let Outcome {
        value,
        warnings,
        what_if,
        ..
    } = out;
    Reply {
        // A -WhatIf run shows what would happen, not an object.
        objects: if what_if.is_some() {
            Vec::new()
        } else {
            vec![wrap(value)]
        },
        warnings: shown_warnings(warnings, bound),
        notes: what_if.into_iter().collect(),
        ..Reply::default()
    }
}

fn removed<T>(out: Outcome<T>, bound: &BoundArgs) -> Reply {
    Reply {
        warnings: shown_warnings(out.warnings, bound),
        notes: out.what_if.into_iter().collect(),
        ..Reply::default()
    }
}

fn declined(cmd: &str, target: &str) -> Reply {
    Reply {
        notes: vec![format!(
            "Not confirmed: \"{cmd}\" on \"{target}\" was not performed."
        )],
        ..Reply::default()
    }
}
