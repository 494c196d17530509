//! Management-plane benchmark at scale: 100,000 partners with 3 additional domains each.
//!
//! Prints, each next to a baseline measured in the same run:
//! - bulk import through the store (validation, uniqueness, audit) vs a raw SQLite insert of the
//!   same rows;
//! - `Get -Filter` through the manager vs a raw SQLite GLOB query;
//! - matching-index lookups per second (exact hits, additional-domain hits, wildcard hits, misses)
//!   vs a plain hash-set membership test of the same strings;
//! - memory held by the index (a counting allocator) vs the raw bytes of the domain strings.
//!
//! Run: `cargo bench -p fedgate-store --bench partners` (FEDGATE_BENCH_PARTNERS=N to change N).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use fedgate_manage::Manager;
use fedgate_manage::partners::PartnerSelector;
use fedgate_model::{Domain, DomainPattern, PartnerIndex, XmppAllowedPartner};
use fedgate_store::{AuditContext, SqliteStore, Store};
use rustc_hash::FxHashSet;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

#[allow(unsafe_code)] // GlobalAlloc is an unsafe trait: a counting allocator needs it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn partner(i: usize) -> XmppAllowedPartner {
    let d = |s: String| Domain::parse(&s).expect("generated domain is valid");
    let mut p = XmppAllowedPartner::new(d(format!("partner{i}.example.com")));
    p.additional_domains = vec![
        DomainPattern::Exact(d(format!("im.partner{i}.example.net"))),
        DomainPattern::Exact(d(format!("chat{i}.example.org"))),
        DomainPattern::Wildcard(d(format!("dept{i}.example.org"))),
    ];
    p
}

/// Best of `runs` timings of `f`.
fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best: Option<(Duration, T)> = None;
    for _ in 0..runs {
        let start = Instant::now();
        let out = f();
        let took = start.elapsed();
        if best.as_ref().is_none_or(|(b, _)| took < *b) {
            best = Some((took, out));
        }
    }
    best.expect("runs > 0")
}

fn per_lookup(took: Duration, n: usize) -> f64 {
    took.as_nanos() as f64 / n as f64
}

