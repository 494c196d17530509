//! Syntax errors: what went wrong ([`SyntaxErrorKind`], with PowerShell's wording where PowerShell
//! has one) and where ([`Location`]: a line and column of a script, or an element of argv).

use std::fmt;

/// Where a syntax error was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// 1-based line and 1-based column (in characters) of a script or interactive line.
    Script { line: usize, column: usize },
    /// Index into the argv passed to [`crate::parse_argv`] (0 is the command name) and 1-based
    /// column (in characters) inside that element.
    Argv { index: usize, column: usize },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Script { line, column } => write!(f, "At line:{line} char:{column}"),
            Location::Argv { index, column } => write!(f, "At argument {index} char:{column}"),
        }
    }
}

/// The reason for a [`SyntaxError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxErrorKind {
    /// An unterminated `'...'` or `"..."` string; the char is the missing terminator.
    #[error("The string is missing the terminator: {0}.")]
    MissingStringTerminator(char),
    /// An unterminated `@{ ... }`.
    #[error("Missing closing '}}' in statement block or type definition.")]
    MissingClosingBrace,
    /// An unterminated `( ... )`.
    #[error("Missing closing ')' in expression.")]
    MissingClosingParen,
    /// An unterminated `@( ... )`.
    #[error("Missing closing ')' in subexpression.")]
    MissingClosingSubexpressionParen,
    /// An unterminated `<# ... #>`.
    #[error("Missing the closing '#>' of a block comment.")]
    MissingBlockCommentEnd,
    /// `@{Key}` or `@{Key "x"}`.
    #[error("Missing '=' operator after key in hash literal.")]
    MissingEqualsInHashLiteral,
    /// `@{="x"}`.
    #[error("Missing key before '=' in hash literal.")]
    MissingKeyInHashLiteral,
    /// `@{Add=}`.
    #[error("Missing statement after '=' in hash literal.")]
    MissingValueInHashLiteral,
    /// `@{Add="a"; add="b"}`.
    #[error("Duplicate keys '{0}' are not allowed in hash literals.")]
    DuplicateHashKey(String),
    /// `a,` with nothing after the comma.
    #[error("Missing expression after ','.")]
    MissingExpressionAfterComma,
    /// `()`.
    #[error("An expression was expected after '('.")]
    EmptyParentheses,
    /// `Cmd |` or `| Cmd`.
    #[error("An empty pipe element is not allowed.")]
    EmptyPipeElement,
    /// `-Name:` with nothing after the colon.
    #[error("Missing an argument for parameter '{0}'.")]
    MissingAttachedArgument(String),
    /// `$x =` with nothing after it.
    #[error("You must provide a value expression following the '=' operator.")]
    MissingAssignmentValue,
    /// `$x = "text"`: only command output can be stored in a variable.
    #[error(
        "Only the output of a command can be assigned to a variable (for example: $p = Get-CsXmppAllowedPartner -Identity contoso.com); found {0}."
    )]
    UnsupportedValueAssignment(String),
    /// `$x.Prop` used anywhere but on the left of `=`, or `$x.A.B = ...`.
    #[error("Property access '{0}' is only supported as '$variable.Property = value'.")]
    UnsupportedMemberAccess(String),
    /// `$x | Cmd`.
    #[error("Piping a variable into a command is not supported; pass it as an argument instead.")]
    UnsupportedVariablePipe,
    /// `{ ... }`.
    #[error("Script blocks ({{ ... }}) are not supported.")]
    UnsupportedScriptBlock,
    /// `@name`.
    #[error("Splatting ('@{0}') is not supported.")]
    UnsupportedSplatting(String),
    /// A statement that does not start with a command name or a variable, e.g. `"text"`.
    #[error("Expected a command name or a variable at '{0}'.")]
    ExpectedCommand(String),
    /// Anything else that cannot appear where it does, e.g. a stray `)`.
    #[error("Unexpected token '{0}' in expression or statement.")]
    UnexpectedToken(String),
    /// More than [`crate::MAX_NESTING`] levels of `( )`, `@( )`, `@{ }`.
    #[error("The expression is nested too deeply (more than {0} levels of brackets).")]
    NestingTooDeep(usize),
    /// [`crate::parse_argv`] was given an empty argv.
    #[error("No command given.")]
    EmptyArgv,
    /// [`crate::parse_argv`] was given an empty command name or one starting with '-'.
    #[error("'{0}' is not a command name.")]
    InvalidCommandName(String),
}

/// A syntax error with its location. Displays as `At line:L char:C: <message>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {kind}")]
pub struct SyntaxError {
    pub location: Location,
    pub kind: SyntaxErrorKind,
    /// See [`SyntaxError::is_incomplete`].
    incomplete_input: bool,
}

impl SyntaxError {
    pub(crate) fn at(line: usize, column: usize, kind: SyntaxErrorKind) -> Self {
        SyntaxError {
            location: Location::Script { line, column },
            kind,
            incomplete_input: false,
        }
    }

    /// Marks the error as caused by the end of the input (see [`SyntaxError::is_incomplete`]).
    pub(crate) fn incomplete(mut self, at_end: bool) -> Self {
        self.incomplete_input = at_end;
        self
    }

    /// Re-locates a script error found while parsing argv element `index` (parsed as one line).
    pub(crate) fn in_argv(mut self, index: usize) -> Self {
        self.location = Location::Argv {
            index,
            column: self.column(),
        };
        self
    }

    /// The PowerShell-like message without the location.
    pub fn message(&self) -> String {
        self.kind.to_string()
    }

    /// 1-based line of the error (always 1 for argv errors).
    pub fn line(&self) -> usize {
        match self.location {
            Location::Script { line, .. } => line,
            Location::Argv { .. } => 1,
        }
    }

    /// 1-based column (in characters) of the error in its line or argv element.
    pub fn column(&self) -> usize {
        match self.location {
            Location::Script { column, .. } | Location::Argv { column, .. } => column,
        }
    }

    /// The parameter the error is about, if any (e.g. `-Force:` with nothing attached).
    pub fn parameter(&self) -> Option<&str> {
        match &self.kind {
            SyntaxErrorKind::MissingAttachedArgument(p) => Some(p),
            _ => None,
        }
    }

    /// True when more input could complete the statement (an unterminated string, hashtable,
    /// subexpression, block comment, or a trailing `|`, `,` or `=`): an interactive shell can
    /// read another line and retry instead of reporting the error.
    pub fn is_incomplete(&self) -> bool {
        self.incomplete_input
    }
}
