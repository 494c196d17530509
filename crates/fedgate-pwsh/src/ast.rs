//! The syntax tree of a parsed script or command line: [`Statement`], [`Command`] and [`RawArg`].
//!
//! Nothing here is bound to a cmdlet yet; see [`crate::bind()`] for that.

use crate::value::Value;

/// One statement of a script (or one interactive line / one process invocation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// `Cmd args` or `Cmd args | Cmd2 args` (a pipeline of one or more commands).
    Pipeline { commands: Vec<Command>, line: usize },
    /// `$name = <pipeline>`.
    AssignPipeline {
        variable: String,
        commands: Vec<Command>,
        line: usize,
    },
    /// `$name.Property = <value expression>`.
    AssignProperty {
        variable: String,
        property: String,
        value: Value,
        line: usize,
    },
    /// A bare `$name` (print the variable).
    ShowVariable { variable: String, line: usize },
}

impl Statement {
    /// The 1-based line on which the statement starts.
    pub fn line(&self) -> usize {
        match self {
            Statement::Pipeline { line, .. }
            | Statement::AssignPipeline { line, .. }
            | Statement::AssignProperty { line, .. }
            | Statement::ShowVariable { line, .. } => *line,
        }
    }
}

/// One command of a pipeline: its name as written and its arguments in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub name: String,
    pub args: Vec<RawArg>,
}

/// One argument token of a command, before binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawArg {
    /// `-Name` or `-Name:value` (attached value). The name has no leading dash.
    Parameter {
        name: String,
        attached: Option<Value>,
    },
    /// Any value token.
    Value(Value),
}
