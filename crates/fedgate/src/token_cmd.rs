//! `fedgate token create|list|revoke`: REST API tokens. The token text is printed once, at
//! creation, and stored only as a hash (see `fedgate_manage::tokens`).

use std::process::ExitCode;

use fedgate_manage::tokens;
use fedgate_store::{Store, TokenInfo};
use serde_json::{Value, json};

use crate::cli::TokenAction;
use crate::output::{OutputFormat, format_list};

pub fn run(store: &dyn Store, action: TokenAction, format: OutputFormat) -> ExitCode {
    let actor = crate::actor();
    let is_listing = matches!(action, TokenAction::List);
    let result = match action {
        TokenAction::Create { name, role } => tokens::parse_role(&role)
            .map_err(Into::into)
            .and_then(|role| tokens::create(store, &name, role, &actor))
            .map(|(info, token)| {
                let mut object = info_json(&info);
                object["Token"] = Value::String(token);
                eprintln!(
                    "Keep this token now: it is stored only as a hash and cannot be shown again."
                );
                vec![object]
            }),
        TokenAction::List => store
            .tokens()
            .map(|all| all.iter().map(info_json).collect())
            .map_err(Into::into),
        TokenAction::Revoke { name } => {
            tokens::revoke(store, &name, &actor).map(|info| vec![info_json(&info)])
        }
    };
    match result {
        Ok(objects) => {
            match format {
                // As the cmdlets: a listing is a JSON array, a change one object.
                OutputFormat::Json if is_listing => println!("{}", Value::Array(objects)),
                OutputFormat::Json => objects.iter().for_each(|o| println!("{o}")),
                OutputFormat::List => {
                    let blocks: Vec<String> = objects.iter().map(format_list).collect();
                    print!("{}", blocks.join("\n"));
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            // A bad value is a usage error (2), as for the cmdlets; anything else 1.
            let usage = matches!(e, fedgate_manage::ManageError::Invalid(_));
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn info_json(info: &TokenInfo) -> Value {
    json!({"Name": info.name, "Role": info.role.name(), "Created": info.created})
}
