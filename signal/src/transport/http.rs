//! HTTP transport: batches `POST`ed as a JSON array to the incident service's `/v1/signals`.

use std::time::Duration;

use super::TransportError;
use crate::Signal;

/// Producer side of the HTTP transport.
#[derive(Clone, Debug)]
pub struct HttpSink {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl HttpSink {
    /// `base` is the incident service's address (`http://incident:9931`); `/v1/signals` is
    /// appended unless the URL already ends with it.
    pub fn new(base: &str, token: Option<String>) -> Result<HttpSink, TransportError> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(TransportError::Url {
                url: base.to_owned(),
                reason: "must start with http:// or https://",
            });
        }
        let trimmed = base.trim_end_matches('/');
        let url = if trimmed.ends_with("/v1/signals") {
            trimmed.to_owned()
        } else {
            format!("{trimmed}/v1/signals")
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(HttpSink { client, url, token })
    }

    pub async fn send(&self, batch: &[Signal]) -> Result<(), TransportError> {
        let mut req = self.client.post(&self.url).json(batch);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        Err(TransportError::HttpStatus {
            status: status.as_u16(),
            body: body.chars().take(200).collect(),
        })
    }
}
