//! A fault-injecting TCP proxy in front of a real server, for what a real
//! server cannot do on demand: lie in its answers or trickle them. Client
//! bytes pass through as they are; server bytes pass through the fault.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// What the proxy does to the server's bytes.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Every `[APPENDUID v set]` says `set` = `1:4294967295` instead.
    HugeAppendUid,
    /// Once the server's bytes contain `marker`, the rest of the
    /// connection goes one byte every `every`.
    TrickleAfter {
        /// Where the trickle starts.
        marker: Vec<u8>,
        /// The pause between bytes.
        every: Duration,
    },
    /// Server lines holding `containing` are not passed on.
    DropLines {
        /// What marks a line to drop.
        containing: Vec<u8>,
    },
}

/// A running proxy; it stops accepting when dropped.
pub struct FaultProxy {
    /// Its loopback port.
    pub port: u16,
    /// Times the fault was applied.
    pub applied: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream_port`.
    pub fn start(upstream_port: u16, fault: Fault) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let applied = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (applied.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    continue;
                };
                let (fault, count) = (fault.clone(), count.clone());
                std::thread::spawn(move || relay(client, server, fault, count));
            }
        });
        Ok(FaultProxy {
            port,
            applied,
            stop,
        })
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn relay(client: TcpStream, server: TcpStream, fault: Fault, count: Arc<AtomicUsize>) {
    let (Ok(mut c_read), Ok(mut s_write)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = io::copy(&mut c_read, &mut s_write);
        let _ = s_write.shutdown(Shutdown::Write);
    });
    let _ = serve_back(server, client, &fault, &count);
}

/// Server → client, through the fault.
fn serve_back(
    mut server: TcpStream,
    mut client: TcpStream,
    fault: &Fault,
    count: &AtomicUsize,
) -> io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut trickling = false;
    loop {
        let n = server.read(&mut buf)?;
        if n == 0 {
            client.write_all(&pending)?;
            return client.shutdown(Shutdown::Write);
        }
        pending.extend_from_slice(&buf[..n]);
        match fault {
            Fault::HugeAppendUid | Fault::DropLines { .. } => {
                // Whole lines only, so a code split across reads is seen.
                let Some(end) = pending.windows(2).rposition(|w| w == b"\r\n") else {
                    continue;
                };
                let rest = pending.split_off(end + 2);
                let out = match fault {
                    Fault::DropLines { containing } => drop_lines(&pending, containing, count),
                    _ => rewrite_appenduid(&pending, count),
                };
                client.write_all(&out)?;
                pending = rest;
            }
            Fault::TrickleAfter { marker, every } => {
                if !trickling && let Some(at) = find(&pending, marker) {
                    trickling = true;
                    count.fetch_add(1, Ordering::SeqCst);
                    client.write_all(&pending[..at])?;
                    pending.drain(..at);
                }
                if !trickling {
                    client.write_all(&pending)?;
                    pending.clear();
                    continue;
                }
                while !pending.is_empty() {
                    client.write_all(&pending[..1])?;
                    pending.remove(0);
                    std::thread::sleep(*every);
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn drop_lines(bytes: &[u8], containing: &[u8], count: &AtomicUsize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if find(line, containing).is_some() {
            count.fetch_add(1, Ordering::SeqCst);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

fn rewrite_appenduid(bytes: &[u8], count: &AtomicUsize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(at) = find(rest, b"[APPENDUID ") {
        let start = at + b"[APPENDUID ".len();
        let Some(close) = rest[start..].iter().position(|&b| b == b']') else {
            break;
        };
        let code = &rest[start..start + close];
        let validity = code.split(|&b| b == b' ').next().unwrap_or(b"1");
        out.extend_from_slice(&rest[..start]);
        out.extend_from_slice(validity);
        out.extend_from_slice(b" 1:4294967295");
        count.fetch_add(1, Ordering::SeqCst);
        rest = &rest[start + close..];
    }
    out.extend_from_slice(rest);
    out
}
