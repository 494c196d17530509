//! Gateway performance as a deployment sees it: stanza relay throughput and the gateway's own
//! CPU per stanza, added latency at a fixed rate, TLS stream setup rate and memory per idle
//! stream, each next to a baseline measured in the same run.
//!
//! `cargo bench -p fedgate-gateway --bench relay`
//!
//! The gateway runs in a process of its own (this executable re-run in "gateway" mode: the
//! runtime and `Gateway` of `fedgate serve`, logging at the config's level to /dev/null), and so
//! does the baseline, a plain tokio byte-copying TCP relay ("relay" mode). The load — partners
//! sending, the internal server receiving — runs in this process. CPU per stanza is the
//! gateway's (or the relay's) own utime + stime from `/proc/<pid>/stat` over the measured
//! window divided by the stanzas the internal server received; the load process's CPU is
//! printed beside it, so the cost of the peers is never counted as the gateway's.
//!
//! Everything runs on loopback (127.0.0.0/8). The load peers are the in-repo fake peers of the
//! integration tests (tests/common): a partner that authenticates by dialback (its
//! authoritative server answers `db:verify`), and a fake internal server ("sink") that accepts
//! the gateway's outbound stream (it answers the gateway's `db:result` with `valid` without
//! dialling back: the sink is a load peer, not the thing measured) and then counts stanzas
//! by scanning the bytes for `</message>`. Senders write 16 stanzas per `write` (a busy server's
//! coalesced output; `FEDGATE_BENCH_BATCH=1` writes one stanza per `write`). The
//! baseline for stream setup is bare TLS handshakes against a plain rustls server. Memory is the
//! RSS of a fresh gateway process.
//!
//! Stream setup (part 3) also reports each stream's setup time (p50, p99) and the gateway's CPU
//! per stream, for STARTTLS + dialback and for plain dialback: each authenticated partner
//! stream takes a stream lease in the store when admitted and gives it back when it ends (two
//! store transactions per stream). `FEDGATE_BENCH_BASELINE_EXE=<path>` adds a gateway process
//! from another build beside it — this bench's executable built at an older commit, run in its
//! "gateway" mode on an SQLite store of its own (the commit before leases, for example);
//! `FEDGATE_BENCH_STORE=postgres` adds a gateway on a PostgreSQL store.
//!
//! PostgreSQL (setup with `FEDGATE_BENCH_STORE=postgres`, and the pool part): a server started
//! in a temp dir as the store tests do (crates/fedgate-store/tests/common: Debian's
//! postgresql package, fsync=off), one fresh database per use; or `FEDGATE_BENCH_PG_URL`
//! (`postgres://user:password@host:port/db?...`), an existing empty database (seeded once).
//!
//! The pool part (`FEDGATE_BENCH_ONLY=pool`, not run by default): two gateway processes on one
//! PostgreSQL store (node names bench-a and bench-b, listeners of their own, the same hosted
//! domain and certificate), half the partner streams to each, against node A alone with the
//! same total load, in the same run; CPU is both processes' utime + stime. On one machine the
//! two nodes share its cores with each other and with the load: it shows the cost per stanza,
//! not the scaling of a pool over machines. `FEDGATE_BENCH_POOL_STREAMS` (default 100) sets the
//! number of partner streams.
//!
//! The partner-type mix (`FEDGATE_BENCH_ONLY=mix`, not run by default): relay throughput and
//! gateway CPU per stanza on a gateway process of its own whose store also holds 100
//! PublicUnverified partners (`u<i>.example`, plain dialback) and what their traffic is checked
//! against: bob@corp.example authorised each sender (`alice@u<i>.example`, recorded as her
//! `subscribed` would be) and holds the per-user policy `tag:bench` (EnableXmppAccess True; the
//! Global policy is False, so nothing reaches bob without it), as do `MIX_USERS` - 1 other local
//! users with 10 recorded authorisations each. Rows: every stream from a Federated partner, half
//! Federated and half PublicUnverified, every stream PublicUnverified; a row whose stanzas did
//! not all reach the internal server (some refused or lost) says so.
//!
//! `FEDGATE_BENCH_ONLY=throughput,latency,setup,memory,pool,mix` runs only those parts;
//! `FEDGATE_BENCH_ROUNDS` (default 1) repeats the setup, pool and mix comparisons, alternating;
//! `FEDGATE_BENCH_PROFILE=1` skips the relay baseline of the throughput part (for `perf record`
//! on the gateway process: its pid is printed);
//! `FEDGATE_BENCH_ATTACH="perf stat -e raw_syscalls:sys_enter -p {pid}"` runs a tool on the
//! measured process for exactly each measured window of the throughput part (stopped by SIGINT;
//! the window's stanza count is printed, to divide by); each throughput row also gives the
//! measured process's context switches per stanza (`cs/stanza`, all its threads, from /proc);
//! `FEDGATE_BENCH_SECS` (default 3) sets the length of each measured window;
//! `FEDGATE_BENCH_RATE` (default 5000 stanzas/s in total, issue 26's target rate; 2000 before)
//! and `FEDGATE_BENCH_LATENCY_STREAMS` (default 10) set the latency part's paced load;
//! `FEDGATE_BENCH_IDLE` (default 10000) the number of idle plain streams,
//! `FEDGATE_BENCH_IDLE_TLS` (default 2000) the number of idle TLS streams;
//! `FEDGATE_BENCH_WRAP="heaptrack -o FILE"` runs the measured processes under a tool (their RSS
//! and CPU are then the tool's process's, unless it execs them).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../../fedgate-store/tests/common/mod.rs"]
mod pg;

use std::io::{BufRead, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Io, PARTNER_SECRET, Peer};
use fedgate_gateway::{Config, Gateway};
use fedgate_model::{SaslNegotiation, TlsNegotiation};
use fedgate_xmpp::negotiation::{self, DialbackType};
use fedgate_xmpp::{Event, StreamHeader, ns};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const STANZA_SIZE: usize = 1024;
const HOSTED: &str = "corp.example";
const PLAIN_PARTNERS: usize = 100;
const TLS_PARTNERS: usize = 4;
/// PublicUnverified partners of the mix (`FEDGATE_BENCH_ONLY=mix`).
const UNVERIFIED_PARTNERS: usize = 100;
/// Local users holding the mix's per-user policy (bob and `user<k>@corp.example`).
const MIX_USERS: usize = 500;
const GATEWAY_ENV: &str = "FEDGATE_BENCH_GATEWAY_CONFIG";
const RELAY_ENV: &str = "FEDGATE_BENCH_RELAY_TARGET";

