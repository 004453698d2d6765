//! The simulated cloud: its workloads, hosts, engine, market and billing stepped over the
//! trace's grid, with the tallies the report is made of.

use super::*;

/// How long moves take, what is not scored, and where the grid starts (ms).
pub(super) struct Timing {
    pub(super) migration: Span,
    pub(super) warmup: Span,
    pub(super) t0: i64,
}

/// A workload of the shardex cloud while it runs.
pub(super) struct Live {
    pub(super) id: WorkloadId,
    pub(super) tenant: TenantId,
    /// Next sample index.
    pub(super) next: usize,
    pub(super) first_ms: i64,
}

#[derive(Default)]
pub(super) struct Tally {
    pub(super) samples: u64,
    /// Allocation under min(usage, provisioned): what the workload was entitled to.
    pub(super) short: u64,
    /// Usage over the provisioned size: no allocation within the cap could serve it.
    pub(super) over_cap: u64,
    /// Allocation under usage, cap or not.
    pub(super) short_raw: u64,
}

pub(super) struct Sim<'a> {
    pub(super) series: &'a [Series],
    pub(super) kinds: Vec<ResourceKind>,
    pub(super) policy: Policy,
    pub(super) host_cap: ShardVector,
    pub(super) warmup_ms: i64,
    pub(super) t0: i64,
    pub(super) sizes: ShardSizes,
    pub(super) ledger: Ledger,
    pub(super) controller: Controller<StaticProvisioner, SimulatedMigrator>,
    /// The same profiler as `shardex run`'s: forecasters per workload and kind, demands.
    pub(super) profiler: shardex_agent::Profiler,
    pub(super) live: HashMap<usize, Live>,
    pub(super) by_id: HashMap<WorkloadId, usize>,
    pub(super) tallies: BTreeMap<ResourceKind, Tally>,
    pub(super) hosts_peak: usize,
    pub(super) util_sum: BTreeMap<ResourceKind, f64>,
    pub(super) util_steps: u64,
    /// Σ hosts in use over the steps with any (for the time-averaged count).
    pub(super) hosts_sum: u64,
    /// Σ workloads live over the steps (workload-steps, for migrations per workload-day).
    pub(super) workload_steps: u64,
    /// Account balances of the double-entry journal (a month of transactions would not fit
    /// in memory; each is checked to balance as it is posted).
    pub(super) balances: BTreeMap<Account, Decimal>,
    pub(super) prices: PriceTable,
    pub(super) book: PriceBook,
    pub(super) lent_shard_ms: BTreeMap<ResourceKind, u128>,
    pub(super) paid: Decimal,
    pub(super) lease_paid: Decimal,
    /// The first problems, in full, and how many there were in all.
    pub(super) problems: Vec<String>,
    pub(super) problem_count: usize,
    pub(super) moves_abandoned: usize,
    /// Hosts consolidation drained.
    pub(super) drains: usize,
    pub(super) tenants: u64,
    pub(super) daily: bool,
    /// Feed the profiler the true usage rather than what the simulated host shows.
    pub(super) open_loop: bool,
}

