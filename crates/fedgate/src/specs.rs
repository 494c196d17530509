//! The cmdlets fedgate understands and their parameters, as PowerShell would bind them; the
//! settable fields come from `fedgate_manage::fields`.

use fedgate_manage::fields;
use fedgate_pwsh::{CmdletSpec, ParamSpec};

const STRING: &str = fields::STRING;
const OBJECT: &str = "System.Management.Automation.PSObject";

/// The binder's parameters for the settable fields of a table.
const fn field_params<const N: usize>(table: &[fields::Field; N]) -> [ParamSpec; N] {
    let mut out = [WHATIF; N];
    let mut i = 0;
    while i < N {
        out[i] = ParamSpec::value(table[i].name, table[i].type_name);
        i += 1;
    }
    out
}

const PARTNER_FIELDS: [ParamSpec; fields::PARTNER_FIELDS.len()] =
    field_params(&fields::PARTNER_FIELDS);
const POLICY_FIELDS: [ParamSpec; fields::POLICY_FIELDS.len()] =
    field_params(&fields::POLICY_FIELDS);
const GATEWAY_FIELDS: [ParamSpec; fields::GATEWAY_FIELDS.len()] =
    field_params(&fields::GATEWAY_FIELDS);

const WHATIF: ParamSpec = ParamSpec::switch("WhatIf");
const CONFIRM: ParamSpec = ParamSpec::switch("Confirm");
const FORCE: ParamSpec = ParamSpec::switch("Force");
const IN_MEMORY: ParamSpec = ParamSpec::switch("InMemory");
const LOCAL_STORE: ParamSpec = ParamSpec::switch("LocalStore");
const FILTER: ParamSpec = ParamSpec::value("Filter", STRING);
const INSTANCE: ParamSpec = ParamSpec::value("Instance", OBJECT);

macro_rules! params {
    ($($head:expr),* ; $fields:expr ; $($tail:expr),*) => {{
        const N: usize = [$($head),*].len() + $fields.len() + [$($tail),*].len();
        const fn build() -> [ParamSpec; N] {
            let head = [$($head),*];
            let tail = [$($tail),*];
            let mut out = [WHATIF; N];
            let mut i = 0;
            while i < head.len() { out[i] = head[i]; i += 1; }
            let mut j = 0;
            while j < $fields.len() { out[i + j] = $fields[j]; j += 1; }
            let mut k = 0;
            while k < tail.len() { out[i + j + k] = tail[k]; k += 1; }
            out
        }
        &build()
    }};
}

