//! Character-level scanning: the [`Cursor`] over the (newline-normalised) input with line/column
//! tracking, character classes (including the typographic quotes and dashes PowerShell accepts,
//! which appear when runbooks are copied from documents and web pages), whitespace, line
//! continuation, comments, and the token readers for quoted strings, bare words, variables and
//! parameter names. The grammar that strings these together lives in [`crate::parser`].

use crate::error::{SyntaxError, SyntaxErrorKind};

/// `'` and the typographic single quotes PowerShell treats the same way (‘ ’ ‚ ‛).
pub(crate) fn is_single_quote(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}')
}

/// `"` and the typographic double quotes PowerShell treats the same way (“ ” „).
pub(crate) fn is_double_quote(c: char) -> bool {
    matches!(c, '"' | '\u{201C}' | '\u{201D}' | '\u{201E}')
}

/// `-` and the dashes PowerShell accepts in its place (en dash, em dash, horizontal bar).
pub(crate) fn is_dash(c: char) -> bool {
    matches!(c, '-' | '\u{2013}' | '\u{2014}' | '\u{2015}')
}

/// Whitespace that separates tokens but does not end a statement.
pub(crate) fn is_inline_space(c: char) -> bool {
    c != '\n' && c.is_whitespace()
}

/// Characters that may appear in a variable name (`$name`).
fn is_variable_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Characters that end a bare word in argument mode. In a hashtable key, `=` ends it too.
pub(crate) fn ends_bare_word(c: char, in_key: bool) -> bool {
    c.is_whitespace() || matches!(c, ',' | ';' | '|' | ')' | '}') || (in_key && c == '=')
}

/// The character a backtick escape stands for (`` `n `` is a newline, `` `x `` is `x`).
fn escaped_char(c: char) -> char {
    match c {
        '0' => '\0',
        'a' => '\u{7}',
        'b' => '\u{8}',
        'e' => '\u{1b}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\u{b}',
        other => other,
    }
}

/// A position-tracking cursor over the input characters.
pub(crate) struct Cursor {
    chars: Vec<char>,
    pos: usize,
    /// Index of the first character of each line.
    line_starts: Vec<usize>,
}