impl<'a> Sim<'a> {
    pub(super) fn new(
        series: &'a [Series],
        kinds: &[ResourceKind],
        policy: Policy,
        host_cap: ShardVector,
        timing: Timing,
        params: EngineParams,
    ) -> anyhow::Result<Self> {
        let Timing {
            migration,
            warmup,
            t0,
        } = timing;
        let mut ledger = Ledger::new();
        let start = Timestamp::from_millis(t0)?;
        ledger.apply(
            &Action::RegisterHost(action::RegisterHost {
                name: "host-0".into(),
                capacity: host_cap,
            }),
            start,
        )?;
        let controller = Controller::new(
            Engine::new(params),
            // Its own name space: hosts added to place a new workload are named `host-N`.
            StaticProvisioner::unlimited("provisioned", host_cap),
            SimulatedMigrator::new(migration),
        );
        // Every forecaster is installed per workload (a policy may need its provisioned size);
        // the factory only answers for a kind that is not simulated, which is never sampled.
        let profiler = shardex_agent::Profiler::new(
            Box::new(|_| {
                Box::new(shardex_forecast::reactive::Reactive::new(
                    shardex_forecast::reactive::DEFAULT_MARGIN,
                ))
            }),
            ShardSizes::default(),
        );
        Ok(Self {
            profiler,
            series,
            kinds: kinds.to_vec(),
            policy,
            host_cap,
            warmup_ms: i64::try_from(warmup.millis()).unwrap_or(i64::MAX),
            t0,
            sizes: ShardSizes::default(),
            ledger,
            controller,
            live: HashMap::new(),
            by_id: HashMap::new(),
            tallies: kinds.iter().map(|&k| (k, Tally::default())).collect(),
            hosts_peak: 1,
            util_sum: BTreeMap::new(),
            util_steps: 0,
            hosts_sum: 0,
            workload_steps: 0,
            balances: BTreeMap::new(),
            prices: PriceTable::default(),
            book: PriceBook::new(PriceCurve::default()),
            lent_shard_ms: BTreeMap::new(),
            paid: Decimal::ZERO,
            lease_paid: Decimal::ZERO,
            problems: Vec::new(),
            problem_count: 0,
            moves_abandoned: 0,
            drains: 0,
            tenants: 0,
            daily: false,
            open_loop: false,
        })
    }

    /// Meters what the ledger held up to `now`, before anything changes it.
    pub(super) fn meter(&mut self, now: Timestamp) -> anyhow::Result<()> {
        if now <= self.ledger.now() {
            return Ok(());
        }
        for c in accrue(&self.ledger, &self.prices, now)? {
            let t = charge_transaction(&c, DEFAULT_LENDER_SHARE)?;
            let sum: Decimal = t.postings.iter().map(|p| p.amount).sum();
            if !sum.is_zero() {
                bail!("the journal transaction {} does not balance: {sum}", t.memo);
            }
            for p in t.postings {
                *self.balances.entry(p.account).or_default() += p.amount;
            }
            self.paid += c.amount;
            if matches!(c.subject, Subject::Lease(_)) {
                self.lease_paid += c.amount;
                *self.lent_shard_ms.entry(c.kind).or_default() += c.shard_ms;
            }
        }
        Ok(())
    }

    pub(super) fn remap(&mut self, moved: &[(WorkloadId, WorkloadId)]) {
        for &(old, new) in moved {
            self.profiler.rename(old, new);
            if let Some(i) = self.by_id.remove(&old) {
                self.by_id.insert(new, i);
                if let Some(l) = self.live.get_mut(&i) {
                    l.id = new;
                }
            }
        }
    }

