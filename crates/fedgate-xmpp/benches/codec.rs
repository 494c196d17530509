//! Codec throughput on 1 KiB `<message/>` stanzas: parse, serialize, parse+serialize (what a
//! forwarding gateway does per stanza), against two baselines over the same bytes: a plain
//! copy, and a byte scan counting `<` (the least any tokenizer has to do).
//!
//! Run: `cargo bench -p fedgate-xmpp --bench codec` (a few seconds).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fedgate_xmpp::{Element, Event, Limits, StreamParser};

mod chat_input;

use chat_input::{HEADER, STANZAS, stanzas};

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
    let body = stanzas();
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
