//! The cmdlet engine: binds a parsed PowerShell command to its spec, converts the values, runs it
//! through the [`Manager`] and returns objects. Every face of the CLI (argv cmdlets, `fedgate shell`,
//! `fedgate run`, the idiomatic subcommands) goes through [`Session::run_statement`].

use fedgate_manage::import::ImportReport;
use fedgate_manage::params;
use fedgate_manage::policies::Grant;
use fedgate_manage::{ManageError, Manager, Mode, Outcome, RequestError, Response};
use fedgate_model::{
    ExternalAccessPolicy, InvalidValue, XmppAllowedPartner, XmppGatewayConfiguration,
};
use fedgate_pwsh::{BindError, CmdletSpec, Command, Statement, SyntaxError, Value, bind};
use fedgate_store::{AuditEntry, Authorisation};
use serde_json::json;

use crate::binder::{self, Invocation, Variables};
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
    pub fn invalid(command: &str) -> impl FnOnce(InvalidValue) -> CliError + '_ {
        move |error| CliError::Invalid {
            command: command.into(),
            error,
        }
    }

    /// The one mapping of a failed request: a bad value is a usage error, the rest failures.
    fn from_request(command: &str, e: RequestError) -> CliError {
        match e {
            RequestError::Manage(ManageError::Invalid(error)) => CliError::invalid(command)(error),
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
    variables: Variables,
    prompt: &'a mut dyn Prompt,
    stop_requested: bool,
}

type CmdResult = Result<Reply, CliError>;

impl<'a> Session<'a> {
    pub fn new(manager: Manager<'a>, prompt: &'a mut dyn Prompt) -> Self {
        Session {
            manager,
            variables: Variables::new(),
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
        binder::variable(&self.variables, name)
    }

    /// `$p.Field = value`: change one field of the object held in a variable.
    fn assign_property(
        &mut self,
        variable: &str,
        property: &str,
        value: &Value,
    ) -> Result<(), CliError> {
        let cmd = format!("${variable}.{property}");
        let value = binder::to_param(&cmd, property, value)?;
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
                    let invocation =
                        binder::invocation(spec, &bound, Some(object.identity()), &self.variables)?;
                    let mut step = self.run(invocation)?;
                    total.objects.append(&mut step.objects);
                    total.warnings.append(&mut step.warnings);
                    total.notes.append(&mut step.notes);
                }
                Ok(total)
            }
            _ => binder::invocation(spec, &bound, None, &self.variables)
                .and_then(|invocation| self.run(invocation)),
        };
        self.stop_requested |= stop;
        result
    }

    /// True once a command in this statement asked for `-ErrorAction Stop`; cleared by the caller.
    pub fn take_stop_requested(&mut self) -> bool {
        std::mem::take(&mut self.stop_requested)
    }

    /// Run a bound request: confirm when asked, execute, and turn the response into a reply.
    pub fn run(&mut self, invocation: Invocation) -> CmdResult {
        let Invocation {
            request,
            confirm,
            force,
            pass_thru,
        } = invocation;
        let cmd = request.command();
        // Only a write that will happen is confirmed (not -WhatIf, not -InMemory).
        if let (true, Some(Mode::Commit), Some(target)) =
            (confirm, request.mode(), request.target())
        {
            if !self.prompt.confirm(&format!(
                "Confirm\nAre you sure you want to perform this action?\nPerforming the operation \"{cmd}\" on target \"{target}\".\n[Y] Yes  [N] No (default is \"Y\"): "
            )) {
                return Ok(declined(cmd, &target));
            }
        }
        let mut bar = ProgressBar::on_terminal();
        let response = self
            .manager
            .execute_with_progress(request, &mut |done, total| bar.show(done, total));
        bar.finish();
        let response = response.map_err(|e| CliError::from_request(cmd, e))?;
        Ok(match response {
            Response::Partners(found) => listing(
                found
                    .into_iter()
                    .map(|p| Object::Partner(p.value))
                    .collect(),
            ),
            Response::Policies(found) => {
                listing(found.into_iter().map(|p| Object::Policy(p.value)).collect())
            }
            Response::Gateway(config) => listing(vec![Object::Gateway(config)]),
            Response::Partner(out) => written(out, force, Object::Partner),
            Response::Policy(out) => written(out, force, Object::Policy),
            Response::GatewaySet(out) => written(out, force, Object::Gateway),
            Response::PartnerRemoved(out) => removed(out, force),
            Response::PolicyRemoved(out) => removed(out, force),
            Response::Grant(out) => Reply {
                objects: if pass_thru {
                    out.value.into_iter().map(Object::Grant).collect()
                } else {
                    Vec::new()
                },
                warnings: shown_warnings(out.warnings, force),
                notes: out.what_if.into_iter().collect(),
                ..Reply::default()
            },
            Response::Imported(report) => Reply {
                notes: report.lines(),
                warnings: shown_warnings(report.warnings.clone(), force),
                objects: vec![Object::Import(report)],
                ..Reply::default()
            },
        })
    }
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

fn listing(objects: Vec<Object>) -> Reply {
    Reply {
        objects,
        is_listing: true,
        ..Reply::default()
    }
}

/// `-Force` suppresses non-fatal messages.
fn shown_warnings(warnings: Vec<String>, force: bool) -> Vec<String> {
    if force { Vec::new() } else { warnings }
}

fn written<T>(out: Outcome<T>, force: bool, wrap: impl Fn(T) -> Object) -> Reply {
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
        warnings: shown_warnings(warnings, force),
        notes: what_if.into_iter().collect(),
        ..Reply::default()
    }
}

fn removed<T>(out: Outcome<T>, force: bool) -> Reply {
    Reply {
        warnings: shown_warnings(out.warnings, force),
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