    pub(super) fn step(&mut self, slot: u32) -> anyhow::Result<()> {
        let t_ms = self.t0 + i64::from(slot) * STEP_S * 1000;
        let now = Timestamp::from_millis(t_ms)?;
        // Moves that finished since the last step, at their own time.
        while let Some(done) = self.controller.next_move_done().filter(|&d| d <= now) {
            self.meter(done)?;
            let r = self.controller.finish_due_moves(&mut self.ledger, done);
            self.note(r.problems, r.abandoned.len());
            self.remap(&r.moved);
        }
        self.meter(now)?;
        // What each workload holds now, indexed once.
        let mut held: HashMap<WorkloadId, ShardVector> = HashMap::new();
        for w in self.ledger.workloads() {
            held.insert(w.id, w.share);
        }
        for l in self.ledger.leases() {
            if let Some(h) = held.get_mut(&l.borrower) {
                *h = h.saturating_add(&l.vector);
            }
        }
        // Score this step's samples; retire workloads whose trace has ended.
        let mut ended = Vec::new();
        let mut used = BTreeMap::<ResourceKind, u128>::new();
        for (&i, live) in &mut self.live {
            let s = &self.series[i];
            if live.next >= s.slots.len() {
                ended.push(i);
                continue;
            }
            if s.slots[live.next] != slot {
                continue;
            }
            let values = s.values[live.next];
            let alloc = held.get(&live.id).copied().unwrap_or_default();
            let scored = t_ms - live.first_ms >= self.warmup_ms;
            for &k in &self.kinds {
                let v = values[k.index()];
                if v == MISSING {
                    continue;
                }
                *used.entry(k).or_default() += u128::from(v);
                if scored {
                    let t = self.tallies.entry(k).or_default();
                    t.samples += 1;
                    let cap = s.provisioned[k.index()].unwrap_or(u64::MAX);
                    let need = self.sizes.demand_shards(k, v);
                    if need > alloc.get(k) {
                        t.short_raw += 1;
                    }
                    if v > cap {
                        t.over_cap += 1;
                    }
                    if self.sizes.demand_shards(k, v.min(cap)) > alloc.get(k) {
                        t.short += 1;
                    }
                }
            }
        }
        for i in ended {
            if let Some(live) = self.live.remove(&i) {
                self.by_id.remove(&live.id);
                self.retire(&live, now)?;
                self.profiler.forget(live.id);
            }
        }
        // Place workloads that appear at this step.
        // Placed workloads have no leases yet: what they are expected to lease is held
        // back on their host for the other placements of this step.
        let mut expected: BTreeMap<shardex_core::HostId, ShardVector> = BTreeMap::new();
        for (i, s) in self.series.iter().enumerate() {
            if s.slots.first() == Some(&slot) && !self.live.contains_key(&i) {
                self.place(i, now, &mut expected)?;
            }
        }
        // Host utilisation over the hosts in use.
        let mut in_use: BTreeMap<shardex_core::HostId, ()> = BTreeMap::new();
        for w in self.ledger.workloads() {
            in_use.insert(w.host, ());
        }
        self.hosts_peak = self.hosts_peak.max(in_use.len());
        if self.daily && slot.is_multiple_of(288) {
            let mut alloc = 0u64;
            let mut reserved = 0u64;
            for h in self.ledger.hosts() {
                if let Ok(b) = self.ledger.balance(h.id) {
                    alloc += b.allocated.get(ResourceKind::Cpu)
                        + b.lent_by_reservations.get(ResourceKind::Cpu)
                        + b.lent_by_provider.get(ResourceKind::Cpu);
                    reserved += b.reserved.get(ResourceKind::Cpu);
                }
            }
            eprintln!(
                "day {} hosts {} in use {} cpu used {} reserved {} allocated+leased {} (shards)",
                slot / 288,
                self.ledger.hosts().count(),
                in_use.len(),
                used.get(&ResourceKind::Cpu).copied().unwrap_or(0) / 10,
                reserved,
                alloc
            );
        }
        self.workload_steps += self.live.len() as u64;
        if !in_use.is_empty() {
            self.util_steps += 1;
            self.hosts_sum += in_use.len() as u64;
            for &k in &self.kinds {
                let cap = self.sizes.physical(k, self.host_cap.get(k)).unwrap_or(0) as f64
                    * in_use.len() as f64;
                let u = used.get(&k).copied().unwrap_or(0) as f64;
                *self.util_sum.entry(k).or_default() += if cap > 0.0 { u / cap } else { 0.0 };
            }
        }
        // Market prices follow the pool.
        let list = self.prices.shard_hour;
        for a in reprice(&mut self.book, &self.ledger, &list, now) {
            self.ledger.apply(&a, now)?;
        }
        // The engine decides for the next step from samples before now.
        let horizon = Horizon {
            step: Span::from_secs(STEP_S as u64),
            steps: 1,
        };
        let ids: Vec<WorkloadId> = self.live.values().map(|l| l.id).collect();
        let demands = self.profiler.demands(ids, now, horizon);
        let report = self
            .controller
            .tick(&mut self.ledger, &demands, &self.sizes, now);
        if self.daily && !report.provisioned.is_empty() {
            let rooms: Vec<u64> = self
                .ledger
                .hosts()
                .filter_map(|h| self.ledger.balance(h.id).ok())
                .map(|b| b.free.get(ResourceKind::Cpu))
                .collect();
            for f in report
                .moves_started
                .iter()
                .filter(|f| report.provisioned.contains(&f.to))
            {
                eprintln!(
                    "slot {slot}: provisioned for {} needing {} (cpu room per host: {rooms:?})",
                    f.mv.workload, f.mv.needs
                );
            }
        }
        self.drains += report.drains.len();
        self.note(report.problems, report.abandoned.len());
        self.remap(&report.moved);
        // Now the forecasters see this step's samples, with the allocation they were under.
        for (&i, live) in &mut self.live {
            let s = &self.series[i];
            if live.next >= s.slots.len() || s.slots[live.next] != slot {
                continue;
            }
            let values = s.values[live.next];
            let alloc = held.get(&live.id).copied();
            let mut reading = shardex_core::ports::Reading::default();
            let mut limits = [None; 4];
            // Closed loop (after the warm-up, in which a workload runs on what it reserved):
            // what a host shows. Usage above the allocation is held at it and flagged; memory
            // above it is an OOM kill at the limit, as the daemon's sampler reports them.
            let closed = !self.open_loop && now.millis() - live.first_ms >= self.warmup_ms;
            let mut oom = None;
            for &k in &self.kinds {
                let v = values[k.index()];
                if v == MISSING {
                    continue;
                }
                let limit = alloc.and_then(|a| self.sizes.physical(k, a.get(k)).ok());
                limits[k.index()] = limit;
                match limit {
                    Some(l) if closed && v > l => {
                        reading.usage[k.index()] = Some(l);
                        reading.censored[k.index()] = true;
                        if k == ResourceKind::Memory {
                            reading.oom_kills = 1;
                            oom = Some(l);
                        }
                    }
                    _ => reading.usage[k.index()] = Some(v),
                }
            }
            self.profiler.observe(live.id, now, &reading, limits);
            if let Some(l) = oom {
                self.profiler.oom(live.id, l, now);
            }
            live.next += 1;
        }
        Ok(())
    }

