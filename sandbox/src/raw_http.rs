//! An independent, blocking HTTP/1.1 test client for the DAV servers, on
//! `ureq` (its own HTTP/1.1 code, nothing shared with the daemon's
//! reqwest/hyper stack): Basic auth, any method (PROPFIND, MKCALENDAR, REPORT),
//! bodies as bytes, every status returned rather than raised.
//!
//! Like [`super::raw_imap`], it shares no code with the daemon's HTTP stack,
//! so tests can check what the daemon wrote through a second path.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest response body read (a PROPFIND of a big collection, an .ics).
const MAX_BODY: u64 = 512 * 1024 * 1024;

/// A server address plus optional Basic credentials.
#[derive(Debug, Clone)]
pub struct RawHttp {
    host: String,
    port: u16,
    authorization: Option<String>,
    agent: ureq::Agent,
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
    /// The connection failed or the response could not be read.
    #[error("HTTP: {0}")]
    Transport(#[from] ureq::Error),
    /// The request could not be built (a method or header the client refuses).
    #[error("HTTP request: {0}")]
    Request(#[from] ureq::http::Error),
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
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .allow_non_standard_methods(true)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_per_call(Some(IO_TIMEOUT))
            .build();
        RawHttp {
            host: host.to_owned(),
            port,
            authorization: None,
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// Sends `Authorization: Basic …` with every request.
    pub fn with_basic_auth(mut self, user: &str, password: &str) -> RawHttp {
        let token = STANDARD.encode(format!("{user}:{password}"));
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
        let method = ureq::http::Method::from_bytes(method.as_bytes()).map_err(|_| {
            HttpError::Malformed {
                expected: "an HTTP method",
                got: method.to_owned(),
            }
        })?;
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("http://{}:{}{path}", self.host, self.port));
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = self.agent.run(request.body(body)?)?;
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()?;
        Ok(HttpResponse {
            status: response.status().as_u16(),
            headers,
            body,
        })
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
