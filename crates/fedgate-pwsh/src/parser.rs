//! The grammar: statements (pipelines, assignments, variable display), commands and their
//! arguments, and value expressions in PowerShell *argument mode* (bare words, quoted strings,
//! `$true`/`$false`/`$null`/`$var`, comma lists, `( )`, `@( )` and `@{ }`).
//!
//! Entry point: [`parse_script`]. [`crate::argv`] reuses the value grammar through
//! [`Parser::argv_value`].

use crate::ast::{Command, RawArg, Statement};
use crate::error::{SyntaxError, SyntaxErrorKind};
use crate::lexer::{Cursor, is_dash, is_double_quote, is_single_quote};
use crate::value::Value;

/// Deepest nesting of `( )`, `@( )` and `@{ }` accepted (the parser is recursive; this keeps
/// hostile input from exhausting the stack).
pub const MAX_NESTING: usize = 64;

/// Parse a whole script or one interactive line: statements separated by newlines or `;`,
/// `#` and `<# #>` comments (not inside quotes), backtick line continuation at end of line,
/// blank lines ignored. Each statement carries its 1-based line number.
pub fn parse_script(text: &str) -> Result<Vec<Statement>, SyntaxError> {
    Parser::new(text).script()
}

/// How a top-level comma list was written; [`crate::argv`] uses it to tell `a.com,b.com` (a list)
/// from free text such as `Smith, John`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ListShape {
    /// Whitespace next to a top-level comma.
    pub(crate) spaced: bool,
    /// At least one top-level item is an unquoted bare word.
    pub(crate) has_bare_item: bool,
}

pub(crate) struct Parser {
    cur: Cursor,
    /// Nesting depth inside `( )`, `@( )`, `@{ }`.
    depth: usize,
    shape: ListShape,
}

impl Parser {
    pub(crate) fn new(text: &str) -> Self {
        Parser {
            cur: Cursor::new(text),
            depth: 0,
            shape: ListShape::default(),
        }
    }

    fn script(&mut self) -> Result<Vec<Statement>, SyntaxError> {
        let mut statements = Vec::new();
        loop {
            self.cur.skip_blank(true)?;
            if self.cur.at_end() {
                return Ok(statements);
            }
            statements.push(self.statement()?);
        }
    }

