//! Codec throughput on 1 KiB `<message/>` stanzas: parse, serialize, parse+serialize (what a
//! forwarding gateway does per stanza), against two baselines over the same bytes: a plain
//! copy, and a byte scan counting `<` (the least any tokenizer has to do).
//!
//! Run: `cargo bench -p fedgate-xmpp --bench codec` (a few seconds).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fedgate_xmpp::{Element, Event, Limits, StreamParser};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
    xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
    from='partner.example' to='corp.example' id='s1' version='1.0'>";
const STANZAS: usize = 256;

/// One message stanza of exactly 1024 bytes.
fn stanza(i: usize) -> String {
    let head = format!(
        "<message from='romeo{i}@partner.example/orchard' to='juliet@corp.example' type='chat' \
         id='m{i:06}' xml:lang='en'><body>"
    );
    let tail = "</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>";
    let mut body = String::new();
    let words = [
        "Wherefore ",
        "art ",
        "thou ",
        "&amp; ",
        "Romeo? ",
        "caf\u{e9} ",
    ];
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

fn parse(input: &[u8]) -> Vec<Element> {
    let mut p = StreamParser::new(Limits::default());
    let mut out = Vec::with_capacity(STANZAS);
    for chunk in input.chunks(16 * 1024) {
        p.feed(chunk);
        while let Some(ev) = p.next_event().expect("valid input") {
            if let Event::Element { element, .. } = ev {
                out.push(element);
            }
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut body = Vec::new();
    for i in 0..STANZAS {
        body.extend_from_slice(stanza(i).as_bytes());
    }
    let mut input = HEADER.as_bytes().to_vec();
    input.extend_from_slice(&body);
    let parsed = parse(&input);
    assert_eq!(parsed.len(), STANZAS);

    let mut g = c.benchmark_group("codec_1k_messages");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800))
        .sample_size(10);
    for (unit, tp) in [
        ("bytes", Throughput::Bytes(body.len() as u64)),
        ("stanzas", Throughput::Elements(STANZAS as u64)),
    ] {
        g.throughput(tp);
        g.bench_function(format!("baseline_copy/{unit}"), |b| {
            b.iter(|| black_box(black_box(&input).clone()))
        });
        g.bench_function(format!("baseline_scan_lt/{unit}"), |b| {
            b.iter(|| black_box(&input).iter().filter(|&&x| x == b'<').count())
        });
        g.bench_function(format!("parse/{unit}"), |b| {
            b.iter(|| parse(black_box(&input)))
        });
        g.bench_function(format!("serialize/{unit}"), |b| {
            let mut out = Vec::with_capacity(input.len());
            b.iter(|| {
                out.clear();
                for e in black_box(&parsed) {
                    e.write_to(&mut out);
                }
                out.len()
            })
        });
        g.bench_function(format!("parse_serialize/{unit}"), |b| {
            let mut out = Vec::with_capacity(input.len());
            b.iter(|| {
                out.clear();
                for e in parse(black_box(&input)) {
                    e.write_to(&mut out);
                }
                out.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
