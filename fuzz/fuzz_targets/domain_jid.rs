//! `domain_jid`: `fedgate_model::Domain::parse`, `fedgate_model::UserJid::parse` and
//! `fedgate_xmpp::Jid::parse` on arbitrary UTF-8. No panic, and a parsed value parsed again
//! from its `Display` form is the same value (normalisation is idempotent).
#![no_main]

use fedgate_model::{Domain, UserJid};
use fedgate_xmpp::Jid;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = Domain::parse(text) {
        let shown = format!("{d}");
        let again = Domain::parse(&shown);
        assert_eq!(again.as_ref().ok(), Some(&d), "{text:?} -> {d}");
    }
    if let Ok(u) = UserJid::parse(text) {
        let again = UserJid::parse(&u.to_string());
        assert_eq!(again.as_ref().ok(), Some(&u), "{text:?} -> {u}");
    }
    if let Ok(j) = Jid::parse(text) {
        let again = Jid::parse(&j.to_string());
        assert_eq!(again.as_ref().ok(), Some(&j), "{text:?} -> {j}");
        let _ = (j.bare(), j.local(), j.resource());
    }
});
