//! A small blocking client for the admin API, used by the CLI.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::api::ApiError;

/// A call that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The host answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The host's one-line message.
        message: String,
    },
    /// The host could not be reached.
    #[error(
        "cannot reach the Rill host at {url}: {message} (is 'runtime serve' running? set --admin or RILL_ADMIN)"
    )]
    Unreachable {
        /// The admin URL.
        url: String,
        /// Why.
        message: String,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer from {url}: {message}")]
    Protocol {
        /// The URL called.
        url: String,
        /// Why.
        message: String,
    },
}

/// The admin API at one base URL.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client for `base`, such as `http://127.0.0.1:8080`.
    pub fn new(base: &str) -> Self {
        let base = if base.starts_with("http://") || base.starts_with("https://") {
            base.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", base.trim_end_matches('/'))
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build();
        Client {
            base,
            agent: config.into(),
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| self.unreachable(e))?;
        self.decode(&url, resp)
    }

    /// `GET path` as text.
    pub fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| ClientError::Protocol {
                url: url.clone(),
                message: e.to_string(),
            })?;
        if status >= 400 {
            return Err(ClientError::Api {
                status,
                message: text,
            });
        }
        Ok(text)
    }

    /// `POST path` with a JSON body.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Protocol {
            url: url.clone(),
            message: format!("cannot encode the request: {e}"),
        })?;
        let resp = self
            .agent
            .post(&url)
            .header("content-type", "application/json")
            .send(&bytes[..])
            .map_err(|e| match e {
                // A host refuses a body over its `admin_max_body_bytes` with 413 before
                // reading it and closes the connection, so a large body meets a closed
                // socket before the answer can be read: name the likely cause.
                ureq::Error::Io(io)
                    if bytes.len() > 1 << 20
                        && matches!(
                            io.kind(),
                            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                        ) =>
                {
                    ClientError::Api {
                        status: 413,
                        message: format!(
                            "the host closed the connection while the request body ({} bytes) \
                             was being sent: it is probably over the host's \
                             admin_max_body_bytes",
                            bytes.len()
                        ),
                    }
                }
                e => self.unreachable(e),
            })?;
        self.decode(&url, resp)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Result<(), ClientError> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .agent
            .delete(&url)
            .call()
            .map_err(|e| self.unreachable(e))?;
        self.decode::<serde_json::Value>(&url, resp).map(|_| ())
    }

    fn unreachable(&self, e: ureq::Error) -> ClientError {
        ClientError::Unreachable {
            url: self.base.clone(),
            message: e.to_string(),
        }
    }

    fn decode<T: DeserializeOwned>(
        &self,
        url: &str,
        mut resp: ureq::http::Response<ureq::Body>,
    ) -> Result<T, ClientError> {
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| ClientError::Protocol {
                url: url.to_owned(),
                message: e.to_string(),
            })?;
        if status >= 400 {
            let message = serde_json::from_str::<ApiError>(&text)
                .map(|e| e.error)
                .unwrap_or_else(|_| format!("HTTP {status}: {}", text.trim()));
            return Err(ClientError::Api { status, message });
        }
        let text = if text.is_empty() { "null" } else { &text };
        serde_json::from_str(text).map_err(|e| ClientError::Protocol {
            url: url.to_owned(),
            message: e.to_string(),
        })
    }
}
