//! Steady-state durable append rate: `append_load [THREADS [PER]]` runs
//! THREADS long-lived threads (default 64) that each append PER entries
//! (default 3 000) one at a time, each waiting for durability, and prints
//! appends/s. Directory: `ISNAD_LOG_BENCH_DIR` or the system temporary
//! directory.
#![allow(clippy::unwrap_used)] // A measurement program: panics are fine.

use std::time::Instant;

use isnad_log::{Entry, EventType, Log};
use isnad_types::{AgencyId, MessageId};

fn main() {
    let arg = |i: usize, d: u64| {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let (threads, per) = (arg(1, 64), arg(2, 3000));
    let dir = match std::env::var_os("ISNAD_LOG_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let (log, _) = Log::open(dir.path()).unwrap();
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let log = &log;
            s.spawn(move || {
                for k in 0..per {
                    let mut e = Entry::new(EventType::Sent, 1_790_000_000_000 + k);
                    let mut id = [0u8; 16];
                    id[..8].copy_from_slice(&(t * 1_000_000_000 + k).to_be_bytes());
                    e.message_id = Some(MessageId::from_bytes(id));
                    e.sender = Some(AgencyId::new("iq.moi.ahtd").unwrap());
                    e.recipient = Some(AgencyId::new("fr.mj.bepi").unwrap());
                    e.envelope_sha256 = Some([k as u8; 32]);
                    log.append(e).unwrap();
                }
            });
        }
    });
    let n = threads * per;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} appends by {threads} threads in {secs:.3} s: {:.0} appends/s",
        n as f64 / secs
    );
}