impl Cursor {
    /// A cursor over `text`, with `\r\n` and lone `\r` normalised to `\n`.
    pub(crate) fn new(text: &str) -> Self {
        let mut chars = Vec::with_capacity(text.len());
        let mut it = text.chars().peekable();
        while let Some(c) = it.next() {
            if c == '\r' {
                if it.peek() == Some(&'\n') {
                    it.next();
                }
                chars.push('\n');
            } else {
                chars.push(c);
            }
        }
        let mut line_starts = vec![0];
        line_starts.extend(
            chars
                .iter()
                .enumerate()
                .filter(|(_, c)| **c == '\n')
                .map(|(i, _)| i + 1),
        );
        Cursor {
            chars,
            pos: 0,
            line_starts,
        }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn set_pos(&mut self, pos: usize) {
        self.pos = pos.min(self.chars.len());
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    pub(crate) fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    pub(crate) fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    pub(crate) fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// Consumes `c` if it is next.
    pub(crate) fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// The text between two positions.
    pub(crate) fn slice(&self, from: usize, to: usize) -> String {
        let to = to.min(self.chars.len());
        let from = from.min(to);
        self.chars[from..to].iter().collect()
    }

    /// A short excerpt starting at `pos` for "unexpected token" messages.
    pub(crate) fn excerpt(&self, pos: usize) -> String {
        let start = pos.min(self.chars.len());
        let mut end = start;
        while end < self.chars.len() && end - start < 30 {
            let c = self.chars[end];
            if c.is_whitespace() || (end > start && matches!(c, ',' | ';' | '|' | ')' | '}')) {
                break;
            }
            end += 1;
        }
        self.slice(start, end)
    }

    /// 1-based line and column of a position.
    pub(crate) fn line_col(&self, pos: usize) -> (usize, usize) {
        let idx = self.line_starts.partition_point(|&start| start <= pos);
        let line = idx.max(1);
        let start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        (line, pos.saturating_sub(start) + 1)
    }

    /// A syntax error at a position.
    pub(crate) fn error(&self, pos: usize, kind: SyntaxErrorKind) -> SyntaxError {
        let (line, column) = self.line_col(pos);
        SyntaxError::at(line, column, kind)
    }

    /// A syntax error at a position that more input could have avoided.
    pub(crate) fn error_incomplete(&self, pos: usize, kind: SyntaxErrorKind) -> SyntaxError {
        self.error(pos, kind).incomplete(true)
    }

    /// True at a backtick that continues the line (followed by a newline or the end of input).
    pub(crate) fn at_continuation(&self) -> bool {
        self.peek() == Some('`') && matches!(self.peek_at(1), None | Some('\n'))
    }

    /// Skips spaces, tabs and line continuations (never a newline that ends a statement).
    pub(crate) fn skip_inline_ws(&mut self) {
        loop {
            match self.peek() {
                Some(c) if is_inline_space(c) => self.pos += 1,
                Some('`') if self.at_continuation() => {
                    self.pos = (self.pos + 2).min(self.chars.len())
                }
                _ => return,
            }
        }
    }

    /// Skips a `# line comment` (up to, not including, the newline) or a `<# block comment #>`.
    /// Returns whether a comment was skipped.
    pub(crate) fn skip_comment(&mut self) -> Result<bool, SyntaxError> {
        match (self.peek(), self.peek_at(1)) {
            (Some('#'), _) => {
                while let Some(c) = self.peek() {
                    if c == '\n' {
                        break;
                    }
                    self.pos += 1;
                }
                Ok(true)
            }
            (Some('<'), Some('#')) => {
                let start = self.pos;
                self.pos += 2;
                loop {
                    match self.bump() {
                        None => {
                            return Err(self
                                .error_incomplete(start, SyntaxErrorKind::MissingBlockCommentEnd));
                        }
                        Some('#') if self.peek() == Some('>') => {
                            self.pos += 1;
                            return Ok(true);
                        }
                        Some(_) => {}
                    }
                }
            }
            _ => Ok(false),
        }
    }

    /// Skips inline whitespace and comments (but not newlines).
    pub(crate) fn skip_inline_ws_and_comments(&mut self) -> Result<(), SyntaxError> {
        loop {
            self.skip_inline_ws();
            if !self.skip_comment()? {
                return Ok(());
            }
        }
    }

    /// Skips whitespace, newlines and comments, and `;` too when `semicolons` is set.
    pub(crate) fn skip_blank(&mut self, semicolons: bool) -> Result<(), SyntaxError> {
        loop {
            self.skip_inline_ws_and_comments()?;
            match self.peek() {
                Some('\n') => self.pos += 1,
                Some(';') if semicolons => self.pos += 1,
                _ => return Ok(()),
            }
        }
    }

    /// Reads a single-quoted string starting at its opening quote: literal text, `''` is a quote.
    pub(crate) fn read_single_quoted(&mut self, out: &mut String) -> Result<(), SyntaxError> {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.bump() {
                None => {
                    return Err(self
                        .error_incomplete(start, SyntaxErrorKind::MissingStringTerminator('\'')));
                }
                Some(c) if is_single_quote(c) => match self.peek() {
                    Some(next) if is_single_quote(next) => {
                        self.pos += 1;
                        out.push(next);
                    }
                    _ => return Ok(()),
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// Reads a double-quoted string starting at its opening quote: backtick escapes, `""` is a
    /// quote, `$` is literal (no variable expansion).
    pub(crate) fn read_double_quoted(&mut self, out: &mut String) -> Result<(), SyntaxError> {
        let start = self.pos;
        self.pos += 1;
        let unterminated =
            |cur: &Self| cur.error_incomplete(start, SyntaxErrorKind::MissingStringTerminator('"'));
        loop {
            match self.bump() {
                None => return Err(unterminated(self)),
                Some('`') => match self.bump() {
                    None => return Err(unterminated(self)),
                    Some(c) => self.push_escape(c, out),
                },
                Some(c) if is_double_quote(c) => match self.peek() {
                    Some(next) if is_double_quote(next) => {
                        self.pos += 1;
                        out.push(next);
                    }
                    _ => return Ok(()),
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// Appends the meaning of `` `c `` (the backtick already consumed, `c` too); handles `` `u{XXXX} ``.
    fn push_escape(&mut self, c: char, out: &mut String) {
        if c == 'u' && self.peek() == Some('{') {
            let save = self.pos;
            self.pos += 1;
            let digits_start = self.pos;
            while self.peek().is_some_and(|d| d.is_ascii_hexdigit()) {
                self.pos += 1;
            }
            let digits = self.slice(digits_start, self.pos);
            if (1..=6).contains(&digits.len()) && self.eat('}') {
                if let Some(ch) = u32::from_str_radix(&digits, 16)
                    .ok()
                    .and_then(char::from_u32)
                {
                    out.push(ch);
                    return;
                }
            }
            self.pos = save;
        }
        out.push(escaped_char(c));
    }

    /// Reads a bare word (argument mode), which may have quoted parts glued to it
    /// (`a"b c"` is `ab c`). Stops before whitespace, `,`, `;`, `|`, `)`, `}` (and `=` in a
    /// hashtable key) and before a line continuation. May return an empty string when the
    /// cursor is already at such a character.
    pub(crate) fn read_bare_word(&mut self, in_key: bool) -> Result<String, SyntaxError> {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if ends_bare_word(c, in_key) || self.at_continuation() {
                break;
            }
            if is_single_quote(c) {
                self.read_single_quoted(&mut out)?;
            } else if is_double_quote(c) {
                self.read_double_quoted(&mut out)?;
            } else if c == '`' {
                self.pos += 1;
                if let Some(e) = self.bump() {
                    self.push_escape(e, &mut out);
                }
            } else {
                self.pos += 1;
                out.push(c);
            }
        }
        Ok(out)
    }

    /// True where a bare word would end (see [`ends_bare_word`]), at a line continuation, or at the end.
    pub(crate) fn at_word_end(&self, in_key: bool) -> bool {
        match self.peek() {
            None => true,
            Some(c) => ends_bare_word(c, in_key) || self.at_continuation(),
        }
    }

    /// At a `$`: reads `$name`, `$scope:name`, `$?` or `${any name}` and returns the name.
    /// Returns `None` (cursor unchanged) when the `$` does not start a variable.
    pub(crate) fn read_variable(&mut self) -> Result<Option<String>, SyntaxError> {
        let start = self.pos;
        if self.peek() != Some('$') {
            return Ok(None);
        }
        match self.peek_at(1) {
            Some('{') => {
                self.pos += 2;
                let name_start = self.pos;
                while let Some(c) = self.peek() {
                    if c == '}' {
                        let name = self.slice(name_start, self.pos);
                        self.pos += 1;
                        return Ok(Some(name));
                    }
                    self.pos += 1;
                }
                Err(self.error_incomplete(start, SyntaxErrorKind::MissingClosingBrace))
            }
            Some('?') => {
                self.pos += 2;
                Ok(Some("?".to_string()))
            }
            Some(c) if is_variable_char(c) => {
                self.pos += 1;
                let name_start = self.pos;
                let mut scoped = false;
                while let Some(c) = self.peek() {
                    if is_variable_char(c) {
                        self.pos += 1;
                    } else if c == ':' && !scoped && self.peek_at(1).is_some_and(is_variable_char) {
                        scoped = true;
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                Ok(Some(self.slice(name_start, self.pos)))
            }
            _ => Ok(None),
        }
    }

    /// True at a parameter token: a dash followed by a letter.
    pub(crate) fn at_parameter(&self) -> bool {
        self.peek().is_some_and(is_dash) && self.peek_at(1).is_some_and(char::is_alphabetic)
    }

    /// At a parameter token (see [`Cursor::at_parameter`]): reads the name after the dash and
    /// consumes a following `:`. Returns the name and whether a colon was attached.
    pub(crate) fn read_parameter(&mut self) -> (String, bool) {
        self.pos += 1;
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == ':'
                || ends_bare_word(c, false)
                || is_single_quote(c)
                || is_double_quote(c)
                || matches!(c, '(' | '{' | '`')
            {
                break;
            }
            self.pos += 1;
        }
        let name = self.slice(start, self.pos);
        let colon = self.eat(':');
        (name, colon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_tracks_lines() {
        let c = Cursor::new("ab\r\ncd\ref");
        assert_eq!(c.line_col(0), (1, 1));
        assert_eq!(c.line_col(1), (1, 2));
        assert_eq!(c.line_col(3), (2, 1));
        assert_eq!(c.line_col(6), (3, 1));
        assert_eq!(c.line_col(8), (3, 3));
    }

    #[test]
    fn quoted_strings() {
        let mut out = String::new();
        let mut c = Cursor::new("'it''s $x'rest");
        c.read_single_quoted(&mut out).unwrap();
        assert_eq!(out, "it's $x");
        assert_eq!(c.peek(), Some('r'));

        let mut out = String::new();
        let mut c = Cursor::new(r#""a`"b""c`$d`n`t``e`u{e9}$f""#);
        c.read_double_quoted(&mut out).unwrap();
        assert_eq!(out, "a\"b\"c$d\n\t`e\u{e9}$f");
        assert!(c.at_end());
    }

    #[test]
    fn typographic_quotes_and_dashes() {
        let mut out = String::new();
        let mut c = Cursor::new("\u{201C}contoso.com\u{201D}");
        c.read_double_quoted(&mut out).unwrap();
        assert_eq!(out, "contoso.com");
        let mut out = String::new();
        let mut c = Cursor::new("\u{2018}x\u{2019}");
        c.read_single_quoted(&mut out).unwrap();
        assert_eq!(out, "x");
        let c = Cursor::new("\u{2013}Identity");
        assert!(c.at_parameter());
    }

    #[test]
    fn bare_words_glue_quotes_and_stop_at_terminators() {
        let mut c = Cursor::new("a\"b c\"'d'e,f");
        assert_eq!(c.read_bare_word(false).unwrap(), "ab cde");
        assert_eq!(c.peek(), Some(','));
        let mut c = Cursor::new("Add=x");
        assert_eq!(c.read_bare_word(true).unwrap(), "Add");
        let mut c = Cursor::new("Add=x");
        assert_eq!(c.read_bare_word(false).unwrap(), "Add=x");
        let mut c = Cursor::new("x#1 y");
        assert_eq!(c.read_bare_word(false).unwrap(), "x#1");
        let mut c = Cursor::new("a`\nb");
        assert_eq!(c.read_bare_word(false).unwrap(), "a");
        let mut c = Cursor::new("a` b");
        assert_eq!(c.read_bare_word(false).unwrap(), "a b");
    }

    #[test]
    fn variables() {
        let mut c = Cursor::new("$abc.Prop");
        assert_eq!(c.read_variable().unwrap().as_deref(), Some("abc"));
        assert_eq!(c.peek(), Some('.'));
        let mut c = Cursor::new("$env:USER x");
        assert_eq!(c.read_variable().unwrap().as_deref(), Some("env:USER"));
        let mut c = Cursor::new("${a b}");
        assert_eq!(c.read_variable().unwrap().as_deref(), Some("a b"));
        let mut c = Cursor::new("$ x");
        assert_eq!(c.read_variable().unwrap(), None);
        assert_eq!(c.pos(), 0);
        let mut c = Cursor::new("${ab");
        assert!(c.read_variable().is_err());
    }

    #[test]
    fn comments_and_continuations() {
        let mut c = Cursor::new("  `\n  # hi\nx");
        c.skip_inline_ws_and_comments().unwrap();
        assert_eq!(c.peek(), Some('\n'));
        let mut c = Cursor::new("<# a\n b #> x");
        c.skip_inline_ws_and_comments().unwrap();
        assert_eq!(c.peek(), Some('x'));
        let mut c = Cursor::new("<# a");
        let e = c.skip_comment().unwrap_err();
        assert_eq!(e.kind, SyntaxErrorKind::MissingBlockCommentEnd);
        assert!(e.is_incomplete());
    }
}
