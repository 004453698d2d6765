//! `shardex ctl events`: the event stream (decisions, modifications, leases, requests, shard
//! requests, OOM kills) as one page, or followed as it happens (`-f`, server-sent events),
//! resuming after an event id.

use std::io::BufRead;

use clap::Args;
use serde_json::{Value, json};

use super::tables::*;
use super::{Output, render};
use crate::client::Client;

/// What `ctl events` asks for.
#[derive(Debug, Args)]
pub(super) struct EventsArgs {
    /// Only these kinds, comma-separated: modification, reservation, lease, request, market,
    /// ledger, decision, oom, shard_request.
    #[arg(long, value_name = "KINDS")]
    kinds: Option<String>,
    /// Only events after this id (as `Last-Event-ID` resumes).
    #[arg(long, value_name = "ID")]
    after: Option<u64>,
    /// Keep following: print each event as it happens, until Ctrl-C.
    #[arg(short = 'f', long)]
    follow: bool,
}

/// Prints the events the token may see.
pub(super) fn events(client: &Client, a: &EventsArgs, out: Output) -> anyhow::Result<()> {
    let q = query(&[
        ("kinds", a.kinds.clone()),
        ("after", a.after.map(|x| x.to_string())),
    ]);
    let path = format!("/v1/events{q}");
    if !a.follow {
        let page = client.get(&path)?;
        let items = items(&page, "events");
        outln!(
            "{}",
            render(out, &page, || {
                let mut t = events_table(&items);
                if let Some(n) = page["missed"].as_u64().filter(|n| *n > 0) {
                    t.push_str(&format!("\n({n} older events are no longer kept)"));
                }
                t
            })?
        );
        return Ok(());
    }
    let reader = client.stream(&path)?;
    let mut event = Sse::default();
    if out == Output::Table {
        outln!("{}", events_table(&[]));
    }
    for line in reader.lines() {
        let line = line?;
        if line.is_empty() {
            if let Some(e) = event.take() {
                outln!("{}", one(out, &e)?);
            }
            continue;
        }
        event.line(&line);
    }
    Ok(())
}

/// One followed event as `out` prints it: a table row, a JSON line or a YAML document.
fn one(out: Output, e: &Value) -> anyhow::Result<String> {
    Ok(match out {
        Output::Table => events_table(std::slice::from_ref(e))
            .lines()
            .nth(1)
            .unwrap_or_default()
            .to_string(),
        Output::Json => serde_json::to_string(e)?,
        Output::Yaml => format!("---\n{}", render(out, e, String::new)?),
    })
}

/// A server-sent event being read: its fields until the blank line that ends it.
#[derive(Debug, Default)]
struct Sse {
    id: Option<u64>,
    kind: Option<String>,
    data: Vec<String>,
}

impl Sse {
    /// One line of the stream (comments, the keep-alives, are skipped).
    fn line(&mut self, line: &str) {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => self.id = value.parse().ok(),
            "event" => self.kind = Some(value.to_string()),
            "data" => self.data.push(value.to_string()),
            _ => {}
        }
    }

    /// The event read so far as `{"id","kind","data"}`, if it had data; starts the next.
    fn take(&mut self) -> Option<Value> {
        let s = std::mem::take(self);
        if s.data.is_empty() {
            return None;
        }
        let text = s.data.join("\n");
        let data: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        // The stream's data is the whole `{"id","kind","data"}` document already.
        if data.get("kind").is_some() && data.get("data").is_some() {
            return Some(data);
        }
        Some(json!({"id": s.id, "kind": s.kind, "data": data}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_s_lines_make_events_and_keep_alives_are_skipped() {
        let mut s = Sse::default();
        for l in [
            ": keep-alive",
            "id: 7",
            "event: oom",
            "data: {\"kills\": 1}",
        ] {
            s.line(l);
        }
        assert_eq!(
            s.take(),
            Some(json!({"id": 7, "kind": "oom", "data": {"kills": 1}}))
        );
        assert_eq!(s.take(), None, "a blank line alone is no event");
        s.line("data: {\"id\":8,\"kind\":\"decision\",\"data\":{\"to\":3}}");
        assert_eq!(s.take().unwrap()["data"]["to"], 3);
    }
}
