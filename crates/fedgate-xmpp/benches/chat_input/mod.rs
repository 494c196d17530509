//! The input of the codec bench and of `examples/codec_count.rs` (one copy for both): a stream
//! header and 1 KiB `<message/>` stanzas between users, with an escaped `&` and a non-ASCII
//! character in every body (or, [`stanzas_unescaped`], the same without the `&`: nothing in
//! them needs decoding; or, [`stanzas_utf8`], bodies of German, Russian and Chinese text, mostly
//! multi-byte characters, nothing to decode).

pub const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
    xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
    from='partner.example' to='corp.example' id='s1' version='1.0'>";
pub const STANZAS: usize = 256;

/// One message stanza of exactly 1024 bytes.
pub fn stanza(i: usize) -> String {
    stanza_with(i, "&amp; ")
}

/// One message stanza of exactly 1024 bytes, with `amp` as the fourth word of its body.
fn stanza_with(i: usize, amp: &'static str) -> String {
    stanza_words(
        i,
        &["Wherefore ", "art ", "thou ", amp, "Romeo? ", "caf\u{e9} "],
    )
}

/// One message stanza of exactly 1024 bytes, its body `words` repeated, then `.` up to the size.
fn stanza_words(i: usize, words: &[&str]) -> String {
    let head = format!(
        "<message from='romeo{i}@partner.example/orchard' to='juliet@corp.example' type='chat' \
         id='m{i:06}' xml:lang='en'><body>"
    );
    let tail = "</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>";
    let mut body = String::new();
    let mut k = 0;
    loop {
        let w = words[k % words.len()];
        if head.len() + body.len() + w.len() + tail.len() > 1024 {
            break;
        }
        body.push_str(w);
        k += 1;
    }
    while head.len() + body.len() + tail.len() < 1024 {
        body.push('.');
    }
    let s = format!("{head}{body}{tail}");
    assert_eq!(s.len(), 1024);
    s
}

/// [`STANZAS`] stanzas, one after another (without the header).
pub fn stanzas() -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..STANZAS {
        body.extend_from_slice(stanza(i).as_bytes());
    }
    body
}

/// [`STANZAS`] stanzas without any reference: `and` where [`stanza`] has `&amp;`.
#[allow(dead_code)] // used by examples/codec_count.rs, not by the bench
pub fn stanzas_unescaped() -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..STANZAS {
        body.extend_from_slice(stanza_with(i, "and ").as_bytes());
    }
    body
}

/// [`STANZAS`] stanzas whose bodies are German, Russian and Chinese text (75 % of the body
/// bytes belong to multi-byte characters), nothing to decode: the non-ASCII path of UTF-8
/// validation.
#[allow(dead_code)] // used by examples/codec_count.rs, not by the bench
pub fn stanzas_utf8() -> Vec<u8> {
    let words = [
        "Grüße aus München, schöne Straße! ",
        "Привет, как дела? ",
        "Всё хорошо, спасибо. ",
        "你好，世界。",
        "今天天气很好，我们去公园散步吧。",
    ];
    let mut body = Vec::new();
    for i in 0..STANZAS {
        body.extend_from_slice(stanza_words(i, &words).as_bytes());
    }
    body
}
