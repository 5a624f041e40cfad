//! Times what a new client's connection costs: `Client::connect` (the socket's `connect`, the
//! hello, the welcome with its two memfds, both mapped), then the first request (a `stat` of
//! the root), then the connection's end, COUNT times with a pause between connections (a
//! process that starts now and then finds the CPUs asleep), and prints each part's median and
//! quartiles in microseconds.
//!
//! ```text
//! cargo run --release -p btfuse-ring-client --example connect_time -- SOCKET [COUNT] [PAUSE_US]
//! ```
//!
//! SOCKET is a ring socket (`btfuse-fuse` logs it; `/run/btfuse/<mount>.sock`); COUNT defaults
//! to 2,000 and PAUSE_US to 200.

use std::time::{Duration, Instant};

use btfuse_ring_client::Client;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(socket) = args.next() else {
        eprintln!("usage: connect_time SOCKET [COUNT] [PAUSE_US]");
        std::process::exit(2);
    };
    let number = |arg: Option<String>, default: u64| match arg.map(|a| a.parse::<u64>()) {
        None => default,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("connect_time: COUNT and PAUSE_US are positive whole numbers");
            std::process::exit(2);
        }
    };
    let count = number(args.next(), 2_000) as usize;
    let pause = Duration::from_micros(number(args.next(), 200));
    let mut parts = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..count {
        let started = Instant::now();
        let client = Client::connect(&socket).unwrap_or_else(|e| {
            eprintln!("connect_time: cannot connect to {socket}: {e}");
            std::process::exit(1);
        });
        let connected = Instant::now();
        if let Err(e) = client.metadata("/") {
            eprintln!("connect_time: stat of / failed: {e}");
            std::process::exit(1);
        }
        let answered = Instant::now();
        drop(client);
        let ended = Instant::now();
        parts[0].push(connected - started);
        parts[1].push(answered - connected);
        parts[2].push(ended - answered);
        std::thread::sleep(pause);
    }
    for (name, times) in ["connect", "first request", "end"].iter().zip(&mut parts) {
        times.sort();
        let at = |q: usize| times[q * (times.len() - 1) / 4].as_secs_f64() * 1e6;
        println!(
            "{name:<14} median {:7.1} us  p25 {:7.1}  p75 {:7.1}",
            at(2),
            at(1),
            at(3)
        );
    }
}
