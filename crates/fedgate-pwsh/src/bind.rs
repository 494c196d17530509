//! Parameter binding: matching a parsed [`Command`]'s arguments to a cmdlet's declared parameters
//! ([`CmdletSpec`]) the way PowerShell does — case-insensitive names, unambiguous prefixes (an
//! exact name always wins), the common parameters (`-Verbose`, `-ErrorAction`, ...), switches
//! with optional attached booleans, named binding before positional binding — with
//! PowerShell-worded [`BindError`]s. Values are not converted to their parameter types here.

use crate::ast::{Command, RawArg};
use crate::value::Value;

/// Whether a parameter is a switch (`-Force`) or takes a value (`-Identity x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Switch,
    Value,
}

/// One declared parameter of a cmdlet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    /// Canonical name, without the dash (`"PartnerType"`).
    pub name: &'static str,
    pub kind: ParamKind,
    /// Position for positional binding (0 is the first bare value); `None` if named only.
    /// Ignored for switches (PowerShell switches are never positional).
    pub position: Option<usize>,
    /// Type shown in errors, e.g. `"System.String"`.
    pub type_name: &'static str,
}

/// PowerShell's type name for switch parameters.
pub const SWITCH_TYPE_NAME: &str = "System.Management.Automation.SwitchParameter";

impl ParamSpec {
    /// A switch parameter (`-Force`).
    pub const fn switch(name: &'static str) -> Self {
        ParamSpec {
            name,
            kind: ParamKind::Switch,
            position: None,
            type_name: SWITCH_TYPE_NAME,
        }
    }

    /// A named value parameter of the given type.
    pub const fn value(name: &'static str, type_name: &'static str) -> Self {
        ParamSpec {
            name,
            kind: ParamKind::Value,
            position: None,
            type_name,
        }
    }

    /// The same parameter, also accepted positionally at `position`.
    pub const fn at(self, position: usize) -> Self {
        ParamSpec {
            position: Some(position),
            ..self
        }
    }
}

/// A cmdlet's name and declared parameters (the common parameters are implied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmdletSpec {
    pub name: &'static str,
    pub params: &'static [ParamSpec],
}

const ACTION_PREFERENCE: &str = "System.Management.Automation.ActionPreference";

/// The PowerShell common parameters, accepted by every cmdlet in addition to its own.
pub const COMMON_PARAMETERS: &[ParamSpec] = &[
    ParamSpec::switch("Verbose"),
    ParamSpec::switch("Debug"),
    ParamSpec::value("ErrorAction", ACTION_PREFERENCE),
    ParamSpec::value("WarningAction", ACTION_PREFERENCE),
    ParamSpec::value("InformationAction", ACTION_PREFERENCE),
    ParamSpec::value("ErrorVariable", "System.String"),
    ParamSpec::value("WarningVariable", "System.String"),
    ParamSpec::value("InformationVariable", "System.String"),
    ParamSpec::value("OutVariable", "System.String"),
    ParamSpec::value("OutBuffer", "System.Int32"),
    ParamSpec::value("PipelineVariable", "System.String"),
];

/// PowerShell's aliases of the common parameters (matched exactly, never as prefixes).
const COMMON_ALIASES: &[(&str, &str)] = &[
    ("vb", "Verbose"),
    ("db", "Debug"),
    ("ea", "ErrorAction"),
    ("wa", "WarningAction"),
    ("infa", "InformationAction"),
    ("ev", "ErrorVariable"),
    ("wv", "WarningVariable"),
    ("iv", "InformationVariable"),
    ("ov", "OutVariable"),
    ("ob", "OutBuffer"),
    ("pv", "PipelineVariable"),
];

/// True if `s` is a command name of the `Verb-Noun` shape (`New-CsXmppAllowedPartner`).
pub fn is_cmdlet_name(s: &str) -> bool {
    let Some((verb, noun)) = s.split_once('-') else {
        return false;
    };
    !verb.is_empty()
        && verb.chars().all(|c| c.is_ascii_alphabetic())
        && noun.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && noun.chars().all(|c| c.is_ascii_alphanumeric())
}

