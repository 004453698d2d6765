//! `GET /metrics` in the Prometheus text format (0.0.4): what the daemon holds at the moment
//! of the scrape (per workload and kind: usage, forecast, entitlement, limit in force, time
//! held at its limit, OOM kills; per host and kind: where its shards are; the market; shard
//! requests by state), and what it timed (API requests, control ticks, actuations) and counted
//! (provisioner calls). Label values come from the ledger (host, tenant and workload names,
//! bounded by what the operator registered) or from fixed sets (kinds, states, routes as
//! declared, methods, status classes): never from a request's path or body.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rust_decimal::prelude::ToPrimitive;
use shardex_core::engine::ShardRequest;
use shardex_core::ports::{
    Actuator, Applied, Kinds, Limits, NewHost, ProvisionError, ProvisionRequest, Provisioner,
};
use shardex_core::{Ledger, ReservationId, ResourceKind, WorkloadId};

use super::App;
use super::control_loop::WorkloadView;

/// A metric's labels: names and values.
pub(crate) type Labels = Vec<(&'static str, String)>;
type Timings = Family<Labels, Histogram, fn() -> Histogram>;

/// Each kind's unit in the per-workload metrics.
const UNITS: [&str; 4] = ["millicores", "bytes", "bits_per_second", "iops"];

fn latency() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// What the daemon times and counts as it goes.
#[derive(Debug)]
pub struct Metrics {
    api: Timings,
    tick: Histogram,
    actuation: Timings,
    provisioner_calls: Counter,
    provisioner_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Self {
            api: Family::new_with_constructor(latency),
            tick: latency(),
            actuation: Family::new_with_constructor(latency),
            provisioner_calls: Counter::default(),
            provisioner_failures: Counter::default(),
        };
        // Every kind's series exists from the start (at zero), so a query over them is never
        // empty just because nothing was actuated yet.
        for k in ResourceKind::ALL {
            drop(
                m.actuation
                    .get_or_create(&vec![("kind", k.name().to_string())]),
            );
        }
        m
    }
}

impl Metrics {
    /// Records one control tick (a decision) that took `d`.
    pub fn tick(&self, d: Duration) {
        self.tick.observe(d.as_secs_f64());
    }

    /// Records one actuation of `kind` that took `d`, from the write to the read-back.
    pub fn actuation(&self, kind: ResourceKind, d: Duration) {
        self.actuation
            .get_or_create(&vec![("kind", kind.name().to_string())])
            .observe(d.as_secs_f64());
    }

    /// Every metric the daemon timed or counted, into `registry`.
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "shardex_api_request_seconds",
            "API requests from arrival to answer, by method, declared route and status class",
            self.api.clone(),
        );
        registry.register(
            "shardex_control_tick_seconds",
            "Control ticks: forecast, decide and commit",
            self.tick.clone(),
        );
        registry.register(
            "shardex_actuation_seconds",
            "Actuations from the write of a limit to its read-back, by kind",
            self.actuation.clone(),
        );
        registry.register(
            "shardex_provisioner_calls",
            "Calls to the provisioner for a new host",
            self.provisioner_calls.clone(),
        );
        registry.register(
            "shardex_provisioner_failures",
            "Provisioner calls that gave no host",
            self.provisioner_failures.clone(),
        );
    }
}

/// Times every request: its method, the route as declared (never the path as sent) and its
/// status class.
pub async fn time_requests(
    State(metrics): State<Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m.to_string(),
        _ => "other".to_string(),
    };
    let response = next.run(req).await;
    let status = format!("{}xx", response.status().as_u16() / 100);
    metrics
        .api
        .get_or_create(&vec![
            ("method", method),
            ("route", route),
            ("status", status),
        ])
        .observe(start.elapsed().as_secs_f64());
    response
}

/// A provisioner whose calls and failures are counted.
pub struct Counted<P> {
    /// The provisioner.
    pub inner: P,
    /// Where the counts go.
    pub metrics: Arc<Metrics>,
}

impl<P: Provisioner> Provisioner for Counted<P> {
    fn provision(&mut self, request: &ProvisionRequest) -> Result<NewHost, ProvisionError> {
        self.metrics.provisioner_calls.inc();
        let got = self.inner.provision(request);
        if got.is_err() {
            self.metrics.provisioner_failures.inc();
        }
        got
    }
}

/// An actuator whose writes (each with its read-back) are timed per kind.
pub struct Timed<'a, A: ?Sized> {
    /// The actuator.
    pub inner: &'a mut A,
    /// Where the timings go.
    pub metrics: &'a Metrics,
}

impl<A: Actuator + ?Sized> Timed<'_, A> {
    fn timed(&self, kinds: Kinds, start: Instant) {
        let d = start.elapsed();
        for k in ResourceKind::ALL.into_iter().filter(|k| kinds[k.index()]) {
            self.metrics.actuation(k, d);
        }
    }
}

