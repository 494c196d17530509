//! `clixml`: the import readers of `fedgate-manage` on arbitrary bytes — byte order marks, format
//! detection, the CliXML reader (RefId/TNRef tables, nesting limits), CSV and JSON. No panic; the
//! MS-PSRP string escapes round-trip.
#![no_main]

use fedgate_manage::formats::{self, clixml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = formats::read(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = clixml::read(text);
    let _ = clixml::decode_string(text);
    // Without XML's own escapes (which the XML parser undoes), encode then decode is the identity.
    if !text.contains(['&', '<', '>', '"']) {
        assert_eq!(clixml::decode_string(&clixml::encode_string(text)), text);
    }
});