    pub(super) fn note(&mut self, problems: Vec<String>, abandoned: usize) {
        self.problem_count += problems.len();
        self.moves_abandoned += abandoned;
        let room = 10usize.saturating_sub(self.problems.len());
        self.problems.extend(problems.into_iter().take(room));
    }

    /// A new workload: its base is its first measured usage (capped at its provisioned size),
    /// reserved where base plus a quarter fits with the most headroom, or on a new host.
    pub(super) fn place(
        &mut self,
        i: usize,
        now: Timestamp,
        expected: &mut BTreeMap<shardex_core::HostId, ShardVector>,
    ) -> anyhow::Result<()> {
        let s = &self.series[i];
        let first = s.values[0];
        let mut base = ShardVector::ZERO;
        for &k in &self.kinds {
            if first[k.index()] == MISSING {
                continue;
            }
            let mut b = self.sizes.demand_shards(k, first[k.index()]).max(1);
            if let Some(p) = s.provisioned[k.index()] {
                b = b.min(self.sizes.demand_shards(k, p).max(1));
            }
            base = base.with(k, b);
        }
        let room = ShardVector::from_fn(|k| base.get(k).saturating_mul(PLACEMENT_FACTOR));
        let host = match Engine::place(&self.ledger, &room, None, expected) {
            Some(h) => h,
            None => {
                let name = format!("host-{}", self.ledger.hosts().count());
                self.ledger.apply(
                    &Action::RegisterHost(action::RegisterHost {
                        name: name.clone(),
                        capacity: self.host_cap,
                    }),
                    now,
                )?;
                self.ledger
                    .host_named(&name)
                    .map(|h| h.id)
                    .context("the new host is missing")?
            }
        };
        let e = expected.entry(host).or_default();
        *e = e.saturating_add(&room.excess_over(&base));
        self.tenants += 1;
        let tenant = TenantId(self.tenants);
        let end = now.checked_add(Span::from_secs(400 * 86_400))?;
        let actions = vec![
            Action::CreateTenant(action::CreateTenant {
                name: s.name.clone(),
            }),
            Action::CreateReservation(action::CreateReservation {
                tenant,
                host,
                vector: base,
                window: Window::new(now, end)?,
                tier: Tier::Premium,
            }),
        ];
        self.ledger
            .apply(&Action::Batch(action::Batch { actions }), now)?;
        let r = self
            .ledger
            .reservations()
            .filter(|r| r.tenant == tenant)
            .map(|r| r.id)
            .max()
            .context("the reservation is missing")?;
        self.ledger.apply(
            &Action::BindWorkload(action::BindWorkload {
                tenant,
                reservation: r,
                name: s.name.clone(),
            }),
            now,
        )?;
        let id = self
            .ledger
            .workload_named(tenant, &s.name)
            .map(|w| w.id)
            .context("the workload is missing")?;
        self.ledger.apply(
            &Action::Allocate(action::Allocate {
                tenant,
                workload: id,
                share: base,
            }),
            now,
        )?;
        for &k in &self.kinds {
            let f = self
                .policy
                .build(
                    k,
                    s.provisioned[k.index()],
                    &shardex_forecast::adaptive::Params::default(),
                )
                .with_context(|| {
                    format!(
                        "policy {} needs the provisioned {k} of {}, which the trace doesn't give",
                        self.policy, s.name
                    )
                })?;
            self.profiler.install(id, k, f);
        }
        self.profiler.set_usage(id, base);
        self.profiler.set_cap(
            id,
            ShardVector::from_fn(|k| {
                s.provisioned[k.index()].map_or(u64::MAX, |p| self.sizes.demand_shards(k, p))
            }),
        );
        self.by_id.insert(id, i);
        self.live.insert(
            i,
            Live {
                id,
                tenant,
                next: 0,
                first_ms: now.millis(),
            },
        );
        Ok(())
    }

