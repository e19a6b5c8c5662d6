//! Reachability probes for `GET /v1/health`: a TCP connect, timed.

use std::io;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// Connects to `host:port` and closes at once; returns how long it took.
pub async fn tcp(host: &str, port: u16, timeout: Duration) -> io::Result<Duration> {
    let start = Instant::now();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Ok(Ok(_stream)) => Ok(start.elapsed()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {}s", timeout.as_secs()),
        )),
    }
}