/// A bound parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundValue {
    /// A switch: `-Force` is `Switch(true)`, `-Force:$false` is `Switch(false)`.
    Switch(bool),
    /// A value parameter's argument, unconverted.
    Value(Value),
}

impl BoundValue {
    /// The value of a value parameter, `None` for a switch.
    pub fn as_value(&self) -> Option<&Value> {
        match self {
            BoundValue::Value(v) => Some(v),
            BoundValue::Switch(_) => None,
        }
    }
}

/// The result of [`bind`]: canonical parameter name → value, in command-line order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoundArgs {
    entries: Vec<(&'static str, BoundValue)>,
}

impl BoundArgs {
    /// The bound value of a parameter (name compared case-insensitively).
    pub fn get(&self, canonical: &str) -> Option<&BoundValue> {
        self.entries
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(canonical))
            .map(|(_, v)| v)
    }

    /// The argument of a value parameter, if it was given.
    pub fn value(&self, canonical: &str) -> Option<&Value> {
        self.get(canonical).and_then(BoundValue::as_value)
    }

    /// True if a switch was given and is on (`-Force`, `-Force:$true`); false if absent or off.
    pub fn switch(&self, canonical: &str) -> bool {
        matches!(self.get(canonical), Some(BoundValue::Switch(true)))
    }

    /// True if the parameter was given at all (also `-Force:$false`).
    pub fn contains(&self, canonical: &str) -> bool {
        self.get(canonical).is_some()
    }

    /// All bound parameters in command-line order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &BoundValue)> + '_ {
        self.entries.iter().map(|(name, v)| (*name, v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn dash_list(names: &[&'static str]) -> String {
    names
        .iter()
        .map(|n| format!("-{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why binding failed. Messages follow PowerShell's parameter binding errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error("A parameter cannot be found that matches parameter name '{name}'.")]
    ParameterNotFound { name: String },
    #[error(
        "Parameter cannot be processed because the parameter name '{name}' is ambiguous. Possible matches include: {}.",
        dash_list(.candidates)
    )]
    AmbiguousParameter {
        name: String,
        candidates: Vec<&'static str>,
    },
    #[error(
        "Missing an argument for parameter '{parameter}'. Specify a parameter of type '{type_name}' and try again."
    )]
    MissingArgument {
        parameter: &'static str,
        type_name: &'static str,
    },
    #[error("Cannot bind parameter because parameter '{parameter}' is specified more than once.")]
    DuplicateParameter { parameter: &'static str },
    #[error("A positional parameter cannot be found that accepts argument '{argument}'.")]
    PositionalNotFound { argument: String },
    #[error(
        "Cannot process argument transformation on parameter '{parameter}'. Cannot convert value \"{value}\" to type \"{SWITCH_TYPE_NAME}\". Boolean parameters accept only Boolean values and numbers, such as $True, $False, 1 or 0."
    )]
    InvalidSwitchValue {
        parameter: &'static str,
        value: String,
    },
}

impl BindError {
    /// The parameter the error is about: the canonical name, or the name as typed when it did
    /// not resolve (not found / ambiguous). `None` for an unplaceable positional argument.
    pub fn parameter(&self) -> Option<&str> {
        match self {
            BindError::ParameterNotFound { name } | BindError::AmbiguousParameter { name, .. } => {
                Some(name)
            }
            BindError::MissingArgument { parameter, .. }
            | BindError::DuplicateParameter { parameter }
            | BindError::InvalidSwitchValue { parameter, .. } => Some(parameter),
            BindError::PositionalNotFound { .. } => None,
        }
    }
}

/// The spec's own parameters followed by the common parameters it does not redefine.
fn all_params(spec: &CmdletSpec) -> impl Iterator<Item = &'static ParamSpec> + '_ {
    let own: &'static [ParamSpec] = spec.params;
    own.iter().chain(
        COMMON_PARAMETERS
            .iter()
            .filter(move |c| !own.iter().any(|p| p.name.eq_ignore_ascii_case(c.name))),
    )
}

