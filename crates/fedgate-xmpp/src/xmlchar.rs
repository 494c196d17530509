//! XML 1.0 (5th edition) character classes: `Char`, `NameStartChar`, `NameChar`, and the
//! namespace-aware `NCName` / `QName` checks used by the tokenizer.

/// XML 1.0 `Char` production.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// XML whitespace (`S` production).
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_name_start(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// For each ASCII byte, whether it may appear in a (qualified) name (`NameChar` or `:`); the
/// lexer's fast path, which falls back to [`is_name_char_or_colon`] at the first non-ASCII byte.
pub(crate) static ASCII_NAME_CHAR: [bool; 128] = {
    let mut t = [false; 128];
    let mut c = 0;
    while c < 128 {
        t[c] =
            matches!(c as u8, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b':');
        c += 1;
    }
    t
};

/// Whether `c` may appear in a (qualified) name at all; used to delimit names while lexing.
pub(crate) fn is_name_char_or_colon(c: char) -> bool {
    c == ':' || is_name_char(c)
}

/// Namespaces in XML `NCName` (a Name without colons).
pub(crate) fn is_ncname(s: &str) -> bool {
    // ASCII names (nearly all) byte by byte from the table.
    let b = s.as_bytes();
    if b.is_ascii() {
        return match b.split_first() {
            Some((c, rest)) => {
                (c.is_ascii_alphabetic() || *c == b'_')
                    && rest
                        .iter()
                        .all(|c| *c != b':' && ASCII_NAME_CHAR[*c as usize])
            }
            None => false,
        };
    }
    let mut it = s.chars();
    match it.next() {
        Some(c) if is_name_start(c) => it.all(is_name_char),
        _ => false,
    }
}

/// Split a `QName` into (prefix, local); `None` when it is not a valid QName.
pub(crate) fn split_qname(s: &str) -> Option<(Option<&str>, &str)> {
    // ASCII names (nearly all) in one pass over their bytes, from the name table.
    let b = s.as_bytes();
    let mut colon = None;
    let mut ascii = true;
    for (i, c) in b.iter().enumerate() {
        if *c >= 0x80 {
            ascii = false;
            break;
        }
        if *c == b':' {
            if colon.is_some() {
                return None;
            }
            colon = Some(i);
        } else if !ASCII_NAME_CHAR[*c as usize] {
            return None;
        }
    }
    if ascii {
        let starts = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_');
        return match colon {
            None => starts(b.first()).then_some((None, s)),
            Some(k) => {
                if !(starts(b.first()) && starts(b.get(k + 1))) {
                    return None;
                }
                Some((s.get(..k), s.get(k + 1..)?))
            }
        };
    }
    match s.split_once(':') {
        None => is_ncname(s).then_some((None, s)),
        Some((p, l)) => (is_ncname(p) && is_ncname(l)).then_some((Some(p), l)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ascii_table_agrees_with_the_classes() {
        for b in 0u8..128 {
            assert_eq!(
                ASCII_NAME_CHAR[b as usize],
                is_name_char_or_colon(b as char),
                "{b}"
            );
        }
    }

    #[test]
    fn ascii_ncnames_agree_with_the_classes() {
        for a in 0u8..128 {
            for b in [b'a', b'9', b':', b'-', b' '] {
                let s = String::from_utf8(vec![a, b]).unwrap_or_default();
                let by_chars = {
                    let mut it = s.chars();
                    it.next().is_some_and(is_name_start) && it.all(is_name_char)
                };
                assert_eq!(is_ncname(&s), by_chars, "{s:?}");
            }
        }
    }

    #[test]
    fn ascii_qnames_agree_with_the_classes() {
        let parts = ["", "a", "_", "9", "-", "a9", "a-b", "ab.", "\u{e9}"];
        for p in parts {
            for l in parts {
                for s in [format!("{p}:{l}"), format!("{p}{l}"), format!("{p}:{l}:a")] {
                    let by_chars = match s.split_once(':') {
                        None => is_ncname(&s).then_some((None, s.as_str())),
                        Some((p, l)) => (is_ncname(p) && is_ncname(l)).then_some((Some(p), l)),
                    };
                    assert_eq!(split_qname(&s), by_chars, "{s:?}");
                }
            }
        }
    }

    #[test]
    fn classes() {
        assert!(is_xml_char('\t') && !is_xml_char('\u{0}') && !is_xml_char('\u{FFFE}'));
        assert!(is_ncname("message") && is_ncname("_a-b.c9") && is_ncname("ñ"));
        assert!(!is_ncname("9a") && !is_ncname("") && !is_ncname("a:b") && !is_ncname("-a"));
        assert_eq!(split_qname("db:result"), Some((Some("db"), "result")));
        assert_eq!(split_qname("body"), Some((None, "body")));
        assert_eq!(split_qname("a:b:c"), None);
        assert_eq!(split_qname(":b"), None);
        assert_eq!(split_qname("a:"), None);
    }
}
