//! `shardex ledger check` and `shardex config check`.

use std::process::ExitCode;

use anyhow::Context;
use shardex_core::ports::LedgerStore;
use shardex_core::{HostBalance, Ledger, ResourceKind};
use shardex_store::{SqliteStore, StoreError};

use crate::DataArgs;
use crate::config::Config;

/// A runtime, the ledger's path and the store opened read-only (its own error left to the
/// caller, which may want to report broken invariants).
fn open_read_only(
    args: &DataArgs,
) -> anyhow::Result<(
    tokio::runtime::Runtime,
    std::path::PathBuf,
    Result<SqliteStore, StoreError>,
)> {
    let config = args.load_config()?;
    let path = args.ledger_path();
    if !path.exists() {
        anyhow::bail!(
            "no ledger at {} (start `shardex run` first, or pass --data DIR)",
            path.display()
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let opened = rt.block_on(SqliteStore::open_read_only(&path, config.shards));
    Ok((rt, path, opened))
}

/// Rebuilds the ledger read-only, prints where every shard is, and reports broken invariants.
pub fn check(args: &DataArgs) -> anyhow::Result<ExitCode> {
    let (rt, path, opened) = open_read_only(args)?;
    let store = match opened {
        Ok(store) => store,
        Err(StoreError::InvariantsBroken(violations)) => {
            outln!(
                "ledger {}: {} invariant(s) broken:",
                path.display(),
                violations.len()
            );
            for v in &violations {
                outln!("  - {v}");
            }
            return Ok(ExitCode::from(1));
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("could not rebuild the ledger at {}", path.display()));
        }
    };
    let ledger = store.ledger();
    outln!(
        "ledger {}: {} action(s) replayed, every one reproduced its recorded events",
        path.display(),
        store.seq()
    );
    out!("{}", describe(ledger)?);
    let balances = rt.block_on(store.journal_balances())?;
    let trial: rust_decimal::Decimal = balances.values().sum();
    if !trial.is_zero() {
        outln!(
            "The journal does not balance: its {} account(s) sum to {trial}, not zero.",
            balances.len()
        );
        rt.block_on(store.close());
        return Ok(ExitCode::from(1));
    }
    outln!(
        "journal: {} account(s), balanced (debits equal credits exactly)",
        balances.len()
    );
    outln!(
        "All invariants hold: every shard is in exactly one place, allocations fit their hosts, \
         and no lower tier keeps shards a higher tier is waiting for."
    );
    rt.block_on(store.close());
    Ok(ExitCode::SUCCESS)
}

/// Where the shards of every host are, in a table per host.
pub fn describe(ledger: &Ledger) -> anyhow::Result<String> {
    use std::fmt::Write;
    let mut out = String::new();
    let reservations = ledger.reservations().count();
    let workloads = ledger.workloads().count();
    let leases = ledger.leases().count();
    writeln!(
        out,
        "{reservations} reservation(s), {workloads} workload(s), {leases} active lease(s)"
    )?;
    for h in ledger.hosts() {
        let b: HostBalance = ledger.balance(h.id)?;
        writeln!(out, "{} ({}), in shards:", h.name, h.id)?;
        writeln!(
            out,
            "  {:<7}{:>10}{:>10}{:>11}{:>8}{:>8}{:>9}{:>12}{:>15}{:>8}",
            "kind",
            "capacity",
            "reserved",
            "allocated",
            "lent",
            "idle",
            "offered",
            "unreserved",
            "provider-lent",
            "free"
        )?;
        for k in ResourceKind::ALL {
            writeln!(
                out,
                "  {:<7}{:>10}{:>10}{:>11}{:>8}{:>8}{:>9}{:>12}{:>15}{:>8}",
                k.name(),
                b.capacity.get(k),
                b.reserved.get(k),
                b.allocated.get(k),
                b.lent_by_reservations.get(k),
                b.idle.get(k),
                b.offered.get(k),
                b.unreserved.get(k),
                b.lent_by_provider.get(k),
                b.free.get(k),
            )?;
        }
    }
    Ok(out)
}

/// Prints `tenant`'s invoice from the metered charges in the store.
pub fn invoice(args: &DataArgs, tenant: &str, period: Option<&str>) -> anyhow::Result<ExitCode> {
    use shardex_core::billing::invoice;
    let share = args.load_config()?.pricing.lender_share;
    use shardex_core::{Span, Timestamp};
    let (rt, _, opened) = open_read_only(args)?;
    let store = opened?;
    let ledger = store.ledger();
    let t = ledger
        .tenant_named(tenant)
        .with_context(|| format!("no tenant named {tenant:?} in the ledger"))?
        .id;
    let to = ledger.now();
    let from = match period {
        Some(p) => {
            let span: Span = p.parse().context("in --period")?;
            Timestamp::from_millis(
                to.millis()
                    .saturating_sub(i64::try_from(span.millis()).unwrap_or(i64::MAX))
                    .max(0),
            )?
        }
        None => Timestamp::EPOCH,
    };
    let charges = rt.block_on(store.charges(Some(t), from, to))?;
    let inv = invoice(t, from, to, &charges, share);
    outln!(
        "invoice of {tenant} ({t}) for {} .. {} (ms since the epoch)",
        from.millis(),
        to.millis()
    );
    outln!(
        "{:<52} {:>14} {:>16} {:>14}",
        "item",
        "shard-hours",
        "unit price",
        "amount"
    );
    for l in &inv.lines {
        outln!(
            "{:<52} {:>14} {:>16} {:>14}",
            l.what,
            l.shard_hours.round_dp(4),
            l.unit_price.normalize(),
            l.amount.normalize()
        );
    }
    outln!(
        "{:<52} {:>14} {:>16} {:>14}",
        "total",
        "",
        "",
        inv.total.normalize()
    );
    rt.block_on(store.close());
    Ok(ExitCode::SUCCESS)
}

/// Validates the configuration and prints it whole.
pub fn config(args: &DataArgs) -> anyhow::Result<ExitCode> {
    let (config, source) = Config::load(args.config.as_deref(), &args.default_config_path())?;
    match source {
        Some(path) => eprintln!("{path}: valid"),
        None => eprintln!("no configuration file; these are the defaults"),
    }
    out!("{}", toml::to_string_pretty(&config)?);
    Ok(ExitCode::SUCCESS)
}