/// Resolves a parameter name as typed: exact name, then common alias, then unique prefix.
fn resolve(name: &str, spec: &CmdletSpec) -> Result<&'static ParamSpec, BindError> {
    if let Some(p) = all_params(spec).find(|p| p.name.eq_ignore_ascii_case(name)) {
        return Ok(p);
    }
    if let Some((_, target)) = COMMON_ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(name))
    {
        if let Some(p) = all_params(spec).find(|p| p.name == *target) {
            return Ok(p);
        }
    }
    let matches: Vec<&'static ParamSpec> = all_params(spec)
        .filter(|p| {
            p.name
                .get(..name.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(name))
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(BindError::ParameterNotFound {
            name: name.to_string(),
        }),
        many => Err(BindError::AmbiguousParameter {
            name: name.to_string(),
            candidates: many.iter().map(|p| p.name).collect(),
        }),
    }
}

/// The state of a switch given an attached value (`-Force:$false`, `-Force:0`, ...).
fn switch_value(param: &ParamSpec, value: &Value) -> Result<bool, BindError> {
    let invalid = || BindError::InvalidSwitchValue {
        parameter: param.name,
        value: value.to_message_text(),
    };
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(false),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "$true" | "1" => Ok(true),
            "false" | "$false" | "0" => Ok(false),
            _ => Err(invalid()),
        },
        _ => Err(invalid()),
    }
}

/// Binds a command's arguments to a cmdlet's parameters.
///
/// Named arguments are bound first; remaining bare values then fill the value parameters that
/// have a `position`, in position order, skipping those already bound by name (as PowerShell
/// does). Variables (`Value::Variable`) are passed through unresolved; resolve them before
/// binding if switches may receive them.
pub fn bind(command: &Command, spec: &CmdletSpec) -> Result<BoundArgs, BindError> {
    let mut bound: Vec<(usize, &'static str, BoundValue)> = Vec::new();
    let mut positional: Vec<(usize, &Value)> = Vec::new();
    let mut i = 0;
    while let Some(arg) = command.args.get(i) {
        let order = i;
        i += 1;
        let (name, attached) = match arg {
            RawArg::Value(v) => {
                positional.push((order, v));
                continue;
            }
            RawArg::Parameter { name, attached } => (name, attached),
        };
        let param = resolve(name, spec)?;
        if bound.iter().any(|(_, n, _)| *n == param.name) {
            return Err(BindError::DuplicateParameter {
                parameter: param.name,
            });
        }
        let value = match (param.kind, attached) {
            (ParamKind::Switch, None) => BoundValue::Switch(true),
            (ParamKind::Switch, Some(v)) => BoundValue::Switch(switch_value(param, v)?),
            (ParamKind::Value, Some(v)) => BoundValue::Value(v.clone()),
            (ParamKind::Value, None) => match command.args.get(i) {
                Some(RawArg::Value(v)) => {
                    i += 1;
                    BoundValue::Value(v.clone())
                }
                _ => {
                    return Err(BindError::MissingArgument {
                        parameter: param.name,
                        type_name: param.type_name,
                    });
                }
            },
        };
        bound.push((order, param.name, value));
    }

    let mut slots: Vec<&ParamSpec> = spec
        .params
        .iter()
        .filter(|p| p.kind == ParamKind::Value && p.position.is_some())
        .filter(|p| !bound.iter().any(|(_, n, _)| *n == p.name))
        .collect();
    slots.sort_by_key(|p| p.position);
    let mut slots = slots.into_iter();
    for (order, value) in positional {
        let Some(param) = slots.next() else {
            return Err(BindError::PositionalNotFound {
                argument: value.to_message_text(),
            });
        };
        bound.push((order, param.name, BoundValue::Value(value.clone())));
    }

    bound.sort_by_key(|(order, _, _)| *order);
    Ok(BoundArgs {
        entries: bound.into_iter().map(|(_, n, v)| (n, v)).collect(),
    })
}
