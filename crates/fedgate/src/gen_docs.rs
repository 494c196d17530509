//! The man pages and shell completions, generated from the clap definition in `cli.rs` (the one
//! source of truth for the command line): `fedgate generate-man <DIR>` writes `fedgate.1` and a
//! page per subcommand (`fedgate-partner.1`, `fedgate-partner-add.1`, …);
//! `fedgate generate-completions <SHELL>` prints the completion script for bash, zsh, fish,
//! elvish or powershell. Both are hidden: `scripts/build-deb.sh` calls them to fill the package.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Write the man pages into `dir` (created if missing).
pub fn man(dir: &Path) -> ExitCode {
    let result =
        std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(Cli::command(), dir));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("generate-man: {}: {e}", dir.display());
            ExitCode::from(1)
        }
    }
}

/// Print the completion script for `shell` on standard output.
pub fn completions(shell: Shell) -> ExitCode {
    // Rendered first, then written: clap_complete panics on a write error (e.g. a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "fedgate", &mut script);
    let mut out = std::io::stdout().lock();
    match out.write_all(&script).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("generate-completions: {e}");
            ExitCode::from(1)
        }
    }
}
