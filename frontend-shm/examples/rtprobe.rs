//! Round-trip probe (local experiment).
use btfuse_core::ring::{Request, Response};
use btfuse_shm::Client;
use std::time::Instant;
fn main() {
    let sock = std::env::args().nth(1).unwrap();
    let c = Client::connect(&sock).unwrap();
    c.write("/hot", vec![7u8; 4096]).unwrap();
    let n = 200_000;
    for round in 0..3 {
        let floor = btfuse_shm::channel::cache_line_round_trip(20000);
        let t = Instant::now();
        let mut buf = [0u8; 4096];
        for _ in 0..n {
            let f = c.open("/hot").unwrap();
            f.read_at(&mut buf, 0).unwrap();
            drop(f);
        }
        let cat = t.elapsed().as_nanos() as f64 / n as f64;
        let t = Instant::now();
        for _ in 0..n {
            let f = c.open("/hot").unwrap();
            drop(f);
        }
        let oc = t.elapsed().as_nanos() as f64 / n as f64;
        let f = c.open("/hot").unwrap();
        let t = Instant::now();
        for _ in 0..n {
            f.read_at(&mut buf, 0).unwrap();
        }
        let pr = t.elapsed().as_nanos() as f64 / n as f64;
        let t = Instant::now();
        for _ in 0..n {
            f.read_at(&mut buf[..1], 0).unwrap();
        }
        let pr1 = t.elapsed().as_nanos() as f64 / n as f64;
        let t = Instant::now();
        for _ in 0..n {
            c.request(
                &Request::GetFlags {
                    fd: f.description(),
                },
                |r| match r {
                    Response::Flags(_) => Ok(()),
                    _ => panic!(),
                },
            )
            .unwrap();
        }
        let gf = t.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "round {round}: floor {floor:.0} cat {cat:.0} open+close {oc:.0} pread4k {pr:.0} pread1 {pr1:.0} getflags {gf:.0}"
        );
    }
}
