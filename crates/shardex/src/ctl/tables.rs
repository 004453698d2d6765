//! How `shardex ctl` lays out the API's documents as aligned columns.

use serde_json::Value;

/// The array under `key` in an API document (empty when there is none).
pub(super) fn items(v: &Value, key: &str) -> Vec<Value> {
    v[key].as_array().cloned().unwrap_or_default()
}

/// A query string from the parameters that are given: `?a=1&b=x`, or nothing.
pub(super) fn query(params: &[(&str, Option<String>)]) -> String {
    let given: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    if given.is_empty() {
        String::new()
    } else {
        format!("?{}", given.join("&"))
    }
}

/// A cell: strings as they are, null as "-".
pub(super) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub(super) fn shards(v: &Value) -> String {
    format!("{}/{}/{}/{}", v["cpu"], v["memory"], v["net"], v["iops"])
}

pub(super) fn reservations_table(items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|r| {
            vec![
                r["id"].to_string(),
                r["tenant"].to_string(),
                text(&r["host"]),
                text(&r["tier"]),
                text(&r["state"]),
                shards(&r["now"]),
                text(&r["window"]["start"]),
                text(&r["window"]["end"]),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "TENANT",
            "HOST",
            "TIER",
            "STATE",
            "NOW cpu/mem/net/iops",
            "START",
            "END",
        ],
        &rows,
    )
}

pub(super) fn workloads_table(items: &[Value]) -> String {
    let mut rows = Vec::new();
    for w in items {
        for (kind, k) in w["kinds"].as_object().into_iter().flatten() {
            rows.push(vec![
                w["id"].to_string(),
                text(&w["name"]),
                kind.clone(),
                text(&k["usage"]),
                if k["censored"] == true {
                    "yes".into()
                } else {
                    "no".into()
                },
                text(&k["entitlement"]),
                text(&k["limit_in_force"]),
            ]);
        }
    }
    table(
        &[
            "ID",
            "NAME",
            "KIND",
            "USAGE",
            "AT LIMIT",
            "ENTITLEMENT",
            "IN FORCE",
        ],
        &rows,
    )
}

pub(super) fn modifications_table(items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|m| {
            let changes = m["changes"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| format!("{k}{}", text(v)))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                m["id"].to_string(),
                changes,
                text(&m["state"]),
                text(&m["window"]["start"]),
                text(&m["window"]["end"]),
            ]
        })
        .collect();
    table(&["ID", "CHANGES", "STATE", "START", "END"], &rows)
}

pub(super) fn invoice_table(r: &Value) -> String {
    let rows: Vec<Vec<String>> = r["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            vec![
                text(&l["what"]),
                text(&l["shard_hours"]),
                text(&l["unit_price"]),
                text(&l["amount"]),
            ]
        })
        .collect();
    format!(
        "{}\ntotal {} ({} to {})",
        table(&["WHAT", "SHARD-HOURS", "UNIT PRICE", "AMOUNT"], &rows),
        text(&r["total"]),
        text(&r["from"]),
        text(&r["to"])
    )
}

/// Aligned columns.
pub(super) fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(head.iter().map(|h| (*h).to_string()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// Forecast steps: per step and kind, the quantiles in physical units and the p99 in shards.
pub(super) fn forecast_table(steps: &[Value]) -> String {
    let mut rows = Vec::new();
    for step in steps {
        for (kind, q) in step["kinds"].as_object().into_iter().flatten() {
            rows.push(vec![
                text(&step["at"]),
                kind.clone(),
                text(&q["p50"]),
                text(&q["p90"]),
                text(&q["p95"]),
                text(&q["p99"]),
                text(&q["shards"][3]),
            ]);
        }
    }
    table(
        &["AT", "KIND", "P50", "P90", "P95", "P99", "P99 SHARDS"],
        &rows,
    )
}

/// The engine's decisions about a workload.
pub(super) fn decisions_table(items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|d| {
            vec![
                text(&d["at"]),
                text(&d["mode"]),
                text(&d["kind"]),
                format!("{} -> {}", d["from"], d["to"]),
                text(&d["outcome"]),
                text(&d["why"]),
            ]
        })
        .collect();
    table(&["AT", "MODE", "KIND", "SHARDS", "OUTCOME", "WHY"], &rows)
}

/// Shard requests: for whom, where, what is wanted, where each stands and the steps taken.
pub(super) fn shard_requests_table(items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|r| {
            let whose = match (r["workload"].as_u64(), r["modification"].as_u64()) {
                (Some(w), _) => format!("workload {w}"),
                (None, Some(m)) => format!("modification {m}"),
                (None, None) => "-".into(),
            };
            let steps = r["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| text(&s["step"]))
                .collect::<Vec<_>>()
                .join(",");
            vec![
                r["id"].to_string(),
                whose,
                text(&r["host"]),
                shards(&r["wanted"]),
                text(&r["status"]),
                steps,
                text(&r["raised"]),
                text(&r["reason"]),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "FOR",
            "HOST",
            "WANTED cpu/mem/net/iops",
            "STATUS",
            "STEPS",
            "RAISED",
            "REASON",
        ],
        &rows,
    )
}

/// Hosts with their capacity and where its shards are.
pub(super) fn hosts_table(items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|h| {
            let b = &h["balance"];
            vec![
                h["id"].to_string(),
                text(&h["name"]),
                shards(&h["capacity"]),
                shards(&b["reserved"]),
                shards(&b["allocated"]),
                shards(&b["free"]),
            ]
        })
        .collect();
    table(
        &["ID", "NAME", "CAPACITY", "RESERVED", "ALLOCATED", "FREE"],
        &rows,
    )
}

/// A host's market: the price per shard-hour and the shards offered, leased and waiting per
/// kind, then the caller's leases there.
pub(super) fn market_table(m: &Value) -> String {
    let rows: Vec<Vec<String>> = ["cpu", "memory", "net", "iops"]
        .iter()
        .map(|k| {
            vec![
                (*k).to_string(),
                text(&m["price"][k]),
                m["offered"][k].to_string(),
                m["leased"][k].to_string(),
                m["waiting"][k].to_string(),
            ]
        })
        .collect();
    let mut leases: Vec<Vec<String>> = Vec::new();
    for (side, key) in [("borrowed", "borrowed"), ("lent", "lent")] {
        for l in m[key].as_array().into_iter().flatten() {
            leases.push(vec![
                side.to_string(),
                l["id"].to_string(),
                l["workload"].to_string(),
                text(&l["lender"]),
                shards(&l["shards"]),
                text(&l["window"]["end"]),
                if l["reclaiming"] == true {
                    "yes".into()
                } else {
                    "no".into()
                },
            ]);
        }
    }
    format!(
        "{}\n\n{}",
        table(&["KIND", "PRICE", "OFFERED", "LEASED", "WAITING"], &rows),
        table(
            &[
                "YOURS",
                "LEASE",
                "WORKLOAD",
                "LENDER",
                "SHARDS",
                "ENDS",
                "RECLAIMING"
            ],
            &leases
        )
    )
}

/// Events: id, kind, what happened (the ledger event's name) and its data, shortened.
pub(super) fn events_table(items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|e| {
            let data = &e["data"];
            let what = data["event"].as_str().unwrap_or("-").to_string();
            let mut detail = data.to_string();
            if detail.chars().count() > 120 {
                detail = detail.chars().take(117).collect::<String>() + "...";
            }
            vec![e["id"].to_string(), text(&e["kind"]), what, detail]
        })
        .collect();
    table(&["ID", "KIND", "WHAT", "DATA"], &rows)
}
