//! Serve the admin API alone, for API tests from outside Rust (tests/api: schemathesis) until
//! `fedgate serve` runs it on the admin listener:
//!
//! `cargo run -p fedgate-admin --example serve -- --store sqlite:/tmp/fedgate.db --listen 127.0.0.1:8080`
//!
//! Prints `listening on <addr>` once it accepts connections. Plain HTTP: loopback use only.

use std::net::SocketAddr;
use std::sync::Arc;

use fedgate_admin::{AdminState, router};
use fedgate_store::{StoreUrl, open};

fn usage() -> ! {
    eprintln!("usage: serve --store sqlite:<path> [--listen 127.0.0.1:<port>]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut store = None;
    let mut listen: SocketAddr = ([127, 0, 0, 1], 8080).into();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--store", Some(v)) => store = Some(v),
            ("--listen", Some(v)) => listen = v.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let url = StoreUrl::parse(&store.unwrap_or_else(|| usage())).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let store = open(&url).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let app = router(AdminState::new(Arc::from(store)));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .unwrap_or_else(|e| {
            eprintln!("cannot listen on {listen}: {e}");
            std::process::exit(1)
        });
    let addr = listener.local_addr().map_or(listen, |a| a);
    println!("listening on {addr}");
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("{e}");
        std::process::exit(1)
    }
}
