//! An independent, blocking HTTP/1.1 test client for the DAV servers: one
//! request per connection (`Connection: close`), Basic auth, bodies as bytes.
//!
//! Like [`super::raw_imap`], it shares no code with the daemon's HTTP stack,
//! so tests can check what the daemon wrote through a second path.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::base64;

const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// A server address plus optional Basic credentials.
#[derive(Debug, Clone)]
pub struct RawHttp {
    host: String,
    port: u16,
    authorization: Option<String>,
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code, e.g. 207.
    pub status: u16,
    /// Header names (as sent) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why an HTTP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The connection failed.
    #[error("HTTP connection: {0}")]
    Io(#[from] std::io::Error),
    /// The response could not be read.
    #[error("HTTP: expected {expected}, got {got:?}")]
    Malformed {
        /// What the client expected.
        expected: &'static str,
        /// What arrived.
        got: String,
    },
}

impl RawHttp {
    /// A client for `http://host:port`.
    pub fn new(host: &str, port: u16) -> RawHttp {
        RawHttp {
            host: host.to_owned(),
            port,
            authorization: None,
        }
    }

    /// Sends `Authorization: Basic …` with every request.
    pub fn with_basic_auth(mut self, user: &str, password: &str) -> RawHttp {
        let token = base64::encode(format!("{user}:{password}").as_bytes());
        self.authorization = Some(format!("Basic {token}"));
        self
    }

    /// Sends one request and reads the whole response. `path` is sent as is
    /// (percent-encode it yourself); `Host`, `Content-Length`,
    /// `Connection` and `Authorization` are added.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse, HttpError> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.host,
            self.port,
            body.len()
        );
        if let Some(authorization) = &self.authorization {
            head.push_str(&format!("Authorization: {authorization}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut writer = stream.try_clone()?;
        writer.write_all(head.as_bytes())?;
        writer.write_all(body)?;
        read_response(&mut BufReader::new(stream), method)
    }

    /// `PROPFIND` with `Depth` and an XML body.
    pub fn propfind(&self, path: &str, depth: &str, xml: &str) -> Result<HttpResponse, HttpError> {
        self.request(
            "PROPFIND",
            path,
            &[
                ("Depth", depth),
                ("Content-Type", "application/xml; charset=utf-8"),
            ],
            xml.as_bytes(),
        )
    }
}

fn read_response(reader: &mut impl BufRead, method: &str) -> Result<HttpResponse, HttpError> {
    let status_line = read_line(reader)?;
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| HttpError::Malformed {
            expected: "a status line",
            got: status_line.clone(),
        })?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| HttpError::Malformed {
            expected: "a header line",
            got: line.clone(),
        })?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut response = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    let no_body =
        method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304 || status < 200;
    if no_body {
        return Ok(response);
    }
    let chunked = response
        .header("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = response
        .header("Content-Length")
        .and_then(|v| v.parse::<usize>().ok());
    response.body = if chunked {
        read_chunked(reader)?
    } else if let Some(length) = length {
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    } else {
        let mut body = Vec::new();
        reader.read_to_end(&mut body)?;
        body
    };
    Ok(response)
}

fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| HttpError::Malformed {
            expected: "a chunk size",
            got: line.clone(),
        })?;
        if size == 0 {
            // Trailers, then the empty line.
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        read_line(reader)?;
    }
}

fn read_line(reader: &mut impl BufRead) -> Result<String, HttpError> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line)? == 0 {
        return Err(HttpError::Malformed {
            expected: "a line",
            got: "end of stream".to_owned(),
        });
    }
    let line = String::from_utf8_lossy(&line);
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_content_length_response() {
        let raw = b"HTTP/1.1 207 Multi-Status\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello";
        let response = read_response(&mut &raw[..], "PROPFIND").unwrap();
        assert_eq!(response.status, 207);
        assert_eq!(response.header("x-a"), Some("b"));
        assert_eq!(response.body, b"hello");
    }

    #[test]
    fn reads_a_chunked_response() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let response = read_response(&mut &raw[..], "GET").unwrap();
        assert_eq!(response.body, b"abcde");
    }

    #[test]
    fn refuses_a_garbled_status_line() {
        assert!(read_response(&mut &b"SMTP 220\r\n\r\n"[..], "GET").is_err());
    }
}
