//! Parse and serialize the codec bench's 1 KiB chat messages for a given number of rounds, with
//! no timing of its own: run it under an instruction counter, which a busy machine does not
//! disturb (wall time there says little), and subtract two runs to remove the setup:
//!
//! ```text
//! cargo build --release -p fedgate-xmpp --example codec_count
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/codec_count 1
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/codec_count 11
//! ```
//!
//! Instructions per stanza = (Ir of 11 rounds − Ir of 1 round) / (10 × 256). After the rounds,
//! `parse` parses only; `unescaped` uses stanzas without a reference (nothing to decode);
//! `utf8` uses stanzas whose bodies are mostly multi-byte characters (German, Russian, Chinese).

use std::hint::black_box;

use fedgate_xmpp::{Event, Limits, StreamParser};

#[path = "../benches/chat_input/mod.rs"]
mod chat_input;

use chat_input::{HEADER, stanzas, stanzas_unescaped, stanzas_utf8};

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let rest: Vec<String> = args.collect();
    let serialize = !rest.iter().any(|a| a == "parse");
    let body = if rest.iter().any(|a| a == "unescaped") {
        stanzas_unescaped()
    } else if rest.iter().any(|a| a == "utf8") {
        stanzas_utf8()
    } else {
        stanzas()
    };
    let mut out = Vec::with_capacity(body.len() + 4096);
    let mut total = 0;
    for _ in 0..rounds {
        let mut p = StreamParser::new(Limits::default());
        p.feed(HEADER.as_bytes());
        for chunk in body.chunks(16 * 1024) {
            p.feed(chunk);
            while let Ok(Some(ev)) = p.next_event() {
                if let Event::Element { element, .. } = ev {
                    if serialize {
                        out.clear();
                        element.write_to(&mut out);
                        total += black_box(&out).len();
                    }
                    total += 1;
                }
            }
        }
    }
    println!("{total}");
}