pub const NEW_PARTNER: CmdletSpec = CmdletSpec {
    name: "New-CsXmppAllowedPartner",
    params: params!(ParamSpec::value("Identity", "XdsGlobalRelativeIdentity").at(0), ParamSpec::value("Domain", STRING); PARTNER_FIELDS; IN_MEMORY, WHATIF, CONFIRM, FORCE),
};
pub const GET_PARTNER: CmdletSpec = CmdletSpec {
    name: "Get-CsXmppAllowedPartner",
    params: &[
        ParamSpec::value("Identity", "XdsGlobalRelativeIdentity").at(0),
        FILTER,
        LOCAL_STORE,
    ],
};
pub const SET_PARTNER: CmdletSpec = CmdletSpec {
    name: "Set-CsXmppAllowedPartner",
    params: params!(ParamSpec::value("Identity", "XdsGlobalRelativeIdentity").at(0), INSTANCE; PARTNER_FIELDS; WHATIF, CONFIRM, FORCE),
};
pub const REMOVE_PARTNER: CmdletSpec = CmdletSpec {
    name: "Remove-CsXmppAllowedPartner",
    params: &[
        ParamSpec::value("Identity", "XdsGlobalRelativeIdentity").at(0),
        FORCE,
        WHATIF,
        CONFIRM,
    ],
};
pub const TEST_PARTNER: CmdletSpec = CmdletSpec {
    name: "Test-CsXmppAllowedPartner",
    params: &[
        ParamSpec::value("Identity", "XdsGlobalRelativeIdentity").at(0),
        ParamSpec::value("Domain", STRING),
        ParamSpec::value("From", STRING),
    ],
};
pub const TEST_GATEWAY: CmdletSpec = CmdletSpec {
    name: "Test-CsXmppGatewayConfiguration",
    params: &[ParamSpec::value("Domain", STRING).at(0)],
};
pub const NEW_POLICY: CmdletSpec = CmdletSpec {
    name: "New-CsExternalAccessPolicy",
    params: params!(ParamSpec::value("Identity", "XdsIdentity").at(0); POLICY_FIELDS; IN_MEMORY, WHATIF, CONFIRM, FORCE),
};
pub const GET_POLICY: CmdletSpec = CmdletSpec {
    name: "Get-CsExternalAccessPolicy",
    params: &[
        ParamSpec::value("Identity", "XdsIdentity").at(0),
        FILTER,
        LOCAL_STORE,
    ],
};
pub const SET_POLICY: CmdletSpec = CmdletSpec {
    name: "Set-CsExternalAccessPolicy",
    params: params!(ParamSpec::value("Identity", "XdsIdentity").at(0), INSTANCE; POLICY_FIELDS; WHATIF, CONFIRM, FORCE),
};
pub const REMOVE_POLICY: CmdletSpec = CmdletSpec {
    name: "Remove-CsExternalAccessPolicy",
    params: &[
        ParamSpec::value("Identity", "XdsIdentity").at(0),
        FORCE,
        WHATIF,
        CONFIRM,
    ],
};
pub const GRANT_POLICY: CmdletSpec = CmdletSpec {
    name: "Grant-CsExternalAccessPolicy",
    params: &[
        ParamSpec::value("Identity", "UserIdParameter").at(0),
        ParamSpec::value("PolicyName", "PolicyName").at(1),
        ParamSpec::switch("PassThru"),
        FORCE,
        WHATIF,
        CONFIRM,
    ],
};
pub const GET_GATEWAY: CmdletSpec = CmdletSpec {
    name: "Get-CsXmppGatewayConfiguration",
    params: &[
        ParamSpec::value("Identity", "XdsIdentity").at(0),
        LOCAL_STORE,
    ],
};
pub const SET_GATEWAY: CmdletSpec = CmdletSpec {
    name: "Set-CsXmppGatewayConfiguration",
    params: params!(ParamSpec::value("Identity", "XdsIdentity").at(0), INSTANCE; GATEWAY_FIELDS; WHATIF, CONFIRM, FORCE),
};

pub const IMPORT_PARTNER: CmdletSpec = CmdletSpec {
    name: "Import-CsXmppAllowedPartner",
    params: &[
        ParamSpec::value("Path", STRING).at(0),
        FORCE,
        WHATIF,
        CONFIRM,
    ],
};

/// Every cmdlet, for lookup by name and for help.
pub const ALL: [&CmdletSpec; 14] = [
    &NEW_PARTNER,
    &GET_PARTNER,
    &SET_PARTNER,
    &REMOVE_PARTNER,
    &TEST_PARTNER,
    &NEW_POLICY,
    &GET_POLICY,
    &SET_POLICY,
    &REMOVE_POLICY,
    &GRANT_POLICY,
    &GET_GATEWAY,
    &SET_GATEWAY,
    &TEST_GATEWAY,
    &IMPORT_PARTNER,
];

/// The spec of a cmdlet, by name without case.
pub fn find(name: &str) -> Option<&'static CmdletSpec> {
    ALL.iter()
        .copied()
        .find(|s| s.name.eq_ignore_ascii_case(name))
}

/// The names of the settable fields of a spec (what binds into the model's changes).
pub fn is_field(spec: &CmdletSpec, name: &str) -> bool {
    let fields: &[ParamSpec] = match spec.name {
        "New-CsXmppAllowedPartner" | "Set-CsXmppAllowedPartner" => &PARTNER_FIELDS,
        "New-CsExternalAccessPolicy" | "Set-CsExternalAccessPolicy" => &POLICY_FIELDS,
        "Set-CsXmppGatewayConfiguration" => &GATEWAY_FIELDS,
        _ => &[],
    };
    fields.iter().any(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_complete_and_unique() {
        for spec in ALL {
            let mut names: Vec<&str> = spec.params.iter().map(|p| p.name).collect();
            names.sort();
            let n = names.len();
            names.dedup();
            assert_eq!(n, names.len(), "{} has duplicate parameters", spec.name);
        }
        assert_eq!(
            NEW_PARTNER.params.len(),
            2 + fields::PARTNER_FIELDS.len() + 4
        );
        assert!(find("new-csxmppallowedpartner").is_some());
        assert!(is_field(&SET_PARTNER, "PartnerType") && !is_field(&SET_PARTNER, "Identity"));
    }
}
