//! `fedgate-pwsh`: a pure (no I/O) parser and parameter binder for the subset of PowerShell that
//! administrators paste from Skype for Business runbooks, e.g.
//! `New-CsXmppAllowedPartner -Identity "contoso.com" -PartnerType "PublicVerified"`.
//!
//! - [`parse_script`] parses a script or an interactive line into [`Statement`]s;
//! - [`parse_argv`] turns process arguments (already split by the Unix shell) into one statement;
//! - [`bind()`] matches a [`Command`]'s arguments to a [`CmdletSpec`] with PowerShell's rules.
//!
//! Module map: [`value`] (argument values and their rendering), [`ast`] (statements, commands),
//! `lexer` (character scanning), `parser` (the grammar), `argv` (process arguments), [`bind()`]
//! (parameter binding), [`error`] (syntax errors).

#![forbid(unsafe_code)]

mod argv;
pub mod ast;
pub mod bind;
pub mod error;
mod lexer;
mod parser;
pub mod value;

pub use argv::parse_argv;
pub use ast::{Command, RawArg, Statement};
pub use bind::{
    BindError, BoundArgs, BoundValue, COMMON_PARAMETERS, CmdletSpec, ParamKind, ParamSpec,
    SWITCH_TYPE_NAME, bind, is_cmdlet_name,
};
pub use error::{Location, SyntaxError, SyntaxErrorKind};
pub use parser::{MAX_NESTING, parse_script};
pub use value::Value;