fn main() {
    let n: usize = std::env::var("FEDGATE_BENCH_PARTNERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    println!(
        "fedgate management-plane benchmark: {n} partners x 3 additional domains ({} domain patterns)",
        n * 4
    );
    let partners: Vec<XmppAllowedPartner> = (0..n).map(partner).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let audit = AuditContext {
        actor: "bench".into(),
        command: "New-CsXmppAllowedPartner".into(),
    };

    // --- bulk import ---
    let store = SqliteStore::open(&dir.path().join("fedgate.db")).expect("store");
    let start = Instant::now();
    store.import_partners(&partners, &audit).expect("import");
    let import = start.elapsed();
    let raw = {
        let c = rusqlite::Connection::open(dir.path().join("raw.db")).expect("raw db");
        c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE d (pattern TEXT PRIMARY KEY, owner TEXT) WITHOUT ROWID;").expect("schema");
        let start = Instant::now();
        let tx = c.unchecked_transaction().expect("tx");
        {
            let mut stmt = tx
                .prepare("INSERT INTO d VALUES (?1, ?2)")
                .expect("prepare");
            for p in &partners {
                for pat in p.patterns() {
                    stmt.execute([pat.to_string(), p.identity.to_string()])
                        .expect("insert");
                }
            }
        }
        tx.commit().expect("commit");
        start.elapsed()
    };
    println!("\n== bulk import ==");
    println!(
        "  fedgate import_partners (validated, audited):  {:>8.2} s  ({:.0} partners/s)",
        import.as_secs_f64(),
        n as f64 / import.as_secs_f64()
    );
    println!(
        "  baseline: raw SQLite insert of the patterns:    {:>8.2} s",
        raw.as_secs_f64()
    );

    // --- Get -Filter ---
    let manager = Manager::new(&store, "bench");
    let filters = ["partner1234*", "partner12*", "*"];
    println!("\n== Get-CsXmppAllowedPartner -Filter ==");
    for f in filters {
        let (took, found) = best(3, || {
            manager
                .get_partners(&PartnerSelector::Filter(f.into()))
                .expect("get")
                .len()
        });
        let c = rusqlite::Connection::open(dir.path().join("fedgate.db")).expect("open");
        let (base, base_found) = best(3, || {
            let mut stmt = c
                .prepare("SELECT identity FROM partners WHERE identity GLOB ?1")
                .expect("prepare");
            stmt.query_map([f], |r| r.get::<_, String>(0))
                .expect("query")
                .count()
        });
        assert_eq!(found, base_found);
        println!(
            "  -Filter {f:<14} {found:>7} partners: {:>9.2} ms   baseline raw GLOB of identities: {:>8.2} ms",
            took.as_secs_f64() * 1e3,
            base.as_secs_f64() * 1e3
        );
    }

    // --- matching index ---
    let from_store: Vec<XmppAllowedPartner> = store
        .partners(None)
        .expect("load")
        .into_iter()
        .map(|v| v.value)
        .collect();
    drop(partners);
    // The records themselves (what the gateway's snapshot shares with the index), then the index.
    let records_before = LIVE.load(Ordering::Relaxed);
    let records: Vec<std::sync::Arc<XmppAllowedPartner>> = from_store
        .iter()
        .cloned()
        .map(std::sync::Arc::new)
        .collect();
    let record_bytes = LIVE.load(Ordering::Relaxed) - records_before;
    let before = LIVE.load(Ordering::Relaxed);
    let start = Instant::now();
    let index = PartnerIndex::build(records.iter().cloned()).expect("index");
    let build = start.elapsed();
    let index_bytes = LIVE.load(Ordering::Relaxed) - before;
    let domain_text: usize = from_store
        .iter()
        .flat_map(|p| p.patterns())
        .map(|p| p.to_string().len())
        .sum();

    let queries = 1_000_000usize;
    let pick = |i: usize| (i.wrapping_mul(2_654_435_761)) % n;
    let exact: Vec<String> = (0..queries)
        .map(|i| format!("partner{}.example.com", pick(i)))
        .collect();
    let additional: Vec<String> = (0..queries)
        .map(|i| format!("IM.Partner{}.example.net", pick(i)))
        .collect();
    let wildcard: Vec<String> = (0..queries)
        .map(|i| format!("team{}.dept{}.example.org", i % 7, pick(i)))
        .collect();
    let misses: Vec<String> = (0..queries)
        .map(|i| format!("stranger{}.example.com", pick(i)))
        .collect();
    let set: FxHashSet<String> = from_store
        .iter()
        .flat_map(|p| p.patterns())
        .map(|p| p.to_string())
        .collect();

    println!("\n== matching index (single thread, {queries} lookups per row) ==");
    println!(
        "  build from {n} partners: {:.0} ms; index memory: {:.1} MB (plus the partner records it shares with the gateway snapshot: {:.1} MB; raw domain text: {:.1} MB)",
        build.as_secs_f64() * 1e3,
        index_bytes as f64 / 1e6,
        record_bytes as f64 / 1e6,
        domain_text as f64 / 1e6
    );
    for (name, qs, expect_hit) in [
        ("exact hit (Identity)", &exact, true),
        ("hit, AdditionalDomains (mixed case)", &additional, true),
        ("wildcard hit (*.deptN)", &wildcard, true),
        ("miss", &misses, false),
    ] {
        let (took, hits) = best(3, || {
            qs.iter()
                .filter(|q| index.lookup(black_box(q)).is_some())
                .count()
        });
        assert_eq!(hits == queries, expect_hit, "{name}");
        let (base, _) = best(3, || {
            qs.iter()
                .filter(|q| set.contains(black_box(q.as_str())))
                .count()
        });
        println!(
            "  {name:<38} {:>7.1} ns/lookup ({:>5.1} M/s)   baseline hash-set contains: {:>6.1} ns",
            per_lookup(took, queries),
            queries as f64 / took.as_secs_f64() / 1e6,
            per_lookup(base, queries)
        );
    }
}