fn plain_partner(i: usize) -> String {
    format!("p{i}.example")
}
fn tls_partner(i: usize) -> String {
    format!("t{i}.example")
}
fn unverified_partner(i: usize) -> String {
    format!("u{i}.example")
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Nanoseconds since the bench started (the clock of the latency marks).
fn now_ns(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// One 1 KiB message stanza from `partner` whose body starts with `@@T<20 digits>@@` (the send
/// time in ns, for latency) and is padded to exactly [`STANZA_SIZE`] bytes.
fn stanza(partner: &str, ts: u64) -> Vec<u8> {
    let head = format!(
        "<message from='alice@{partner}/pc' to='bob@{HOSTED}' type='chat'><body>@@T{ts:020}@@"
    );
    let tail = "</body></message>";
    let pad = STANZA_SIZE - head.len() - tail.len();
    let mut s = head.into_bytes();
    s.resize(s.len() + pad, b'x');
    s.extend_from_slice(tail.as_bytes());
    assert_eq!(s.len(), STANZA_SIZE);
    s
}

/// Overwrite the timestamp of a [`stanza`] in place.
fn stamp(s: &mut [u8], ts: u64) {
    let at = memchr::memmem::find(s, b"@@T").expect("mark") + 3;
    s[at..at + 20].copy_from_slice(format!("{ts:020}").as_bytes());
}

// ---------------------------------------------------------------------------------------------
// The sink: a fake internal server that counts stanzas (and measures latency when asked).

#[derive(Default)]
struct SinkStats {
    stanzas: AtomicU64,
    bytes: AtomicU64,
    recording: AtomicBool,
    latencies: Mutex<Vec<u64>>,
}

/// Listen for the gateway's (or the relay's) connections. With `handshake`, answer the s2s
/// stream opening and `db:result` first (as an internal XMPP server would).
async fn sink(handshake: bool, epoch: Instant) -> (SocketAddr, Arc<SinkStats>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let stats = Arc::new(SinkStats::default());
    let st = stats.clone();
    tokio::spawn(async move {
        let mut n = 0u64;
        while let Ok((tcp, _)) = l.accept().await {
            n += 1;
            let _ = tcp.set_nodelay(true);
            let st = st.clone();
            tokio::spawn(async move {
                let io: Box<dyn Io> = if handshake {
                    match sink_handshake(tcp, n).await {
                        Some(io) => io,
                        None => return,
                    }
                } else {
                    Box::new(tcp)
                };
                count(io, &st, epoch).await;
            });
        }
    });
    (addr, stats)
}

async fn sink_handshake(tcp: TcpStream, n: u64) -> Option<Box<dyn Io>> {
    let mut p = Peer::from_tcp(tcp);
    let h = match p.next().await {
        Ok(Event::StreamOpen(h)) => h,
        _ => return None,
    };
    let mut out = Vec::new();
    StreamHeader::responding(
        h.to.clone().unwrap_or_default(),
        h.from.clone(),
        format!("sink-{n}"),
        true,
    )
    .write_to(&mut out);
    negotiation::stream_features(negotiation::TlsOffer::None, false, true).write_to(&mut out);
    p.send(out).await;
    loop {
        match p.next().await {
            Ok(Event::Element { element, .. }) if element.is("result", ns::DIALBACK) => {
                let from = element.attr("from").unwrap_or("").to_owned();
                let to = element.attr("to").unwrap_or("").to_owned();
                p.send_el(&negotiation::db_result_response(
                    &to,
                    &from,
                    &DialbackType::Valid,
                ))
                .await;
                let left = p.parser.reset();
                assert_eq!(left, 0, "stanzas before the dialback answer");
                return Some(p.into_io());
            }
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// Count `</message>` in the byte stream; while recording, take each stanza's latency.
async fn count(mut io: Box<dyn Io>, st: &SinkStats, epoch: Instant) {
    let end = memchr::memmem::Finder::new(b"</message>");
    let mark = memchr::memmem::Finder::new(b"@@T");
    let mut buf = vec![0u8; 64 * 1024];
    let mut acc: Vec<u8> = Vec::with_capacity(128 * 1024);
    let mut lat = Vec::new();
    loop {
        let n = match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let now = now_ns(epoch);
        st.bytes.fetch_add(n as u64, Ordering::Relaxed);
        acc.extend_from_slice(&buf[..n]);
        let recording = st.recording.load(Ordering::Relaxed);
        let mut start = 0;
        let mut found = 0;
        while let Some(i) = end.find(&acc[start..]) {
            let stop = start + i + 10;
            if recording && let Some(m) = mark.find(&acc[start..stop]) {
                let at = start + m + 3;
                if let Some(ts) = std::str::from_utf8(&acc[at..at + 20])
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok())
                {
                    lat.push(now.saturating_sub(ts));
                }
            }
            found += 1;
            start = stop;
        }
        acc.drain(..start);
        st.stanzas.fetch_add(found, Ordering::Relaxed);
        if !lat.is_empty() {
            st.latencies.lock().unwrap().append(&mut lat);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The processes measured: the gateway and the plain TCP relay baseline.

/// A gateway or relay process started by the bench: it prints `READY <addr>` on stdout and
/// serves until its stdin is closed.
struct Measured {
    child: std::process::Child,
    pid: u32,
    addr: SocketAddr,
}

impl Measured {
    /// Its log goes to `log` (shown if it does not start).
    fn spawn(env: &str, value: &str, log: &Path) -> Measured {
        let exe = std::env::current_exe().expect("this bench's executable");
        Measured::spawn_exe(&exe, env, value, log)
    }

    /// The same with another executable (this bench built at another commit).
    fn spawn_exe(exe: &Path, env: &str, value: &str, log: &Path) -> Measured {
        let log_file = std::fs::File::create(log).expect("the measured process's log file");
        // `FEDGATE_BENCH_WRAP="heaptrack -o /tmp/gw"` runs the measured process under a tool.
        let wrap = std::env::var("FEDGATE_BENCH_WRAP").unwrap_or_default();
        let mut words = wrap.split_whitespace();
        let mut command = match words.next() {
            Some(tool) => {
                let mut c = std::process::Command::new(tool);
                c.args(words).arg(exe);
                c
            }
            None => std::process::Command::new(exe),
        };
        let mut child = command
            .env(env, value)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("spawn the measured process");
        let pid = child.id();
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        // A wrapping tool may print first: skip to the READY line.
        while out.read_line(&mut line).unwrap_or(0) > 0 && !line.starts_with("READY ") {
            line.clear();
        }
        let addr: SocketAddr = line
            .strip_prefix("READY ")
            .and_then(|r| r.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "the {env} process did not start: {line:?}\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            });
        Measured { child, pid, addr }
    }

    /// utime + stime of the process (all its threads) from /proc, in µs.
    fn cpu_us(&self) -> f64 {
        proc_cpu_us(self.pid)
    }

    /// Close its stdin and wait (up to 10 s, then kill).
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// utime + stime of process `pid` from `/proc/<pid>/stat` (fields 14 and 15), in µs.
#[allow(unsafe_code)] // libc::sysconf
fn proc_cpu_us(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may contain spaces: count fields after its closing ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) * 1e6 / hz
}

/// Context switches of process `pid`, all its threads (voluntary + involuntary, from
/// `/proc/<pid>/task/*/status`; threads that ended are not counted).
fn proc_ctx_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut n = 0;
    for t in tasks.flatten() {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                n += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    n
}

/// `FEDGATE_BENCH_ATTACH="perf stat -e raw_syscalls:sys_enter -p {pid}"`: a tool run on the
/// measured process (`{pid}`) for exactly each measured window of the throughput part, stopped
/// by SIGINT at its end (perf and strace then print their summaries).
fn attach(pid: u32) -> Option<std::process::Child> {
    let cmd = std::env::var("FEDGATE_BENCH_ATTACH").ok()?;
    let words: Vec<String> = cmd
        .split_whitespace()
        .map(|w| w.replace("{pid}", &pid.to_string()))
        .collect();
    let (tool, args) = words.split_first()?;
    let child = std::process::Command::new(tool)
        .args(args)
        .spawn()
        .expect("FEDGATE_BENCH_ATTACH's tool");
    // Let it attach before the window opens.
    std::thread::sleep(Duration::from_millis(300));
    Some(child)
}

/// Stop an [`attach`]ed tool as Ctrl-C would, and wait for its summary.
#[allow(unsafe_code)] // libc::kill
fn detach(child: Option<std::process::Child>) {
    if let Some(mut c) = child {
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGINT);
        }
        let _ = c.wait();
    }
}

/// Block until the bench closes our stdin (the measured processes' lifetime).
async fn until_stdin_closes() {
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await;
}

/// The "relay" mode of this executable: a plain TCP relay to `target`.
fn relay_process(target: &str) {
    let target: SocketAddr = target.parse().expect("relay target");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let addr = plain_relay(target).await;
        println!("READY {addr}");
        std::io::stdout().flush().unwrap();
        until_stdin_closes().await;
    });
}

async fn plain_relay(target: SocketAddr) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut a, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = a.set_nodelay(true);
                let Ok(mut b) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = b.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------------
// Senders.

async fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
    let tcp = s.connect(dst).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// A partner stream to the gateway, authenticated by dialback (after STARTTLS with `tls`).
async fn partner_stream(
    gw: SocketAddr,
    src: Ipv4Addr,
    partner: &str,
    tls: bool,
) -> Result<Box<dyn Io>, String> {
    let tcp = connect_from(src, gw).await.map_err(|e| e.to_string())?;
    let mut p = Peer::from_tcp(tcp);
    if tls {
        let (_, f) = p.open(partner, HOSTED).await;
        if f.child("starttls", ns::TLS).is_none() {
            return Err("no STARTTLS offered".into());
        }
        p.send_el(&negotiation::starttls()).await;
        if !p.element().await.is("proceed", ns::TLS) {
            return Err("STARTTLS refused".into());
        }
        p.upgrade_tls(HOSTED, None).await;
    }
    p.dialback(partner, HOSTED, PARTNER_SECRET).await?;
    Ok(p.into_io())
}

/// Source addresses for many connections (127.0.0.2 … 127.0.0.9).
fn src_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8)
}

#[derive(Clone, Copy)]
enum Target {
    /// The gateway's external listener: streams authenticate by dialback first.
    Gateway(SocketAddr),
    /// The same, after STARTTLS (TLS between the partner and the gateway only).
    GatewayTls(SocketAddr),
    /// The gateway's external listener, from a PublicUnverified partner (mix part).
    GatewayUnverified(SocketAddr),
    /// The plain relay: bytes only.
    Relay(SocketAddr),
}

/// `n` sender streams, the i-th to `targets[i % targets.len()]`.
async fn open_senders(targets: &[Target], n: usize) -> Vec<(Box<dyn Io>, String)> {
    let mut out = Vec::new();
    for i in 0..n {
        let partner = plain_partner(i % PLAIN_PARTNERS);
        let io: Box<dyn Io> = match targets[i % targets.len()] {
            Target::Gateway(a) => partner_stream(a, src_ip(i), &partner, false)
                .await
                .expect("dialback"),
            Target::GatewayTls(a) => {
                let partner = tls_partner(i % TLS_PARTNERS);
                let io = partner_stream(a, src_ip(i), &partner, true)
                    .await
                    .expect("STARTTLS + dialback");
                out.push((io, partner));
                continue;
            }
            Target::GatewayUnverified(a) => {
                let partner = unverified_partner(i % UNVERIFIED_PARTNERS);
                let io = partner_stream(a, src_ip(i), &partner, false)
                    .await
                    .expect("dialback (PublicUnverified)");
                out.push((io, partner));
                continue;
            }
            Target::Relay(a) => Box::new(connect_from(src_ip(i), a).await.expect("connect")),
        };
        out.push((io, partner));
    }
    out
}

/// Wait until the sink's count stops moving (queues drained).
async fn settle(st: &SinkStats) {
    let mut last = st.stanzas.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = st.stanzas.load(Ordering::Relaxed);
        if now == last {
            return;
        }
        last = now;
    }
}

#[derive(Clone, Copy)]
struct Throughput {
    stanzas_per_s: f64,
    /// CPU time of the measured process (gateway or relay) per stanza, µs.
    cpu_us: f64,
    /// CPU time of this load process (senders and sink) per stanza, µs.
    load_cpu_us: f64,
    /// Context switches of the measured process's threads per stanza.
    ctx_switches: f64,
    /// Stanzas the senders wrote that the sink had not received once the queues drained
    /// (refused or lost by the gateway).
    undelivered: u64,
}

/// `n` streams writing 1 KiB stanzas as fast as they can; the rate is what the sink receives
/// during the window (after a warm-up); CPU is `measured`'s.
async fn throughput(
    target: Target,
    measured: &Measured,
    st: &Arc<SinkStats>,
    n: usize,
    secs: f64,
) -> Throughput {
    throughput_over(&[target], &[measured], st, n, secs).await
}

/// [`throughput`] with the streams spread over `targets` (round robin); CPU is the sum of the
/// `measured` processes'.
async fn throughput_over(
    targets: &[Target],
    measured: &[&Measured],
    st: &Arc<SinkStats>,
    n: usize,
    secs: f64,
) -> Throughput {
    let batch_of = env_num("FEDGATE_BENCH_BATCH", 16).max(1) as usize;
    let me = std::process::id();
    let cpu = || measured.iter().map(|m| m.cpu_us()).sum::<f64>();
    let received_before = st.stanzas.load(Ordering::Relaxed);
    let senders = open_senders(targets, n).await;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (mut io, partner) in senders {
        let (stop, sent) = (stop.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let one = stanza(&partner, 0);
            let batch: Vec<u8> = one
                .iter()
                .copied()
                .cycle()
                .take(one.len() * batch_of)
                .collect();
            while !stop.load(Ordering::Relaxed) {
                if io.write_all(&batch).await.is_err() {
                    break;
                }
                sent.fetch_add(batch_of as u64, Ordering::Relaxed);
            }
            io
        }));
    }
    let switches = || {
        measured
            .iter()
            .map(|m| proc_ctx_switches(m.pid))
            .sum::<u64>()
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tool = attach(measured[0].pid);
    let (s0, t0, c0, l0, x0) = (
        st.stanzas.load(Ordering::Relaxed),
        Instant::now(),
        cpu(),
        proc_cpu_us(me),
        switches(),
    );
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let (s1, t1, c1, l1, x1) = (
        st.stanzas.load(Ordering::Relaxed),
        Instant::now(),
        cpu(),
        proc_cpu_us(me),
        switches(),
    );
    detach(tool);
    if std::env::var_os("FEDGATE_BENCH_ATTACH").is_some() {
        println!(
            "  (window: {} stanzas in {:.3} s)",
            s1 - s0,
            (t1 - t0).as_secs_f64()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut ios = Vec::new();
    for t in tasks {
        if let Ok(io) = t.await {
            ios.push(io);
        }
    }
    settle(st).await;
    drop(ios);
    let received = st.stanzas.load(Ordering::Relaxed) - received_before;
    Throughput {
        stanzas_per_s: (s1 - s0) as f64 / (t1 - t0).as_secs_f64(),
        cpu_us: (c1 - c0) / (s1 - s0).max(1) as f64,
        load_cpu_us: (l1 - l0) / (s1 - s0).max(1) as f64,
        ctx_switches: x1.saturating_sub(x0) as f64 / (s1 - s0).max(1) as f64,
        undelivered: sent.load(Ordering::Relaxed).saturating_sub(received),
    }
}

struct Latency {
    samples: usize,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    achieved: f64,
}

/// `n` streams, `rate` stanzas/s in total, paced; latency from the write to the sink's read.
async fn latency(
    target: Target,
    st: &Arc<SinkStats>,
    n: usize,
    rate: f64,
    secs: f64,
    epoch: Instant,
) -> Latency {
    let senders = open_senders(&[target], n).await;
    let stop = Arc::new(AtomicBool::new(false));
    let period = Duration::from_secs_f64(n as f64 / rate);
    let mut tasks = Vec::new();
    for (k, (mut io, partner)) in senders.into_iter().enumerate() {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            // Stagger the streams over one period.
            tokio::time::sleep(period.mul_f64(k as f64 / n as f64)).await;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut s = stanza(&partner, 0);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                stamp(&mut s, now_ns(epoch));
                if io.write_all(&s).await.is_err() {
                    break;
                }
            }
            io
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    st.latencies.lock().unwrap().clear();
    st.recording.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    st.recording.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut ios = Vec::new();
    for t in tasks {
        if let Ok(io) = t.await {
            ios.push(io);
        }
    }
    settle(st).await;
    drop(ios);
    let mut v = std::mem::take(&mut *st.latencies.lock().unwrap());
    v.sort_unstable();
    let q = |p: f64| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
    };
    Latency {
        samples: v.len(),
        p50: q(0.5),
        p99: q(0.99),
        p999: q(0.999),
        max: q(1.0),
        achieved: v.len() as f64 / elapsed,
    }
}

// ---------------------------------------------------------------------------------------------
// Stream setup with TLS.

/// Authenticated stream setup against one gateway process.
struct Setup {
    streams_per_s: f64,
    /// From the TCP connect to the gateway's dialback `valid`, ms.
    p50_ms: f64,
    p99_ms: f64,
    /// The gateway process's utime + stime per stream set up (and closed), µs.
    cpu_us: f64,
}

/// Repeatedly establish dialback streams (after STARTTLS with `tls`) with `conc` concurrent
/// partners, each closed as soon as it is authenticated.
async fn setup_rate_gateway(gw: &Measured, tls: bool, conc: usize, secs: f64) -> Setup {
    let addr = gw.addr;
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let times = Arc::new(Mutex::new(Vec::new()));
    let (t0, c0) = (Instant::now(), gw.cpu_us());
    let mut tasks = Vec::new();
    for k in 0..conc {
        let times = times.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = k;
            let mut mine = Vec::new();
            while Instant::now() < deadline {
                let partner = if tls {
                    tls_partner(k % TLS_PARTNERS)
                } else {
                    plain_partner(i % PLAIN_PARTNERS)
                };
                let started = Instant::now();
                match partner_stream(addr, src_ip(i), &partner, tls).await {
                    Ok(io) => {
                        mine.push(started.elapsed().as_secs_f64() * 1e3);
                        drop(io);
                    }
                    Err(e) => panic!("stream setup failed (TLS {tls}): {e}"),
                }
                i += conc;
            }
            times.lock().expect("setup times").append(&mut mine);
        }));
    }
    for t in tasks {
        t.await.expect("a setup task");
    }
    let elapsed = t0.elapsed().as_secs_f64();
    // The closes' lease releases run after the last `valid`: let them land in the CPU figure.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = gw.cpu_us() - c0;
    let mut v = std::mem::take(&mut *times.lock().expect("setup times"));
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)));
    Setup {
        streams_per_s: v.len() as f64 / elapsed,
        p50_ms: q(0.5).copied().unwrap_or(0.0),
        p99_ms: q(0.99).copied().unwrap_or(0.0),
        cpu_us: cpu / v.len().max(1) as f64,
    }
}

