//! Running statements for an admin: one-shot cmdlets, `fedgate shell` (interactive, with history)
//! and `fedgate run script.ps1`. Errors are printed as PowerShell prints them; a script goes on
//! after a failed statement unless it said `-ErrorAction Stop`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use fedgate_pwsh::{Statement, parse_script};

use crate::binder::Invocation;
use crate::engine::{CliError, Prompt, Session};
use crate::output::{OutputFormat, print_reply};

/// `-Confirm` answered on stdin: empty or `y`/`yes` is yes (PowerShell's default), end of input is no.
pub struct StdinPrompt;

impl Prompt for StdinPrompt {
    fn confirm(&mut self, question: &str) -> bool {
        eprint!("{question}");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        match std::io::stdin().lock().read_line(&mut answer) {
            Ok(0) | Err(_) => {
                eprintln!();
                false
            }
            Ok(_) => matches!(
                answer.trim().to_ascii_lowercase().as_str(),
                "" | "y" | "yes"
            ),
        }
    }
}

/// Runs statements and prints their results; remembers the first failure's exit code.
pub struct Runner<'a> {
    pub session: Session<'a>,
    pub format: OutputFormat,
    exit_code: i32,
}

impl<'a> Runner<'a> {
    pub fn new(session: Session<'a>, format: OutputFormat) -> Self {
        Runner {
            session,
            format,
            exit_code: 0,
        }
    }

    /// 0 when every statement succeeded, else the exit code of the first failure.
    pub fn exit_code(&self) -> i32 {
        self.exit_code
    }

    /// Run one statement; returns false when the script should stop.
    pub fn run(&mut self, statement: &Statement, origin: Option<&str>) -> bool {
        match self.session.run_statement(statement) {
            Ok(reply) => {
                print_reply(&reply, self.format);
                let _ = self.session.take_stop_requested();
                true
            }
            Err(e) => {
                self.report(&e, origin.map(|o| (o, statement.line())));
                !self.session.take_stop_requested()
            }
        }
    }

    /// Run one request built outside the shell (the idiomatic subcommands).
    pub fn run_invocation(&mut self, invocation: Invocation) {
        match self.session.run(invocation) {
            Ok(reply) => print_reply(&reply, self.format),
            Err(e) => self.report(&e, None),
        }
    }

    pub fn report(&mut self, error: &CliError, at: Option<(&str, usize)>) {
        eprintln!("{error}");
        if let Some((origin, line)) = at {
            eprintln!("At {origin}:{line}");
        }
        if self.exit_code == 0 {
            self.exit_code = error.exit_code();
        }
    }

    /// Parse a whole script first (nothing runs if it has a syntax error), then run it.
    pub fn run_script(&mut self, text: &str, origin: &str) {
        let statements = match parse_script(text) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{origin}: {e}");
                self.exit_code = 2;
                return;
            }
        };
        for statement in &statements {
            if !self.run(statement, Some(origin)) {
                break;
            }
        }
    }

    /// `fedgate run <file>`.
    pub fn run_file(&mut self, path: &Path) {
        match std::fs::read_to_string(path) {
            Ok(text) => self.run_script(&text, &path.display().to_string()),
            Err(e) => {
                eprintln!("Cannot read the script '{}': {e}", path.display());
                self.exit_code = 1;
            }
        }
    }

    /// `fedgate shell`: interactive with line editing and history on a terminal, else a script on stdin.
    pub fn interactive(&mut self) {
        if !std::io::stdin().is_terminal() {
            let mut text = String::new();
            if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
                eprintln!("Cannot read standard input: {e}");
                self.exit_code = 1;
                return;
            }
            self.run_script(&text, "stdin");
            return;
        }
        let mut editor = match rustyline::DefaultEditor::new() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("Cannot start the line editor: {e}");
                self.exit_code = 1;
                return;
            }
        };
        let history = std::env::var_os("HOME").map(|h| Path::new(&h).join(".fedgate_history"));
        if let Some(h) = &history {
            let _ = editor.load_history(h);
        }
        eprintln!("fedgate shell: type cmdlets such as Get-CsXmppAllowedPartner; 'exit' to leave.");
        let mut pending = String::new();
        loop {
            let prompt = if pending.is_empty() {
                "fedgate> "
            } else {
                ">> "
            };
            let line = match editor.readline(prompt) {
                Ok(line) => line,
                Err(rustyline::error::ReadlineError::Interrupted) => {
                    pending.clear();
                    continue;
                }
                Err(_) => break,
            };
            if pending.is_empty()
                && matches!(line.trim().to_ascii_lowercase().as_str(), "exit" | "quit")
            {
                break;
            }
            pending.push_str(&line);
            pending.push('\n');
            // A trailing backtick continues the command on the next line, as in PowerShell.
            if line.trim_end().ends_with('`') {
                continue;
            }
            match parse_script(&pending) {
                Err(e) if e.is_incomplete() => continue,
                Err(e) => {
                    eprintln!("{e}");
                }
                Ok(statements) => {
                    for s in &statements {
                        // Interactive: errors never end the session.
                        let _ = self.run(s, None);
                    }
                }
            }
            let _ = editor.add_history_entry(pending.trim_end());
            pending.clear();
        }
        if let Some(h) = &history {
            let _ = editor.save_history(h);
        }
        // The shell's own exit status is success; errors were shown as they happened.
        self.exit_code = 0;
    }
}
