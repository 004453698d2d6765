//! The command line's way into a running `shardex run`: its address (`--api`, `SHARDEX_API`, or
//! the `api.addr` file the daemon writes into its data folder) and its admin token
//! (`SHARDEX_TOKEN`, or `admin.token` in the data folder), and JSON requests with the
//! daemon's refusals passed on as errors.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;
use shardex_core::{Action, Event};

/// The file, in the data folder, where `shardex run` writes the address it listens on.
pub const ADDR_FILE: &str = "api.addr";

/// A connection to the daemon's API.
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Client {
    /// Finds the daemon for the data folder `data` (or at `api`, `host:port`).
    pub fn connect(data: &Path, api: Option<&str>) -> anyhow::Result<Self> {
        Self::connect_as(data, api, None)
    }

    /// Like [`Client::connect`], with a bearer token given (else `SHARDEX_TOKEN`, else the
    /// data folder's admin token).
    pub fn connect_as(data: &Path, api: Option<&str>, token: Option<&str>) -> anyhow::Result<Self> {
        let addr = match api {
            Some(a) => a.to_string(),
            None => {
                let file = data.join(ADDR_FILE);
                std::fs::read_to_string(&file)
                    .with_context(|| {
                        format!(
                            "no running `shardex run` for {} ({} is missing; start the daemon \
                             or give --api HOST:PORT)",
                            data.display(),
                            file.display()
                        )
                    })?
                    .trim()
                    .to_string()
            }
        };
        let token = match token
            .map(str::to_string)
            .ok_or(())
            .or_else(|()| std::env::var("SHARDEX_TOKEN"))
        {
            Ok(t) => t,
            Err(_) => {
                let file = data.join("admin.token");
                std::fs::read_to_string(&file)
                    .with_context(|| {
                        format!(
                            "could not read the admin token {} (or set SHARDEX_TOKEN)",
                            file.display()
                        )
                    })?
                    .trim()
                    .to_string()
            }
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .build()
            .into();
        let base = if addr.starts_with("http://") {
            addr
        } else {
            format!("http://{addr}")
        };
        Ok(Self { base, token, agent })
    }

    /// The answer to a request, or the daemon's refusal as an error.
    fn answer(
        &self,
        what: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Value> {
        let mut response =
            response.with_context(|| format!("could not reach shardex at {}", self.base))?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("{what}: the answer could not be read"))?;
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            // A problem document (RFC 9457) says it in `detail`; older routes in `error`.
            let why = json
                .get("detail")
                .or_else(|| json.get("error"))
                .and_then(Value::as_str)
                .map_or_else(|| json.to_string(), str::to_string);
            bail!("{what}: refused ({status}): {why}");
        }
        Ok(json)
    }

    /// `GET path` as a server-sent event stream (`Accept: text/event-stream`), read as it
    /// comes, with no overall time limit; a refusal is an error as for [`Client::get`].
    pub fn stream(&self, path: &str) -> anyhow::Result<Box<dyn std::io::BufRead>> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(std::time::Duration::from_secs(10)))
            .build()
            .into();
        let r = agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Accept", "text/event-stream")
            .call();
        let response = r.with_context(|| format!("could not reach shardex at {}", self.base))?;
        if !response.status().is_success() {
            self.answer(&format!("GET {path}"), Ok(response))?;
            bail!("GET {path}: refused");
        }
        Ok(Box::new(std::io::BufReader::new(
            response.into_body().into_reader(),
        )))
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call();
        self.answer(&format!("GET {path}"), r)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(body.to_string());
        self.answer(&format!("POST {path}"), r)
    }

    /// `POST path` with a JSON body and extra headers (e.g. `Idempotency-Key`).
    pub fn post_with(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Value> {
        let mut req = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Content-Type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send(body.to_string());
        self.answer(&format!("POST {path}"), r)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .agent
            .delete(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call();
        self.answer(&format!("DELETE {path}"), r)
    }

    /// Applies one ledger action; its events.
    pub fn act(&self, action: &Action) -> anyhow::Result<Vec<Event>> {
        let body = serde_json::to_value(action)?;
        let mut answer = self.post("/v1/actions", &body)?;
        let events = answer
            .get_mut("events")
            .map(Value::take)
            .unwrap_or_default();
        serde_json::from_value(events).context("the daemon's events could not be read")
    }
}
