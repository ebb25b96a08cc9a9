//! A bounded load generator that remembers which visits were acknowledged.
//!
//! Each request comes from its own loopback source address (see `support::source`), so the
//! journal line of every acknowledged visit can be found by its address.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::support::{source, visit_from};

/// Loader threads sending `GET /` until stopped, each from a fresh source address.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Addresses whose visit was answered 200.
    pub acked: Arc<Mutex<BTreeSet<String>>>,
    /// Addresses a visit was attempted from (acked or not).
    pub tried: Arc<Mutex<BTreeSet<String>>>,
}

impl Load {
    /// Starts `threads` loaders against `addr`, drawing addresses from `next` (shared between
    /// loads so that every request of a test has its own address). Each loader stops by itself
    /// after `max_per_thread` requests or `max_time`, whichever comes first.
    pub fn start(
        addr: SocketAddr,
        threads: usize,
        next: &Arc<AtomicU32>,
        max_per_thread: u32,
        max_time: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let tried = Arc::new(Mutex::new(BTreeSet::new()));
        let threads = (0..threads)
            .map(|_| {
                let (stop, acked, tried, next) = (
                    Arc::clone(&stop),
                    Arc::clone(&acked),
                    Arc::clone(&tried),
                    Arc::clone(next),
                );
                thread::spawn(move || {
                    let until = Instant::now() + max_time;
                    for _ in 0..max_per_thread {
                        if stop.load(SeqCst) || Instant::now() >= until {
                            return;
                        }
                        let src = source(next.fetch_add(1, SeqCst));
                        tried.lock().unwrap().insert(src.to_string());
                        match visit_from(src, addr) {
                            Ok(true) => {
                                acked.lock().unwrap().insert(src.to_string());
                            }
                            Ok(false) => {}
                            // The server is gone (killed, or stopped): back off a little.
                            Err(_) => thread::sleep(Duration::from_millis(5)),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            threads,
            acked,
            tried,
        }
    }

    /// Stops the loaders and waits for them.
    pub fn stop(mut self) -> (BTreeSet<String>, BTreeSet<String>) {
        self.stop.store(true, SeqCst);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        let tried = self.tried.lock().unwrap().clone();
        (acked, tried)
    }
}
