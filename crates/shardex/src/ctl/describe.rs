//! `shardex ctl describe`: everything about one object on one page: a workload's usage,
//! entitlement and limits in force, its forecast, the engine's latest decisions and its shard
//! requests; a reservation with its modifications (pending ones too) and workloads.

use clap::Subcommand;
use serde_json::json;

use super::tables::*;
use super::{Output, render};
use crate::client::Client;

/// What `ctl describe` shows.
#[derive(Debug, Subcommand)]
pub(super) enum DescribeWhat {
    /// A workload: usage, entitlement, limits in force, forecast, decisions, shard requests.
    Workload {
        /// Its id.
        id: u64,
    },
    /// A reservation: its holding, modifications (pending ones too) and workloads.
    Reservation {
        /// Its id.
        id: u64,
    },
}

/// Prints `what` as one page (or one document with `-o json|yaml`).
pub(super) fn describe(client: &Client, what: &DescribeWhat, out: Output) -> anyhow::Result<()> {
    let page = match what {
        DescribeWhat::Workload { id } => workload(client, *id, out)?,
        DescribeWhat::Reservation { id } => reservation(client, *id, out)?,
    };
    outln!("{page}");
    Ok(())
}

fn workload(client: &Client, id: u64, out: Output) -> anyhow::Result<String> {
    let w = client.get(&format!("/v1/workloads/{id}"))?;
    // A workload with no samples yet has no forecast: the page says so instead of failing.
    let forecast = client
        .get(&format!("/v1/workloads/{id}/forecast"))
        .unwrap_or_else(|e| json!({ "none": e.to_string() }));
    let decisions = client.get(&format!("/v1/workloads/{id}/decisions?limit=10"))?;
    let requests = client.get(&format!("/v1/shard-requests?workload={id}"))?;
    let doc = json!({
        "workload": w,
        "forecast": forecast,
        "decisions": decisions["decisions"],
        "shard_requests": requests["shard_requests"],
    });
    render(out, &doc, || {
        let mut page = vec![
            format!(
                "Workload {} ({}), reservation {}, allocation cpu/mem/net/iops {}, OOM kills {}",
                w["id"],
                text(&w["name"]),
                w["reservation"],
                shards(&w["allocation"]),
                w["oom_kills"]
            ),
            String::new(),
            workloads_table(std::slice::from_ref(&w)),
            String::new(),
            "Forecast (next step, physical units):".into(),
        ];
        page.push(match forecast["steps"].as_array().and_then(|s| s.first()) {
            Some(step) => forecast_table(std::slice::from_ref(step)),
            None => format!("  none yet: {}", text(&forecast["none"])),
        });
        page.push(String::new());
        page.push("Decisions (newest first):".into());
        page.push(decisions_table(&items(&decisions, "decisions")));
        page.push(String::new());
        page.push("Shard requests:".into());
        page.push(shard_requests_table(&items(&requests, "shard_requests")));
        page.join("\n")
    })
}

fn reservation(client: &Client, id: u64, out: Output) -> anyhow::Result<String> {
    let r = client.get(&format!("/v1/reservations/{id}"))?;
    let mods = client.get(&format!("/v1/reservations/{id}/modifications"))?;
    let wls = client.get(&format!("/v1/reservations/{id}/workloads"))?;
    let doc = json!({
        "reservation": r,
        "modifications": mods["modifications"],
        "workloads": wls["workloads"],
    });
    render(out, &doc, || {
        [
            reservations_table(std::slice::from_ref(&r)),
            String::new(),
            "Modifications:".into(),
            modifications_table(&items(&mods, "modifications")),
            String::new(),
            "Workloads:".into(),
            workloads_table(&items(&wls, "workloads")),
        ]
        .join("\n")
    })
}