impl<A: Actuator + ?Sized> Actuator for Timed<'_, A> {
    fn apply(&mut self, w: WorkloadId, name: &str, limits: &Limits, kinds: Kinds) -> Applied {
        let start = Instant::now();
        let done = self.inner.apply(w, name, limits, kinds);
        self.timed(kinds, start);
        done
    }
    fn read(&mut self, w: WorkloadId, name: &str, kinds: Kinds) -> Applied {
        self.inner.read(w, name, kinds)
    }
    fn clear(&mut self, w: WorkloadId, name: &str, kinds: Kinds) -> Applied {
        self.inner.clear(w, name, kinds)
    }
    fn manages(&self, name: &str, kind: ResourceKind) -> bool {
        self.inner.manages(name, kind)
    }
    fn expected(&self, name: &str, kind: ResourceKind, hard: Option<u64>) -> Option<u64> {
        self.inner.expected(name, kind, hard)
    }
    fn manages_group(&self, name: &str, kind: ResourceKind) -> bool {
        self.inner.manages_group(name, kind)
    }
    fn apply_group(
        &mut self,
        r: ReservationId,
        name: &str,
        limits: &Limits,
        kinds: Kinds,
    ) -> Applied {
        let start = Instant::now();
        let done = self.inner.apply_group(r, name, limits, kinds);
        self.timed(kinds, start);
        done
    }
    fn read_group(&mut self, r: ReservationId, name: &str, kinds: Kinds) -> Applied {
        self.inner.read_group(r, name, kinds)
    }
}

/// The daemon's (or a broker's) state at the moment of one scrape.
#[derive(Debug)]
pub(crate) struct Moment {
    /// The ledger.
    pub(crate) ledger: Ledger,
    /// Shard sizes.
    pub(crate) sizes: shardex_core::ShardSizes,
    /// What the control loop (or the hosts' agents) see of each workload.
    pub(crate) workloads: Vec<WorkloadView>,
    /// The engine's shard requests.
    pub(crate) requests: Vec<ShardRequest>,
}

pub(crate) fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, f64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(*v).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, f64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(*v).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

#[allow(clippy::cast_precision_loss)]
pub(crate) fn number(v: u64) -> f64 {
    v as f64
}

impl Moment {
    fn workload_rows(&self) -> [Vec<(Labels, f64)>; 6] {
        let mut rows: [Vec<(Labels, f64)>; 6] = Default::default();
        let [usage, forecast, entitlement, limit, held, ooms] = &mut rows;
        for v in &self.workloads {
            let who = || vec![("workload", v.name.clone()), ("tenant", v.tenant.clone())];
            ooms.push((who(), number(v.oom_kills)));
            for k in ResourceKind::ALL {
                let i = k.index();
                let labels = || {
                    let mut l = who();
                    l.push(("kind", k.name().to_string()));
                    l.push(("unit", UNITS[i].to_string()));
                    l
                };
                if let Some(u) = v.usage.and_then(|u| u[i]) {
                    usage.push((labels(), number(u)));
                }
                if let Some(q) = v.forecast[i] {
                    for (quantile, value) in [("0.5", q.p50), ("0.95", q.p95)] {
                        let mut l = labels();
                        l.push(("quantile", quantile.to_string()));
                        forecast.push((l, number(value)));
                    }
                }
                // From the ledger scraped, as the API computes it, not the loop's last view.
                if let Some(e) = shardex_core::entitlement::entitlement(&self.ledger, v.id)
                    .ok()
                    .and_then(|e| self.sizes.physical_vector(e).ok())
                {
                    entitlement.push((labels(), number(e.get(k))));
                }
                if let Some(Some(hard)) = v.limits.as_ref().and_then(|l| l.in_force[i]) {
                    limit.push((labels(), number(hard)));
                }
                let mut l = who();
                l.push(("kind", k.name().to_string()));
                held.push((l, number(v.held_ms[i]) / 1000.0));
            }
        }
        rows
    }

