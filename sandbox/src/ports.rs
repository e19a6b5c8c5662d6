//! Free loopback ports, and probes that tell whether a server answers on one.
//!
//! The port is probed by binding `127.0.0.1:0` and released before the server
//! binds it, so another process may take it in between: servers retry their
//! start on "Address already in use" (see `ServerProcess::is_port_clash`).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use super::SandboxError;

/// A loopback TCP port that was free a moment ago.
pub(crate) fn free_port() -> Result<u16, SandboxError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| SandboxError::io("bind 127.0.0.1:0 to find a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| SandboxError::io("read the port bound on 127.0.0.1:0", e))?
        .port();
    Ok(port)
}

/// `n` distinct free ports (held together while probing, so they differ).
pub(crate) fn free_ports<const N: usize>() -> Result<[u16; N], SandboxError> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SandboxError::io("bind 127.0.0.1:0 to find a free port", e))?;
    let mut ports = [0u16; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener
            .local_addr()
            .map_err(|e| SandboxError::io("read the port bound on 127.0.0.1:0", e))?
            .port();
    }
    Ok(ports)
}

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether a server on `127.0.0.1:port` sends a first line starting with
/// `prefix` (an IMAP `* OK`, an SMTP/LMTP `220`).
pub(crate) fn greets(port: u16, prefix: &str) -> bool {
    let Some(stream) = connect(port) else {
        return false;
    };
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with(prefix)
}

/// Whether an HTTP server on `127.0.0.1:port` answers a request.
pub(crate) fn answers_http(port: u16) -> bool {
    let Some(mut stream) = connect(port) else {
        return false;
    };
    let request =
        format!("OPTIONS / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("HTTP/1.")
}

fn connect(port: u16) -> Option<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT)).ok()?;
    Some(stream)
}
