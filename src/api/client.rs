//! The client side of the API, used by the CLI: one HTTP/1.1 request per
//! connection over the Unix socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// Why a request did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket, or it refused us.
    #[error("cannot reach the daemon at {path}: {source} (is `mailrestore serve` running?)")]
    Unreachable {
        /// The socket.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The connection broke or the answer was not HTTP.
    #[error("the daemon at {path} did not answer properly: {message}")]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The daemon answered with an error.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable code.
        code: String,
        /// Sentence.
        message: String,
    },
}

/// A client for one socket.
#[derive(Debug, Clone)]
pub struct ApiClient {
    socket: PathBuf,
    timeout: Duration,
}

impl ApiClient {
    /// A client for `socket`.
    pub fn new(socket: &Path) -> Self {
        ApiClient {
            socket: socket.to_owned(),
            timeout: Duration::from_secs(30),
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET path` → the JSON answer.
    pub async fn get(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        self.send("GET", path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.send("POST", path, Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        self.send("DELETE", path, None).await
    }

    /// Sends one request; a non-2xx answer becomes [`ClientError::Api`].
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let (status, bytes) = self.raw(method, path, body).await?;
        if (200..300).contains(&status) {
            if bytes.is_empty() {
                return Ok(serde_json::Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|e| self.protocol(e));
        }
        // Read as plain JSON rather than as `wire::ErrorBody`: a daemon of
        // another version may answer a code this client does not know, and
        // its code and sentence are still worth showing.
        let error = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| match (&v["error"]["code"], &v["error"]["message"]) {
                (serde_json::Value::String(c), serde_json::Value::String(m)) => {
                    Some((c.clone(), m.clone()))
                }
                _ => None,
            });
        match error {
            Some((code, message)) => Err(ClientError::Api {
                status,
                code,
                message,
            }),
            None => Err(ClientError::Api {
                status,
                code: "http_error".into(),
                message: String::from_utf8_lossy(&bytes).trim().to_string(),
            }),
        }
    }

    /// Sends one request and returns the status and body as they are.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, Bytes), ClientError> {
        tokio::time::timeout(self.timeout, self.exchange(method, path, body))
            .await
            .map_err(|_| ClientError::Protocol {
                path: self.socket.clone(),
                message: format!("no answer within {}s", self.timeout.as_secs()),
            })?
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, Bytes), ClientError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Unreachable {
                    path: self.socket.clone(),
                    source,
                })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.protocol(e))?;
        tokio::spawn(conn);
        let payload = match body {
            Some(v) => Bytes::from(serde_json::to_vec(v).map_err(|e| self.protocol(e))?),
            None => Bytes::new(),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "mailrestore");
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(payload)).map_err(|e| self.protocol(e))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| self.protocol(e))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| self.protocol(e))?
            .to_bytes();
        Ok((status, bytes))
    }

    fn protocol(&self, e: impl std::fmt::Display) -> ClientError {
        ClientError::Protocol {
            path: self.socket.clone(),
            message: e.to_string(),
        }
    }
}