fn rustls_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The baseline: a plain rustls server with a self-signed certificate of the kind the gateway
/// generates, and clients that only do the handshake.
async fn setup_rate_bare_tls(conc: usize, secs: f64) -> f64 {
    use rustls_pki_types::pem::PemObject;
    let (cert, key) = fedgate_gateway::tls::self_signed(HOSTED).unwrap();
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(rustls_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server_task = tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    // Wait for the client's close.
                    let mut b = [0u8; 64];
                    let _ = tls.read(&mut b).await;
                }
            });
        }
    });
    let mut client = rustls::ClientConfig::builder_with_provider(rustls_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(common::NoVerify))
        .with_no_client_auth();
    // Full handshakes, as the partners' (one new client config per stream, like the gateway's
    // one server config per STARTTLS) get: no session resumption.
    client.resumption = rustls::client::Resumption::disabled();
    let client = Arc::new(client);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let done = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..conc {
        let (done, client) = (done.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = k;
            while Instant::now() < deadline {
                let tcp = connect_from(src_ip(i), addr).await.unwrap();
                let name = rustls_pki_types::ServerName::try_from(HOSTED).unwrap();
                let tls = tokio_rustls::TlsConnector::from(client.clone())
                    .connect(name, tcp)
                    .await
                    .expect("handshake");
                done.fetch_add(1, Ordering::Relaxed);
                drop(tls);
                i += conc;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();
    server_task.abort();
    rate
}

// ---------------------------------------------------------------------------------------------
// Memory per idle stream (a separate gateway process).

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Open `n` idle authenticated streams, `conc` at a time.
async fn open_idle(gw: SocketAddr, n: usize, tls: bool, offset: usize) -> Vec<Box<dyn Io>> {
    let conc = if tls { 8 } else { 64 };
    let mut out = Vec::with_capacity(n);
    let mut set = tokio::task::JoinSet::new();
    let mut next = 0;
    while out.len() < n {
        while next < n && set.len() < conc {
            let i = offset + next;
            let partner = if tls {
                tls_partner(i % TLS_PARTNERS)
            } else {
                plain_partner(i % PLAIN_PARTNERS)
            };
            set.spawn(async move { partner_stream(gw, src_ip(i), &partner, tls).await });
            next += 1;
        }
        match set.join_next().await {
            Some(Ok(Ok(io))) => out.push(io),
            Some(Ok(Err(e))) => panic!("idle stream setup failed: {e}"),
            Some(Err(e)) => panic!("{e}"),
            None => break,
        }
    }
    out
}

struct Memory {
    base_kib: u64,
    plain_n: usize,
    plain_kib: u64,
    plain_secs: f64,
    tls_n: usize,
    tls_kib: u64,
}

async fn memory(dir: &Path, sink_addr: SocketAddr) -> Memory {
    let plain_n = env_num("FEDGATE_BENCH_IDLE", 10_000) as usize;
    let tls_n = env_num("FEDGATE_BENCH_IDLE_TLS", 2_000) as usize;
    let path = write_config(dir, "memory", sink_addr, &GatewayStore::sqlite());
    let gateway = Measured::spawn(
        GATEWAY_ENV,
        &path.to_string_lossy(),
        &dir.join("memory.log"),
    );
    let (pid, external) = (gateway.pid, gateway.addr);
    // Warm up (allocator arenas, runtime, policy snapshot) before the baseline.
    let warm = open_idle(external, 200, false, 0).await;
    let warm_tls = open_idle(external, 16, true, 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = rss_kib(pid);
    let t0 = Instant::now();
    let plain = open_idle(external, plain_n, false, 1000).await;
    let plain_secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after_plain = rss_kib(pid);
    let tls = open_idle(external, tls_n, true, 100_000).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after_tls = rss_kib(pid);
    drop((warm, warm_tls, plain, tls));
    gateway.stop().await;
    Memory {
        base_kib: base,
        plain_n,
        plain_kib: after_plain.saturating_sub(base),
        plain_secs,
        tls_n,
        tls_kib: after_tls.saturating_sub(after_plain),
    }
}

/// The "gateway" mode of this executable: what `fedgate serve` runs (its logging, its
/// multi-threaded runtime, `Gateway`), reporting the external listener's address.
fn gateway_process(config: &str) {
    let config = Config::load(Path::new(config)).expect("config");
    fedgate_gateway::init_logging(&config.log_level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let gw = Gateway::start(config).await.expect("start");
        println!("READY {}", gw.external_addr);
        std::io::stdout().flush().unwrap();
        until_stdin_closes().await;
        gw.shutdown(Duration::from_secs(3)).await;
    });
}

// ---------------------------------------------------------------------------------------------

/// Where a gateway config's store is, and what else it says about the gateway.
struct GatewayStore {
    /// The `store =` value (a PostgreSQL URL with its password).
    url: String,
    /// `[node] name`; None: not written (a build before node names refuses the key).
    node: Option<String>,
    /// The hosted domain's certificate and key files; None: self-signed, generated beside the
    /// store (SQLite) or the config file (PostgreSQL).
    cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl GatewayStore {
    /// `fedgate.db` beside the config file, the node named by the host name (or no `[node]`).
    fn sqlite() -> GatewayStore {
        GatewayStore {
            url: "sqlite:fedgate.db".into(),
            node: None,
            cert: None,
        }
    }
}

fn write_config(
    dir: &Path,
    name: &str,
    sink: SocketAddr,
    store: &GatewayStore,
) -> std::path::PathBuf {
    let url = &store.url;
    let mut text = format!(
        r#"
store = "{url}"
[internal_listener]
listen = "127.0.0.1:0"
[external_listener]
listen = "127.0.0.1:0"
[[hosted_domain]]
domain = "{HOSTED}"
internal_server = "{sink}"
{cert}
[limits]
max_stanza_size = 65536
connections_per_ip_before_auth = 100000
connections_per_block_before_auth = 100000
[tls]
system_roots = false
[settings]
connection_limit = 1000000
partner_connection_limit = 1000000
"#,
        cert = match &store.cert {
            Some((c, k)) => format!("certificate = {:?}\nkey = {:?}", c.display(), k.display()),
            None => String::new(),
        }
    );
    if let Some(node) = &store.node {
        text.push_str(&format!("[node]\nname = \"{node}\"\n"));
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write a gateway config");
    path
}

/// The bench's partners (100 plain, 4 TLS-required, dialback against `auth`) in `store`, unless
/// already there (a `FEDGATE_BENCH_PG_URL` database used twice).
fn seed(store: &dyn fedgate_store::Store, auth: SocketAddr) {
    let first = fedgate_model::Domain::parse(&plain_partner(0)).expect("a partner name");
    if matches!(store.partner(&first), Ok(Some(_))) {
        return;
    }
    for i in 0..PLAIN_PARTNERS {
        common::add_partner(
            store,
            &plain_partner(i),
            TlsNegotiation::NotSupported,
            SaslNegotiation::NotSupported,
            true,
            Some(auth),
        );
    }
    for i in 0..TLS_PARTNERS {
        common::add_partner(
            store,
            &tls_partner(i),
            TlsNegotiation::Required,
            SaslNegotiation::NotSupported,
            true,
            Some(auth),
        );
    }
}

/// The mix's store besides [`seed`] (see the header: `FEDGATE_BENCH_ONLY=mix`): the
/// PublicUnverified partners, bob's authorisations of their senders, the per-user policy
/// `tag:bench` granted to bob and the other `MIX_USERS` - 1 local users (10 authorisations each),
/// and the Global policy turned off.
fn seed_mix(store: &dyn fedgate_store::Store, auth: SocketAddr) {
    use fedgate_model::{ExternalAccessPolicy, PartnerType, PolicyScope, UserJid};
    for i in 0..UNVERIFIED_PARTNERS {
        let name = unverified_partner(i);
        common::add_partner(
            store,
            &name,
            TlsNegotiation::NotSupported,
            SaslNegotiation::NotSupported,
            true,
            Some(auth),
        );
        let domain = fedgate_model::Domain::parse(&name).expect("a partner name");
        let mut p = store
            .partner(&domain)
            .unwrap()
            .expect("the partner just added");
        p.value.partner_type = PartnerType::PublicUnverified;
        store
            .update_partner(&p.value, p.version, &common::audit())
            .unwrap();
    }
    let user = |u: String| UserJid::parse(&u).expect("a user");
    let bob = user(format!("bob@{HOSTED}"));
    let mut changes: Vec<_> = (0..UNVERIFIED_PARTNERS)
        .map(|i| {
            (
                bob.clone(),
                user(format!("alice@{}", unverified_partner(i))),
                true,
            )
        })
        .collect();
    for k in 1..MIX_USERS {
        for j in 0..10 {
            let remote = format!(
                "contact{j}@{}",
                unverified_partner((k + j) % UNVERIFIED_PARTNERS)
            );
            changes.push((user(format!("user{k}@{HOSTED}")), user(remote), true));
        }
    }
    store.set_authorisations(&changes).unwrap();
    let mut policy = ExternalAccessPolicy::new(PolicyScope::parse("tag:bench").unwrap());
    policy.enable_xmpp_access = true;
    store.create_policy(&policy, &common::audit()).unwrap();
    store
        .grant_policy(&bob, Some("bench"), &common::audit())
        .unwrap();
    for k in 1..MIX_USERS {
        store
            .grant_policy(
                &user(format!("user{k}@{HOSTED}")),
                Some("bench"),
                &common::audit(),
            )
            .unwrap();
    }
    common::set_global_xmpp_access(store, false);
}

/// A seeded PostgreSQL store for gateways: `FEDGATE_BENCH_PG_URL`, or database `name` created on
/// the server this bench starts in a temp dir (as the store tests do; stopped when the bench
/// exits). Its `store =` URL, password included.
async fn postgres_store(name: &'static str, auth: SocketAddr) -> String {
    tokio::task::spawn_blocking(move || {
        let url = std::env::var("FEDGATE_BENCH_PG_URL").unwrap_or_else(|_| {
            let server = pg::pg_server();
            server.admin_sql(&format!("CREATE DATABASE {name} OWNER fedgate"));
            format!(
                "postgres://fedgate:{}@127.0.0.1:{}/{name}?sslmode=disable",
                pg::PG_PASSWORD,
                server.port
            )
        });
        let parsed = fedgate_store::StoreUrl::parse(&url).expect("FEDGATE_BENCH_PG_URL");
        let store = fedgate_store::open(&parsed).expect("open the PostgreSQL store");
        seed(store.as_ref(), auth);
        url
    })
    .await
    .expect("the PostgreSQL set-up task")
}

/// Raise the soft open-files limit to the hard limit (the idle-stream test needs ~2 × N).
#[allow(unsafe_code)] // libc::getrlimit / setrlimit
fn raise_nofile() -> u64 {
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur
    }
}

fn mb(stanzas_per_s: f64) -> f64 {
    stanzas_per_s * STANZA_SIZE as f64 / 1e6
}

fn main() {
    if let Ok(config) = std::env::var(GATEWAY_ENV) {
        gateway_process(&config);
        return;
    }
    if let Ok(target) = std::env::var(RELAY_ENV) {
        relay_process(&target);
        return;
    }
    let nofile = raise_nofile();
    let secs = env_num("FEDGATE_BENCH_SECS", 3) as f64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(secs, nofile));
}

async fn run(secs: f64, nofile: u64) {
    let started = Instant::now();
    let epoch = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let auth = common::authoritative_server(PARTNER_SECRET).await;
    seed(common::open_store(dir.path()).as_ref(), auth);
    let (gw_sink, gw_stats) = sink(true, epoch).await;
    let gateway = Measured::spawn(
        GATEWAY_ENV,
        &write_config(
            dir.path(),
            "gateway",
            gw_sink,
            &GatewayStore {
                node: Some("bench".into()),
                ..GatewayStore::sqlite()
            },
        )
        .to_string_lossy(),
        &dir.path().join("gateway.log"),
    );
    let (raw_sink, raw_stats) = sink(false, epoch).await;
    let relay = Measured::spawn(
        RELAY_ENV,
        &raw_sink.to_string(),
        &dir.path().join("relay.log"),
    );
    let g = Target::Gateway(gateway.addr);
    let gt = Target::GatewayTls(gateway.addr);
    let r = Target::Relay(relay.addr);

    println!(
        "fedgate gateway bench: {} cores, {secs} s windows, 1 KiB message stanzas ({} per write), loopback; open-files limit {nofile}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        env_num("FEDGATE_BENCH_BATCH", 16).max(1)
    );
    println!(
        "gateway process pid {}, relay process pid {}, load process pid {}",
        gateway.pid,
        relay.pid,
        std::process::id()
    );
    let only = std::env::var("FEDGATE_BENCH_ONLY").unwrap_or_default();
    let run_part = |p: &str| only.is_empty() || only.split(',').any(|o| o == p);
    let rounds = env_num("FEDGATE_BENCH_ROUNDS", 1).max(1);
    if run_part("throughput") {
        println!();
        println!(
            "== 1. relay throughput (partner -> gateway process -> internal server; dialback; CPU = the measured process's utime+stime from /proc) =="
        );
    }
    for n in [1usize, 100] {
        if !run_part("throughput") {
            break;
        }
        // FEDGATE_BENCH_PROFILE=1: fedgate only (for `perf record -p <gateway pid>`), no baseline.
        let profile = std::env::var_os("FEDGATE_BENCH_PROFILE").is_some();
        let fed = throughput(g, &gateway, &gw_stats, n, secs).await;
        let base = if profile {
            fed
        } else {
            throughput(r, &relay, &raw_stats, n, secs).await
        };
        let tls = throughput(gt, &gateway, &gw_stats, n, secs).await;
        let row = |name: &str, t: &Throughput| {
            println!(
                "  {n:>3} stream(s)  {name:<27} {:>9.0} stanzas/s {:>7.1} MB/s  {:>5.2} us CPU/stanza (load process {:>5.2})  {:>5.1}% of the relay  {:>5.3} cs/stanza",
                t.stanzas_per_s,
                mb(t.stanzas_per_s),
                t.cpu_us,
                t.load_cpu_us,
                100.0 * t.stanzas_per_s / base.stanzas_per_s,
                t.ctx_switches
            )
        };
        if !profile {
            row("plain TCP relay (baseline)", &base);
        }
        row("fedgate", &fed);
        row("fedgate, partner over TLS", &tls);
    }
    if run_part("latency") {
        println!();
        // Issue 26's target: added p99 <= 100 us at 5,000 stanzas/s.
        let n = env_num("FEDGATE_BENCH_LATENCY_STREAMS", 10).max(1) as usize;
        let rate = env_num("FEDGATE_BENCH_RATE", 5_000).max(1) as f64;
        println!(
            "== 2. latency at {rate:.0} stanzas/s over {n} streams (sender write -> internal server read) =="
        );
        let base = latency(r, &raw_stats, n, rate, secs, epoch).await;
        let fed = latency(g, &gw_stats, n, rate, secs, epoch).await;
        let tls = latency(gt, &gw_stats, n, rate, secs, epoch).await;
        for (name, l) in [
            ("plain TCP relay (baseline)", &base),
            ("fedgate", &fed),
            ("fedgate, partner over TLS", &tls),
        ] {
            println!(
                "  {name:<27} p50 {:>7.1} us  p99 {:>7.1} us  p99.9 {:>7.1} us  max {:>8.1} us  ({} samples, {:.0}/s)",
                l.p50, l.p99, l.p999, l.max, l.samples, l.achieved
            );
        }
        println!(
            "  added by fedgate:           p50 {:>7.1} us  p99 {:>7.1} us  (TLS: p50 {:>7.1} us  p99 {:>7.1} us)",
            fed.p50 - base.p50,
            fed.p99 - base.p99,
            tls.p50 - base.p50,
            tls.p99 - base.p99
        );
    }
    if run_part("setup") {
        println!();
        println!(
            "== 3. authenticated stream setup (4 concurrent partners; each stream closed once authenticated; setup time = TCP connect to dialback valid; CPU = the gateway process's per stream) =="
        );
        // The gateways compared: a build from before stream leases, this build on SQLite, and
        // this build on PostgreSQL.
        let mut others = Vec::new();
        if let Some(exe) = std::env::var_os("FEDGATE_BENCH_BASELINE_EXE") {
            let base_dir = dir.path().join("baseline");
            std::fs::create_dir(&base_dir).expect("the baseline gateway's dir");
            seed(common::open_store(&base_dir).as_ref(), auth);
            let config = write_config(&base_dir, "gateway", gw_sink, &GatewayStore::sqlite());
            let m = Measured::spawn_exe(
                Path::new(&exe),
                GATEWAY_ENV,
                &config.to_string_lossy(),
                &base_dir.join("gateway.log"),
            );
            println!(
                "  baseline gateway process pid {} ({})",
                m.pid,
                Path::new(&exe).display()
            );
            others.push(("SQLite, baseline build", m));
        }
        let postgres = std::env::var("FEDGATE_BENCH_STORE").is_ok_and(|s| s == "postgres");
        if postgres {
            let pg_dir = dir.path().join("postgres");
            std::fs::create_dir(&pg_dir).expect("the PostgreSQL gateway's dir");
            let store = GatewayStore {
                url: postgres_store("fedgate_bench_setup", auth).await,
                node: Some("bench-setup".into()),
                cert: None,
            };
            let config = write_config(&pg_dir, "gateway", gw_sink, &store);
            let m = Measured::spawn(
                GATEWAY_ENV,
                &config.to_string_lossy(),
                &pg_dir.join("gateway.log"),
            );
            println!("  PostgreSQL gateway process pid {}", m.pid);
            others.push(("PostgreSQL, this build", m));
        }
        let mut gateways: Vec<(&str, &Measured)> = Vec::new();
        if let Some((name, m)) = others.first().filter(|(n, _)| n.contains("baseline")) {
            gateways.push((*name, m));
        }
        gateways.push(("SQLite, this build", &gateway));
        gateways.extend(
            others
                .iter()
                .filter(|(n, _)| !n.contains("baseline"))
                .map(|(n, m)| (*n, m)),
        );
        for round in 1..=rounds {
            if rounds > 1 {
                println!("  round {round}:");
            }
            let base = setup_rate_bare_tls(4, secs).await;
            println!("    bare rustls handshakes (baseline)   {base:>7.0}/s");
            for tls in [true, false] {
                let kind = if tls {
                    "STARTTLS + dialback"
                } else {
                    "dialback"
                };
                for (name, m) in &gateways {
                    let s = setup_rate_gateway(m, tls, 4, secs).await;
                    println!(
                        "    {kind:<19} {name:<24} {:>7.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  gateway CPU {:>6.0} us/stream",
                        s.streams_per_s, s.p50_ms, s.p99_ms, s.cpu_us
                    );
                }
            }
        }
        for (_, m) in others {
            m.stop().await;
        }
    }
    gateway.stop().await;
    relay.stop().await;
    if only.split(',').any(|o| o == "pool") {
        println!();
        println!(
            "== 5. relay throughput of a pool: two gateway processes on one PostgreSQL store vs one (dialback, half the streams to each node; CPU = the nodes' utime+stime from /proc) =="
        );
        let pool_dir = dir.path().join("pool");
        std::fs::create_dir(&pool_dir).expect("the pool's dir");
        let (cert, key) = fedgate_gateway::tls::self_signed(HOSTED).expect("a certificate");
        let files = (pool_dir.join("cert.pem"), pool_dir.join("key.pem"));
        std::fs::write(&files.0, cert).expect("write cert.pem");
        std::fs::write(&files.1, key).expect("write key.pem");
        let url = postgres_store("fedgate_bench_pool", auth).await;
        let (pool_sink, pool_stats) = sink(true, epoch).await;
        let node = |name: &str| {
            let store = GatewayStore {
                url: url.clone(),
                node: Some(name.into()),
                cert: Some(files.clone()),
            };
            let config = write_config(&pool_dir, name, pool_sink, &store);
            Measured::spawn(
                GATEWAY_ENV,
                &config.to_string_lossy(),
                &pool_dir.join(format!("{name}.log")),
            )
        };
        let (a, b) = (node("bench-a"), node("bench-b"));
        println!("  node bench-a pid {}, node bench-b pid {}", a.pid, b.pid);
        let n = env_num("FEDGATE_BENCH_POOL_STREAMS", 100) as usize;
        for round in 1..=rounds {
            let one =
                throughput_over(&[Target::Gateway(a.addr)], &[&a], &pool_stats, n, secs).await;
            let two = throughput_over(
                &[Target::Gateway(a.addr), Target::Gateway(b.addr)],
                &[&a, &b],
                &pool_stats,
                n,
                secs,
            )
            .await;
            for (name, t) in [
                ("one node (bench-a)", &one),
                ("two nodes (half each)", &two),
            ] {
                println!(
                    "  round {round}  {n:>3} streams  {name:<22} {:>9.0} stanzas/s {:>7.1} MB/s  {:>5.2} us gateway CPU/stanza (load process {:>5.2})  {:>5.1}% of one node",
                    t.stanzas_per_s,
                    mb(t.stanzas_per_s),
                    t.cpu_us,
                    t.load_cpu_us,
                    100.0 * t.stanzas_per_s / one.stanzas_per_s
                );
            }
        }
        a.stop().await;
        b.stop().await;
    }
    if only.split(',').any(|o| o == "mix") {
        println!();
        println!(
            "== 6. relay throughput by partner type (a gateway process of its own: 100 Federated and 100 PublicUnverified partners, bob's authorisations and per-user policy; dialback; CPU = the gateway's utime+stime from /proc) =="
        );
        let mix_dir = dir.path().join("mix");
        std::fs::create_dir(&mix_dir).expect("the mix's dir");
        let t0 = Instant::now();
        {
            let store = common::open_store(&mix_dir);
            seed(store.as_ref(), auth);
            seed_mix(store.as_ref(), auth);
        }
        println!(
            "  store seeded in {:.1} s: {UNVERIFIED_PARTNERS} PublicUnverified partners, {} authorisations, tag:bench granted to {MIX_USERS} users, Global EnableXmppAccess False",
            t0.elapsed().as_secs_f64(),
            UNVERIFIED_PARTNERS + (MIX_USERS - 1) * 10
        );
        let (mix_sink, mix_stats) = sink(true, epoch).await;
        let config = write_config(&mix_dir, "gateway", mix_sink, &GatewayStore::sqlite());
        let m = Measured::spawn(
            GATEWAY_ENV,
            &config.to_string_lossy(),
            &mix_dir.join("gateway.log"),
        );
        println!("  mix gateway process pid {}", m.pid);
        let (fed, unv) = (Target::Gateway(m.addr), Target::GatewayUnverified(m.addr));
        for round in 1..=rounds {
            for n in [1usize, 100] {
                let all_fed = throughput(fed, &m, &mix_stats, n, secs).await;
                let mut rows = vec![("Federated", all_fed)];
                if n > 1 {
                    let half = throughput_over(&[fed, unv], &[&m], &mix_stats, n, secs).await;
                    rows.push(("half PublicUnverified", half));
                }
                rows.push((
                    "PublicUnverified",
                    throughput(unv, &m, &mix_stats, n, secs).await,
                ));
                for (name, t) in &rows {
                    println!(
                        "  round {round}  {n:>3} stream(s)  {name:<22} {:>9.0} stanzas/s {:>7.1} MB/s  {:>5.2} us gateway CPU/stanza (load process {:>5.2})  {:>5.1}% of Federated's CPU/stanza",
                        t.stanzas_per_s,
                        mb(t.stanzas_per_s),
                        t.cpu_us,
                        t.load_cpu_us,
                        100.0 * t.cpu_us / all_fed.cpu_us
                    );
                    if t.undelivered > 0 {
                        println!(
                            "    NOT DELIVERED: {} stanzas sent were not received (refused or lost; see {})",
                            t.undelivered,
                            mix_dir.join("gateway.log").display()
                        );
                    }
                }
            }
        }
        m.stop().await;
    }
    if run_part("memory") {
        println!();
        println!("== 4. memory per idle authenticated stream (separate gateway process, RSS) ==");
        let m = memory(dir.path(), gw_sink).await;
        println!(
            "  gateway RSS after warm-up: {:.1} MiB",
            m.base_kib as f64 / 1024.0
        );
        println!(
            "  {} idle dialback streams (plain): +{:.1} MiB = {:.1} KiB/stream (opened in {:.1} s, {:.0}/s)",
            m.plain_n,
            m.plain_kib as f64 / 1024.0,
            m.plain_kib as f64 / m.plain_n as f64,
            m.plain_secs,
            m.plain_n as f64 / m.plain_secs
        );
        println!(
            "  {} idle STARTTLS + dialback streams: +{:.1} MiB = {:.1} KiB/stream",
            m.tls_n,
            m.tls_kib as f64 / 1024.0,
            m.tls_kib as f64 / m.tls_n.max(1) as f64
        );
    }
    println!();
    println!("total {:.0} s", started.elapsed().as_secs_f64());
}