    /// A workload whose trace ended leaves: its shards go back.
    pub(super) fn retire(&mut self, live: &Live, now: Timestamp) -> anyhow::Result<()> {
        let Some(w) = self.ledger.workload(live.id) else {
            return Ok(());
        };
        let reservation = w.reservation;
        let lent: Vec<_> = self
            .ledger
            .leases()
            .filter(|l| l.lender == shardex_core::Lender::Reservation(reservation))
            .map(|l| l.id)
            .collect();
        let mut actions = vec![Action::UnbindWorkload(action::UnbindWorkload {
            tenant: live.tenant,
            workload: live.id,
        })];
        // A reservation that still lends keeps running until its leases end.
        if lent.is_empty() {
            actions.push(Action::CancelReservation(action::CancelReservation {
                tenant: live.tenant,
                reservation,
            }));
        }
        self.ledger
            .apply(&Action::Batch(action::Batch { actions }), now)?;
        Ok(())
    }

    pub(super) fn report(
        &self,
        trace: &str,
        policy: Policy,
        hosts_static: usize,
        kinds: &[ResourceKind],
        elapsed: f64,
        args: &SimulateArgs,
    ) -> serde_json::Value {
        let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
        let mut shortfall = serde_json::Map::new();
        let mut shortfall_raw = serde_json::Map::new();
        let mut over_cap = serde_json::Map::new();
        let mut util = serde_json::Map::new();
        let mut lent = serde_json::Map::new();
        let mut util_total = 0.0;
        for &k in kinds {
            let t = self.tallies.get(&k);
            let pct = t.map_or(0.0, |t| {
                if t.samples == 0 {
                    0.0
                } else {
                    t.short as f64 * 100.0 / t.samples as f64
                }
            });
            shortfall.insert(k.name().into(), round(pct, 3).into());
            let share = |n: u64| t.map_or(0.0, |t| n as f64 * 100.0 / t.samples.max(1) as f64);
            shortfall_raw.insert(
                k.name().into(),
                round(share(t.map_or(0, |t| t.short_raw)), 3).into(),
            );
            over_cap.insert(
                k.name().into(),
                round(share(t.map_or(0, |t| t.over_cap)), 3).into(),
            );
            let u = self.util_sum.get(&k).copied().unwrap_or(0.0) * 100.0
                / self.util_steps.max(1) as f64;
            util_total += u;
            util.insert(k.name().into(), round(u, 2).into());
            let hours = self.lent_shard_ms.get(&k).copied().unwrap_or(0) as f64 / 3_600_000.0;
            lent.insert(k.name().into(), round(hours, 1).into());
        }
        let mut requests = BTreeMap::<&str, u64>::new();
        for r in self.controller.engine.shard_requests() {
            let key = match r.status {
                RequestStatus::Pending => "pending",
                RequestStatus::Fulfilled => "fulfilled",
                RequestStatus::PartiallyFulfilled(_) => "partially_fulfilled",
                RequestStatus::Failed(_) => "failed",
            };
            *requests.entry(key).or_default() += 1;
            *requests.entry("raised").or_default() += 1;
        }
        for key in [
            "raised",
            "fulfilled",
            "partially_fulfilled",
            "failed",
            "pending",
        ] {
            requests.entry(key).or_default();
        }
        let lenders: Decimal = self
            .ledger
            .tenants()
            .map(|t| {
                self.balances
                    .get(&Account::Tenant(t.id))
                    .copied()
                    .unwrap_or_default()
            })
            .filter(|b| b.is_sign_negative())
            .map(|b| -b)
            .sum();
        let provider = -self
            .balances
            .get(&Account::Provider)
            .copied()
            .unwrap_or_default();
        let scored: u64 = self.tallies.values().map(|t| t.samples).sum();
        // Host-hours: the shardex cloud's hosts in use at each step, against the static
        // cloud's hosts over the same steps.
        let step_h = STEP_S as f64 / 3600.0;
        let host_hours = self.hosts_sum as f64 * step_h;
        let host_hours_static = hosts_static as f64 * self.util_steps as f64 * step_h;
        json!({
            "mode": if self.open_loop { "open_loop" } else { "closed_loop" },
            "trace": trace,
            "policy": policy.to_string(),
            "workloads": self.series.len(),
            "host": {
                "cpu_millicores": args.host_cpu,
                "memory_bytes": args.host_memory,
            },
            "hosts_static": hosts_static,
            "hosts_shardex": self.hosts_peak,
            "hosts_mean": round(self.hosts_sum as f64 / self.util_steps.max(1) as f64, 2),
            "migrations_per_workload_day": round(
                self.controller.migrator.moves as f64
                    / (self.workload_steps.max(1) as f64 * STEP_S as f64 / 86_400.0),
                4
            ),
            "hosts_drained": self.drains,
            "host_hours": round(host_hours, 1),
            "host_hours_static": round(host_hours_static, 1),
            "host_hours_saved_pct": round((1.0 - host_hours / host_hours_static.max(f64::MIN_POSITIVE)) * 100.0, 1),
            "hosts_saved_pct": round((1.0 - self.hosts_peak as f64 / hosts_static.max(1) as f64) * 100.0, 1),
            "mean_utilisation_pct": round(util_total / kinds.len().max(1) as f64, 2),
            "utilisation_pct": util,
            "shortfall_samples_pct": shortfall,
            "shortfall_samples_uncapped_pct": shortfall_raw,
            "samples_over_provisioned_pct": over_cap,
            "migrations": self.controller.migrator.moves,
            "shard_requests": requests,
            "shard_hours_lent": lent,
            "money": {
                "charged": self.paid.round_dp(2).to_string(),
                "leases_charged": self.lease_paid.round_dp(2).to_string(),
                "lenders_credited": lenders.round_dp(2).to_string(),
                "provider_credited": provider.round_dp(2).to_string(),
                "journal_balance": self.balances.values().sum::<Decimal>().to_string(),
            },
            "ledger_violations": self.ledger.check().len(),
            "problems": self.problem_count,
            // The first few in full, so a count is never all a user gets to go on.
            "problem_examples": self.problems,
            "moves_abandoned": self.moves_abandoned,
            "scored_samples": scored,
            "elapsed_s": round(elapsed, 1),
        })
    }
}
