//! `fedgate export --format clixml|csv|json [--output-file FILE]`: the partner list as the Skype
//! for Business shell would have exported it ([`fedgate_manage::formats`]), on standard output or
//! into a file. (`fedgate import` is the cmdlet Import-CsXmppAllowedPartner, run by the engine.)

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use fedgate_manage::Manager;
use fedgate_manage::formats::Format;

pub fn run(manager: &Manager<'_>, format: Format, output_file: Option<&Path>) -> ExitCode {
    let text = match manager.export_partners(format) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("fedgate export: {e}");
            return ExitCode::from(1);
        }
    };
    let written = match output_file {
        Some(path) => std::fs::write(path, text.as_bytes())
            .map_err(|e| format!("cannot write '{}': {e}", path.display())),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| format!("cannot write to standard output: {e}"))
        }
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fedgate export: {message}");
            ExitCode::from(1)
        }
    }
}
