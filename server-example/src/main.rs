//! `missive-server`: the example messaging server over WebSocket and HTTP.
//!
//! It will wire the `missive` engine into the whole product described in `PROTOCOL.md`
//! (accounts, 1:1 and group chat, media, receipts, presence, typing, push, stories, calls, E2EE);
//! see issues 6 and 7. Until then it says so and exits with a non-zero status rather than
//! pretending to serve.

fn main() {
    eprintln!(
        "missive-server is not built yet (issue 6). Try the log demo: cargo run -p missive-log --example demo"
    );
    std::process::exit(2);
}
