//! `pwsh`: the PowerShell lexer, parser and parameter binder of `fedgate-pwsh` on arbitrary
//! UTF-8: `parse_script`, then every command bound against a cmdlet spec; `parse_argv` on the
//! text split at spaces. No panic.
#![no_main]

use fedgate_pwsh::{
    CmdletSpec, ParamSpec, Statement, bind, is_cmdlet_name, parse_argv, parse_script,
};
use libfuzzer_sys::fuzz_target;

const SPEC: CmdletSpec = CmdletSpec {
    name: "New-CsXmppAllowedPartner",
    params: &[
        ParamSpec::value("Identity", "System.String").at(0),
        ParamSpec::value("PartnerType", "System.String"),
        ParamSpec::value(
            "AdditionalDomains",
            "System.Collections.Generic.List[string]",
        ),
        ParamSpec::value("ConnectionLimit", "System.UInt32").at(1),
        ParamSpec::switch("Force"),
        ParamSpec::switch("Enabled"),
    ],
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(statements) = parse_script(text) {
        for s in &statements {
            let _ = s.line();
            let commands = match s {
                Statement::Pipeline { commands, .. }
                | Statement::AssignPipeline { commands, .. } => commands.as_slice(),
                _ => &[],
            };
            for c in commands {
                let _ = is_cmdlet_name(&c.name);
                let _ = bind(c, &SPEC);
            }
        }
    }
    let argv: Vec<String> = text.split(' ').map(str::to_owned).collect();
    if let Ok(Statement::Pipeline { commands, .. }) = parse_argv(&argv) {
        for c in &commands {
            let _ = bind(c, &SPEC);
        }
    }
});