    /// Enters one bracket level opened at `start`.
    fn enter(&mut self, start: usize) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self
                .cur
                .error(start, SyntaxErrorKind::NestingTooDeep(MAX_NESTING)));
        }
        Ok(())
    }

    /// True where a statement ends: newline, `;` or end of input (after inline space/comments).
    fn at_statement_end(&self) -> bool {
        matches!(self.cur.peek(), None | Some('\n') | Some(';'))
    }

    fn unexpected_here(&self) -> SyntaxError {
        let pos = self.cur.pos();
        self.cur
            .error(pos, SyntaxErrorKind::UnexpectedToken(self.cur.excerpt(pos)))
    }

    /// Errors unless the statement ends here (after inline whitespace and comments).
    fn expect_statement_end(&mut self) -> Result<(), SyntaxError> {
        self.cur.skip_inline_ws_and_comments()?;
        if self.at_statement_end() {
            Ok(())
        } else {
            Err(self.unexpected_here())
        }
    }

    fn statement(&mut self) -> Result<Statement, SyntaxError> {
        let start = self.cur.pos();
        let (line, _) = self.cur.line_col(start);
        if self.cur.peek() == Some('$') {
            if let Some(variable) = self.cur.read_variable()? {
                return self.variable_statement(variable, start, line);
            }
        }
        let commands = self.pipeline()?;
        Ok(Statement::Pipeline { commands, line })
    }

    /// After `$name` at the start of a statement: `$name`, `$name = <pipeline>`,
    /// `$name.Property = <value>`.
    fn variable_statement(
        &mut self,
        variable: String,
        start: usize,
        line: usize,
    ) -> Result<Statement, SyntaxError> {
        let property = if self.at_member_access() {
            self.cur.bump();
            let prop_start = self.cur.pos();
            while self
                .cur
                .peek()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
            {
                self.cur.bump();
            }
            let property = self.cur.slice(prop_start, self.cur.pos());
            if self.at_member_access() || self.cur.peek() == Some('(') {
                return Err(self.member_access_error(start));
            }
            Some(property)
        } else {
            None
        };
        if !self.cur.at_word_end(false) && self.cur.peek() != Some('=') {
            return Err(self.cur.error(
                start,
                SyntaxErrorKind::ExpectedCommand(self.cur.excerpt(start)),
            ));
        }
        self.cur.skip_inline_ws_and_comments()?;
        match self.cur.peek() {
            Some('=') => {
                self.cur.bump();
                self.cur.skip_blank(false)?;
                if self.at_statement_end() {
                    let pos = self.cur.pos();
                    return Err(self
                        .cur
                        .error(pos, SyntaxErrorKind::MissingAssignmentValue)
                        .incomplete(self.cur.at_end()));
                }
                match property {
                    Some(property) => {
                        let value = self.expr()?;
                        self.expect_statement_end()?;
                        Ok(Statement::AssignProperty {
                            variable,
                            property,
                            value,
                            line,
                        })
                    }
                    None => {
                        self.check_assignable_pipeline()?;
                        let commands = self.pipeline()?;
                        Ok(Statement::AssignPipeline {
                            variable,
                            commands,
                            line,
                        })
                    }
                }
            }
            None | Some('\n') | Some(';') => match property {
                Some(_) => Err(self.member_access_error(start)),
                None => Ok(Statement::ShowVariable { variable, line }),
            },
            Some('|') => {
                let pos = self.cur.pos();
                Err(self
                    .cur
                    .error(pos, SyntaxErrorKind::UnsupportedVariablePipe))
            }
            Some(_) => Err(self.unexpected_here()),
        }
    }

    /// `$x = <something that is a value, not a command>` is rejected with a clear message.
    fn check_assignable_pipeline(&self) -> Result<(), SyntaxError> {
        let pos = self.cur.pos();
        let Some(c) = self.cur.peek() else {
            return Ok(());
        };
        let is_value = is_single_quote(c)
            || is_double_quote(c)
            || matches!(c, '$' | '@' | '(' | ',')
            || c.is_ascii_digit()
            || (is_dash(c) && self.cur.peek_at(1).is_some_and(|d| d.is_ascii_digit()));
        if is_value {
            Err(self.cur.error(
                pos,
                SyntaxErrorKind::UnsupportedValueAssignment(self.cur.excerpt(pos)),
            ))
        } else {
            Ok(())
        }
    }

    /// At `.Name` directly after a variable.
    fn at_member_access(&self) -> bool {
        self.cur.peek() == Some('.')
            && self
                .cur
                .peek_at(1)
                .is_some_and(|c| c.is_alphabetic() || c == '_')
    }

    fn member_access_error(&self, start: usize) -> SyntaxError {
        self.cur.error(
            start,
            SyntaxErrorKind::UnsupportedMemberAccess(self.cur.excerpt(start)),
        )
    }

    /// `Cmd args | Cmd2 args ...` up to the end of the statement.
    fn pipeline(&mut self) -> Result<Vec<Command>, SyntaxError> {
        let mut commands = vec![self.command()?];
        while self.cur.eat('|') {
            self.cur.skip_blank(false)?;
            commands.push(self.command()?);
        }
        Ok(commands)
    }

    /// One command: its name, then arguments up to `|`, `;`, newline or end of input.
    fn command(&mut self) -> Result<Command, SyntaxError> {
        self.cur.skip_inline_ws_and_comments()?;
        let start = self.cur.pos();
        let name = match self.cur.peek() {
            None | Some('\n') | Some(';') | Some('|') => {
                return Err(self
                    .cur
                    .error(start, SyntaxErrorKind::EmptyPipeElement)
                    .incomplete(self.cur.at_end()));
            }
            Some(')') | Some('}') | Some(',') => return Err(self.unexpected_here()),
            Some('{') => {
                return Err(self
                    .cur
                    .error(start, SyntaxErrorKind::UnsupportedScriptBlock));
            }
            Some(c)
                if self.cur.at_parameter()
                    || is_single_quote(c)
                    || is_double_quote(c)
                    || matches!(c, '$' | '@' | '(') =>
            {
                return Err(self.cur.error(
                    start,
                    SyntaxErrorKind::ExpectedCommand(self.cur.excerpt(start)),
                ));
            }
            Some(_) => self.cur.read_bare_word(false)?,
        };
        if name.is_empty() {
            return Err(self.unexpected_here());
        }
        let mut args = Vec::new();
        loop {
            self.cur.skip_inline_ws_and_comments()?;
            match self.cur.peek() {
                None | Some('\n') | Some(';') | Some('|') => break,
                Some(_) if self.cur.at_parameter() => args.push(self.parameter()?),
                Some(_) => args.push(RawArg::Value(self.expr()?)),
            }
        }
        Ok(Command { name, args })
    }

    /// `-Name`, `-Name:value` or `-Name: value`.
    fn parameter(&mut self) -> Result<RawArg, SyntaxError> {
        let start = self.cur.pos();
        let (name, colon) = self.cur.read_parameter();
        if !colon {
            return Ok(RawArg::Parameter {
                name,
                attached: None,
            });
        }
        self.cur.skip_inline_ws();
        if !self.at_value_start() || self.cur.at_parameter() {
            return Err(self
                .cur
                .error(start, SyntaxErrorKind::MissingAttachedArgument(name))
                .incomplete(self.cur.at_end()));
        }
        let value = self.expr()?;
        Ok(RawArg::Parameter {
            name,
            attached: Some(value),
        })
    }

    /// True where a value can start (not at a separator, closer or comment).
    fn at_value_start(&self) -> bool {
        match self.cur.peek() {
            None | Some('\n' | ';' | '|' | ')' | '}' | ',' | '#') => false,
            Some('<') => self.cur.peek_at(1) != Some('#'),
            Some(_) => !self.cur.at_continuation(),
        }
    }

    /// A value expression: one primary, or a comma-separated list of them (newlines and comments
    /// are allowed after a comma).
    fn expr(&mut self) -> Result<Value, SyntaxError> {
        let first_bare = self.at_bare_item();
        let first = self.primary()?;
        self.list_tail(first, first_bare)
    }

    /// Inside `( )` and `@( )` (expression mode), a leading unary comma wraps the first item in
    /// a one-item list, as in PowerShell: `@(,@("a","b"))` is a list holding one list.
    fn expr_or_unary_comma(&mut self) -> Result<Value, SyntaxError> {
        if self.cur.peek() != Some(',') {
            return self.expr();
        }
        let comma = self.cur.pos();
        self.cur.bump();
        self.cur.skip_inline_ws();
        if !self.at_value_start() {
            return Err(self
                .cur
                .error(comma, SyntaxErrorKind::MissingExpressionAfterComma)
                .incomplete(self.cur.at_end()));
        }
        let first = Value::List(vec![self.primary()?]);
        self.list_tail(first, false)
    }

    /// After the first item of an expression: more `, item`s make it a list.
    fn list_tail(&mut self, first: Value, first_bare: bool) -> Result<Value, SyntaxError> {
        let top = self.depth == 0;
        let mut items: Option<Vec<Value>> = None;
        let mut bare = first_bare;
        let mut spaced = false;
        loop {
            let save = self.cur.pos();
            self.cur.skip_inline_ws();
            if self.cur.peek() != Some(',') {
                self.cur.set_pos(save);
                break;
            }
            spaced |= self.cur.pos() != save;
            let comma = self.cur.pos();
            self.cur.bump();
            let after = self.cur.pos();
            self.cur.skip_blank(false)?;
            spaced |= self.cur.pos() != after;
            if !self.at_value_start() {
                return Err(self
                    .cur
                    .error(comma, SyntaxErrorKind::MissingExpressionAfterComma)
                    .incomplete(self.cur.at_end()));
            }
            bare |= self.at_bare_item();
            let item = self.primary()?;
            items.get_or_insert_with(|| vec![first.clone()]).push(item);
        }
        match items {
            Some(items) => {
                if top {
                    self.shape.spaced |= spaced;
                    self.shape.has_bare_item |= bare;
                }
                Ok(Value::List(items))
            }
            None => Ok(first),
        }
    }

    /// True at an item that will be read as a plain bare word.
    fn at_bare_item(&self) -> bool {
        self.cur.peek().is_some_and(|c| {
            !(is_single_quote(c) || is_double_quote(c) || matches!(c, '$' | '@' | '(' | '{'))
        })
    }

    /// One value: quoted string or bare word, variable, `( )`, `@( )` or `@{ }`.
    fn primary(&mut self) -> Result<Value, SyntaxError> {
        let start = self.cur.pos();
        match (self.cur.peek(), self.cur.peek_at(1)) {
            (Some('$'), _) => self.variable_or_word(),
            (Some('@'), Some('{')) => self.hashtable(),
            (Some('@'), Some('(')) => self.subexpression(),
            (Some('@'), Some(c)) if c.is_alphanumeric() || c == '_' => {
                self.cur.bump();
                let name = self.cur.read_bare_word(false)?;
                Err(self
                    .cur
                    .error(start, SyntaxErrorKind::UnsupportedSplatting(name)))
            }
            (Some('('), _) => self.group(),
            (Some('{'), _) => Err(self
                .cur
                .error(start, SyntaxErrorKind::UnsupportedScriptBlock)),
            _ => {
                let word = self.cur.read_bare_word(false)?;
                if word.is_empty() && self.cur.pos() == start {
                    return Err(self.unexpected_here());
                }
                Ok(Value::String(word))
            }
        }
    }

    /// `$true`, `$false`, `$null`, `$name`; a `$` glued to other text (`$x-y`) is a literal word.
    fn variable_or_word(&mut self) -> Result<Value, SyntaxError> {
        let start = self.cur.pos();
        if let Some(name) = self.cur.read_variable()? {
            if self.at_member_access() {
                return Err(self.member_access_error(start));
            }
            if self.cur.at_word_end(false) {
                return Ok(match name.to_ascii_lowercase().as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "null" => Value::Null,
                    _ => Value::Variable(name),
                });
            }
            self.cur.set_pos(start);
        }
        Ok(Value::String(self.cur.read_bare_word(false)?))
    }

    /// `( expr )`.
    fn group(&mut self) -> Result<Value, SyntaxError> {
        let start = self.cur.pos();
        self.cur.bump();
        self.enter(start)?;
        self.cur.skip_blank(false)?;
        if self.cur.eat(')') {
            return Err(self.cur.error(start, SyntaxErrorKind::EmptyParentheses));
        }
        if self.cur.at_end() {
            return Err(self
                .cur
                .error_incomplete(start, SyntaxErrorKind::MissingClosingParen));
        }
        if !self.at_value_start() && self.cur.peek() != Some(',') {
            return Err(self.unexpected_here());
        }
        let value = self.expr_or_unary_comma()?;
        self.cur.skip_blank(false)?;
        if self.cur.eat(')') {
            self.depth -= 1;
            Ok(value)
        } else if self.cur.at_end() {
            Err(self
                .cur
                .error_incomplete(start, SyntaxErrorKind::MissingClosingParen))
        } else {
            Err(self.unexpected_here())
        }
    }

    /// `@( item, item; item <newline> item )`, always a list; inner lists are flattened one level
    /// as PowerShell does (`@("a","b")` has two items).
    fn subexpression(&mut self) -> Result<Value, SyntaxError> {
        let start = self.cur.pos();
        self.cur.bump();
        self.cur.bump();
        self.enter(start)?;
        let mut items = Vec::new();
        loop {
            self.cur.skip_blank(true)?;
            if self.cur.eat(')') {
                self.depth -= 1;
                return Ok(Value::List(items));
            }
            if self.cur.at_end() {
                return Err(self
                    .cur
                    .error_incomplete(start, SyntaxErrorKind::MissingClosingSubexpressionParen));
            }
            if !self.at_value_start() && self.cur.peek() != Some(',') {
                return Err(self.unexpected_here());
            }
            match self.expr_or_unary_comma()? {
                Value::List(inner) => items.extend(inner),
                other => items.push(other),
            }
            self.cur.skip_inline_ws_and_comments()?;
            match self.cur.peek() {
                Some(')' | '\n' | ';') | None => {}
                Some(_) => return Err(self.unexpected_here()),
            }
        }
    }

    /// `@{ Key = value; 'Other Key' = a, b <newline> Third = $null }`.
    fn hashtable(&mut self) -> Result<Value, SyntaxError> {
        let start = self.cur.pos();
        self.cur.bump();
        self.cur.bump();
        self.enter(start)?;
        let unterminated =
            |cur: &Cursor| cur.error_incomplete(start, SyntaxErrorKind::MissingClosingBrace);
        let mut entries: Vec<(String, Value)> = Vec::new();
        let mut seen_keys = std::collections::HashSet::new();
        loop {
            self.cur.skip_blank(true)?;
            if self.cur.eat('}') {
                self.depth -= 1;
                return Ok(Value::Hashtable(entries));
            }
            if self.cur.at_end() {
                return Err(unterminated(&self.cur));
            }
            let key_pos = self.cur.pos();
            let key = self.cur.read_bare_word(true)?;
            if self.cur.pos() == key_pos {
                return Err(if self.cur.peek() == Some('=') {
                    self.cur
                        .error(key_pos, SyntaxErrorKind::MissingKeyInHashLiteral)
                } else {
                    self.unexpected_here()
                });
            }
            self.cur.skip_inline_ws_and_comments()?;
            if !self.cur.eat('=') {
                if self.cur.at_end() {
                    return Err(unterminated(&self.cur));
                }
                let pos = self.cur.pos();
                return Err(self
                    .cur
                    .error(pos, SyntaxErrorKind::MissingEqualsInHashLiteral));
            }
            let equals = self.cur.pos() - 1;
            self.cur.skip_blank(false)?;
            if !self.at_value_start() {
                return Err(self
                    .cur
                    .error(equals, SyntaxErrorKind::MissingValueInHashLiteral)
                    .incomplete(self.cur.at_end()));
            }
            let value = self.expr()?;
            if !seen_keys.insert(key.to_lowercase()) {
                return Err(self
                    .cur
                    .error(key_pos, SyntaxErrorKind::DuplicateHashKey(key)));
            }
            entries.push((key, value));
            self.cur.skip_inline_ws_and_comments()?;
            match self.cur.peek() {
                Some('}' | '\n' | ';') => {}
                None => return Err(unterminated(&self.cur)),
                Some(_) => return Err(self.unexpected_here()),
            }
        }
    }

    /// Parses the whole input as one value expression (surrounding whitespace allowed).
    /// `Ok(None)` when the input is not exactly one expression (e.g. `a b`, `-x`, empty).
    pub(crate) fn argv_value(&mut self) -> Result<Option<(Value, ListShape)>, SyntaxError> {
        self.cur.skip_inline_ws();
        if !self.at_value_start() || self.cur.at_parameter() {
            return Ok(None);
        }
        let value = self.expr()?;
        self.cur.skip_inline_ws();
        if self.cur.at_end() {
            Ok(Some((value, self.shape)))
        } else {
            Ok(None)
        }
    }
}