    fn host_rows(&self) -> [Vec<(Labels, f64)>; 4] {
        let mut rows: [Vec<(Labels, f64)>; 4] = Default::default();
        let [shards, price, market, leases] = &mut rows;
        for h in self.ledger.hosts() {
            let host = || vec![("host", h.name.clone())];
            let Ok(b) = self.ledger.balance(h.id) else {
                continue;
            };
            let s = b.split();
            let pool = shardex_core::market::pool_of(&self.ledger, h.id);
            let by_kind = |l: Labels, k: ResourceKind, extra: Option<(&'static str, &str)>| {
                let mut l = l;
                l.push(("kind", k.name().to_string()));
                if let Some((n, v)) = extra {
                    l.push((n, v.to_string()));
                }
                l
            };
            for k in ResourceKind::ALL {
                for (state, v) in [
                    ("capacity", b.capacity),
                    ("reserved", b.reserved),
                    ("unreserved", b.unreserved),
                    ("allocated", s.allocated),
                    ("lent", s.lent),
                    ("idle", s.idle),
                    ("offered", s.offered),
                    ("free", s.free),
                ] {
                    shards.push((by_kind(host(), k, Some(("state", state))), number(v.get(k))));
                }
                if let Some(p) = self.ledger.market_price(h.id) {
                    let v = p.get(k).to_f64().unwrap_or(f64::NAN);
                    price.push((by_kind(host(), k, None), v));
                }
                for (state, v) in [
                    ("offered", pool.offered),
                    ("leased", pool.leased),
                    ("waiting", pool.waiting),
                ] {
                    market.push((by_kind(host(), k, Some(("state", state))), number(v.get(k))));
                }
            }
            let n = self.ledger.leases().filter(|l| l.host == h.id).count();
            leases.push((host(), number(n as u64)));
        }
        rows
    }
}

impl Collector for Moment {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let [usage, forecast, entitlement, limit, held, ooms] = self.workload_rows();
        gauge(
            &mut e,
            "shardex_workload_usage",
            "Last usage sampled, in the kind's unit",
            &usage,
        )?;
        gauge(
            &mut e,
            "shardex_workload_forecast",
            "Forecast demand for the next decision period, by quantile",
            &forecast,
        )?;
        gauge(
            &mut e,
            "shardex_workload_entitlement",
            "What the workload may use at once: its reservation not lent out, plus its leases",
            &entitlement,
        )?;
        gauge(
            &mut e,
            "shardex_workload_limit",
            "The hard limit read back in force (absent: unlimited or not read yet)",
            &limit,
        )?;
        counter(
            &mut e,
            "shardex_workload_censored_seconds",
            "Time the workload was held at its limit (throttled), counted in sample periods",
            &held,
        )?;
        counter(
            &mut e,
            "shardex_workload_oom_kills",
            "OOM kills inside the workload since the daemon started",
            &ooms,
        )?;
        let [shards, price, market, leases] = self.host_rows();
        gauge(
            &mut e,
            "shardex_host_shards",
            "A host's shards by state: capacity, reserved, unreserved, and the disjoint parts allocated, lent, idle, offered, free",
            &shards,
        )?;
        gauge(
            &mut e,
            "shardex_market_price",
            "The market's price per shard-hour",
            &price,
        )?;
        gauge(
            &mut e,
            "shardex_market_shards",
            "The market's pool: offered, leased, waiting",
            &market,
        )?;
        gauge(&mut e, "shardex_leases", "Leases in the ledger", &leases)?;
        let counts = shardex_api::routes::overview::counts(&self.requests);
        let requests: Vec<(Labels, f64)> = counts
            .by_state
            .iter()
            .map(|(s, n)| (vec![("state", s.clone())], number(*n)))
            .collect();
        gauge(
            &mut e,
            "shardex_shard_requests",
            "The engine's shard requests (the newest 1,000) by state",
            &requests,
        )?;
        let workloads = [(Vec::new(), number(self.ledger.workloads().count() as u64))];
        gauge(
            &mut e,
            "shardex_workloads",
            "Workloads in the ledger",
            &workloads,
        )?;
        Ok(())
    }
}

/// The exposition of the daemon now.
pub(super) fn render(app: &App) -> Result<String, std::fmt::Error> {
    let moment = Moment {
        ledger: app.ledger.borrow().clone(),
        sizes: app.sizes,
        workloads: app.workloads.lock().map(|w| w.clone()).unwrap_or_default(),
        requests: app.requests.lock().map(|r| r.clone()).unwrap_or_default(),
    };
    exposition(moment, &app.metrics, None)
}

/// The exposition of `moment`, what `metrics` timed and counted, and `extra` (a broker's
/// agents).
pub(crate) fn exposition(
    moment: Moment,
    metrics: &Metrics,
    extra: Option<Box<dyn Collector>>,
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    registry.register_collector(Box::new(moment));
    if let Some(c) = extra {
        registry.register_collector(c);
    }
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

/// `GET /metrics`: the admin token, unless `api.public_metrics`.
pub(super) async fn serve(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !app.public_metrics
        && let Some(refusal) = super::routes::unauthorized(&app, &headers)
    {
        return refusal;
    }
    text(render(&app))
}

/// An exposition as the answer to a scrape.
pub(crate) fn text(rendered: Result<String, std::fmt::Error>) -> Response {
    match rendered {
        Ok(text) => {
            let mut r = (StatusCode::OK, text).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        Err(_) => shardex_api::Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encode-failed",
            "could not write the metrics",
        )
        .into_response(),
    }
}
