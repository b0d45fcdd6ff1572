//! Prometheus metrics: their names, labels and buckets, and the handles the
//! request path records into.
//!
//! Every per-request series is labelled `tenant`, `service` and `version`.
//! Cardinality stays bounded because the tenant quotas bound services and
//! versions; nothing a client sends (paths, hosts, ids) becomes a label.
//! Handles are registered once per service version, when the routing table
//! is built, so a request only touches atomics.

use metrics::{Counter, Gauge, Histogram, Label};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::Arc;
use std::time::Duration;

use super::incarnation::{self, LABEL};
use super::stats::ServiceStats;

/// Bucket bounds of every `*_seconds` histogram: 50 µs to 60 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Bucket bounds of every `*_bytes` histogram: 64 KiB to 4 GiB.
const BYTES_BUCKETS: &[f64] = &[
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    134_217_728.0,
    268_435_456.0,
    536_870_912.0,
    1_073_741_824.0,
    4_294_967_296.0,
];

/// Installs the process-wide recorder and describes every metric.
pub fn install() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_bytes".into()), BYTES_BUCKETS));
    let handle = match builder.map(PrometheusBuilder::install_recorder) {
        Ok(Ok(handle)) => handle,
        Ok(Err(error)) | Err(error) => {
            tracing::warn!(%error, "metrics are disabled");
            return None;
        }
    };
    describe();
    Some(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "berth_requests_total",
        "Requests answered, by status class."
    );
    describe_counter!(
        "berth_guest_log_lines_dropped_total",
        "Guest output lines (stdout, stderr, wasi:logging) dropped over their service's log rate."
    );
    describe_histogram!(
        "berth_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from the request's arrival to the end of its response body."
    );
    describe_histogram!(
        "berth_instantiation_duration_seconds",
        metrics::Unit::Seconds,
        "Time to instantiate a fresh instance for one request."
    );
    describe_counter!(
        "berth_instances_reused_total",
        "Requests served by a kept instance instead of a fresh one (services whose reuse policy allows it)."
    );
    describe_histogram!(
        "berth_guest_cpu_seconds",
        metrics::Unit::Seconds,
        "Time one request spent running its guest, host calls that did not wait included."
    );
    describe_histogram!(
        "berth_guest_memory_peak_bytes",
        metrics::Unit::Bytes,
        "Largest linear memory and tables one request's instance held."
    );
    describe_counter!(
        "berth_guest_failures_total",
        "Requests whose guest trapped or was stopped, by kind."
    );
    describe_counter!(
        "berth_deadline_kills_total",
        "Guests stopped at their CPU or wall-clock deadline."
    );
    describe_counter!(
        "berth_rejected_requests_total",
        "Requests refused with 503 before a guest ran, by cause."
    );
    describe_gauge!("berth_requests_in_flight", "Requests being handled now.");
    describe_counter!(
        "berth_unrouted_requests_total",
        "Requests refused before any service was chosen, by kind."
    );
    describe_gauge!(
        "berth_instance_pool_in_use",
        "Instance slots in use, host-wide."
    );
    describe_gauge!(
        "berth_instance_pool_capacity",
        "Instance slots the host has, host-wide."
    );
    describe_counter!(
        "berth_request_bytes_total",
        metrics::Unit::Bytes,
        "Request body bytes read by guests."
    );
    describe_counter!(
        "berth_response_bytes_total",
        metrics::Unit::Bytes,
        "Response body bytes sent to clients and callers."
    );
    describe_counter!(
        "berth_kv_operations_total",
        "wasi:keyvalue calls, by operation."
    );
    describe_counter!(
        "berth_outbound_requests_total",
        "Outgoing requests from guests, by kind and outcome."
    );
    describe_counter!(
        "berth_deploys_total",
        "Control-plane changes, by action and result."
    );
    describe_histogram!(
        "berth_deploy_duration_seconds",
        metrics::Unit::Seconds,
        "Time a control-plane change took, from request to live routing table."
    );
    describe_counter!("berth_compiles_total", "Component compilations, by result.");
    describe_histogram!(
        "berth_compile_duration_seconds",
        metrics::Unit::Seconds,
        "Time to compile one component."
    );
    describe_counter!(
        "berth_compile_cache_hits_total",
        "Components loaded from the compile cache instead of compiled."
    );
}

/// The metric handles of one service version, and its service's stats.
pub struct ServiceMetrics {
    labels: [Label; 4],
    /// By status class: 1xx to 5xx.
    requests: [Counter; 5],
    duration: Histogram,
    instantiation: Histogram,
    reused: Counter,
    cpu: Histogram,
    memory: Histogram,
    in_flight: Gauge,
    pub(crate) bytes_in: Counter,
    bytes_out: Counter,
    pub stats: Arc<ServiceStats>,
}

impl ServiceMetrics {
    pub fn new(tenant: &str, service: &str, version: &str, stats: Arc<ServiceStats>) -> Self {
        let labels = [
            Label::new("tenant", tenant.to_string()),
            Label::new("service", service.to_string()),
            Label::new("version", version.to_string()),
            Label::new(LABEL, incarnation::current(tenant, Some(service))),
        ];
        let with = |extra: Option<(&'static str, &'static str)>| {
            let mut all = labels.to_vec();
            if let Some((k, v)) = extra {
                all.push(Label::new(k, v));
            }
            all
        };
        Self {
            requests: ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|class| {
                metrics::counter!("berth_requests_total", with(Some(("status", class))))
            }),
            duration: metrics::histogram!("berth_request_duration_seconds", with(None)),
            instantiation: metrics::histogram!("berth_instantiation_duration_seconds", with(None)),
            reused: metrics::counter!("berth_instances_reused_total", with(None)),
            cpu: metrics::histogram!("berth_guest_cpu_seconds", with(None)),
            memory: metrics::histogram!("berth_guest_memory_peak_bytes", with(None)),
            in_flight: metrics::gauge!("berth_requests_in_flight", with(None)),
            bytes_in: metrics::counter!("berth_request_bytes_total", with(None)),
            bytes_out: metrics::counter!("berth_response_bytes_total", with(None)),
            labels,
            stats,
        }
    }

    fn labelled(&self, key: &'static str, value: &'static str) -> Vec<Label> {
        let mut all = self.labels.to_vec();
        all.push(Label::new(key, value));
        all
    }

    /// A request has been routed to this version.
    pub fn started(&self) {
        self.in_flight.increment(1.0);
    }

    /// A request routed here has been answered in full (or abandoned).
    pub fn finished(&self, status: http::StatusCode, took: Duration, bytes_out: u64) {
        let class = usize::from((status.as_u16() / 100).clamp(1, 5)) - 1;
        self.requests[class].increment(1);
        self.duration.record(took.as_secs_f64());
        self.bytes_out.increment(bytes_out);
        self.in_flight.decrement(1.0);
        self.stats.record_request(status, took);
    }

    pub fn instantiated(&self, took: Duration) {
        self.instantiation.record(took.as_secs_f64());
    }

    /// A request is served by a kept instance.
    pub fn reused(&self) {
        self.reused.increment(1);
    }

    /// What one request's instance used, recorded when it is dropped.
    pub fn guest_used(&self, cpu: Duration, memory_peak: u64) {
        self.cpu.record(cpu.as_secs_f64());
        self.memory.record(memory_peak as f64);
        self.stats.record_guest(cpu, memory_peak);
    }

    /// The guest trapped or was stopped; `kind` is the failure's stable name.
    pub fn guest_failed(&self, kind: &'static str) {
        metrics::counter!("berth_guest_failures_total", self.labelled("kind", kind)).increment(1);
        let deadline = match kind {
            "cpu-deadline" => "cpu",
            "wall-deadline" => "wall",
            _ => return,
        };
        metrics::counter!(
            "berth_deadline_kills_total",
            self.labelled("deadline", deadline)
        )
        .increment(1);
    }

    /// The request was refused with 503 before a guest ran.
    pub fn rejected(&self, cause: &'static str) {
        metrics::counter!(
            "berth_rejected_requests_total",
            self.labelled("cause", cause)
        )
        .increment(1);
    }
}

/// A change made through the control plane, and how it went.
pub fn deploy_finished(tenant: &str, action: &'static str, ok: bool, took: Duration) {
    let result = if ok { "ok" } else { "error" };
    metrics::counter!("berth_deploys_total", "tenant" => tenant.to_string(), LABEL => incarnation::current(tenant, None), "action" => action, "result" => result)
        .increment(1);
    metrics::histogram!("berth_deploy_duration_seconds", "action" => action)
        .record(took.as_secs_f64());
}

/// One compilation, or one load from the compile cache.
pub fn compiled(result: &'static str, took: Duration) {
    metrics::counter!("berth_compiles_total", "result" => result).increment(1);
    metrics::histogram!("berth_compile_duration_seconds").record(took.as_secs_f64());
}

/// A component that needed no compiling: `memory` when this host had it
/// linked already, `disk` when it came from the compile cache.
pub fn compile_cache_hit(cache: &'static str) {
    metrics::counter!("berth_compile_cache_hits_total", "cache" => cache).increment(1);
}

/// One outgoing request from a guest: `internal` (a service call) or
/// `external`; `result` is `sent` or why it was refused.
pub fn outbound(tenant: &str, service: &str, kind: &'static str, result: &'static str) {
    metrics::counter!(
        "berth_outbound_requests_total",
        "tenant" => tenant.to_string(),
        "service" => service.to_string(),
        LABEL => incarnation::current(tenant, Some(service)),
        "kind" => kind,
        "result" => result,
    )
    .increment(1);
}

/// Guest log lines dropped over their service's log rate.
pub fn guest_log_dropped(tenant: &str, service: &str, lines: u64) {
    metrics::counter!(
        "berth_guest_log_lines_dropped_total",
        "tenant" => tenant.to_string(),
        "service" => service.to_string(),
        LABEL => incarnation::current(tenant, Some(service)),
    )
    .increment(lines);
}

/// A request refused before it reached any service (no route, URI too
/// long); it belongs to no tenant.
pub fn unrouted(kind: &'static str) {
    metrics::counter!("berth_unrouted_requests_total", "kind" => kind).increment(1);
}

/// The host's instance slots, set just before each scrape.
pub fn instance_pool(in_use: usize, capacity: usize) {
    metrics::gauge!("berth_instance_pool_in_use").set(in_use as f64);
    metrics::gauge!("berth_instance_pool_capacity").set(capacity as f64);
}

/// Counters of one service's `wasi:keyvalue` calls, by operation.
pub struct KvCounters([Counter; KvOp::ALL.len()]);

#[derive(Debug, Clone, Copy)]
pub enum KvOp {
    Get,
    Set,
    Delete,
    Exists,
    ListKeys,
    Increment,
    Swap,
    GetMany,
    SetMany,
    DeleteMany,
}

impl KvOp {
    const ALL: [KvOp; 10] = [
        KvOp::Get,
        KvOp::Set,
        KvOp::Delete,
        KvOp::Exists,
        KvOp::ListKeys,
        KvOp::Increment,
        KvOp::Swap,
        KvOp::GetMany,
        KvOp::SetMany,
        KvOp::DeleteMany,
    ];

    fn name(self) -> &'static str {
        match self {
            KvOp::Get => "get",
            KvOp::Set => "set",
            KvOp::Delete => "delete",
            KvOp::Exists => "exists",
            KvOp::ListKeys => "list-keys",
            KvOp::Increment => "increment",
            KvOp::Swap => "swap",
            KvOp::GetMany => "get-many",
            KvOp::SetMany => "set-many",
            KvOp::DeleteMany => "delete-many",
        }
    }
}

impl KvCounters {
    pub fn new(tenant: &str, service: &str) -> Self {
        Self(KvOp::ALL.map(|op| {
            metrics::counter!(
                "berth_kv_operations_total",
                "tenant" => tenant.to_string(),
                "service" => service.to_string(),
                LABEL => incarnation::current(tenant, Some(service)),
                "op" => op.name(),
            )
        }))
    }

    pub fn count(&self, op: KvOp) {
        self.0[op as usize].increment(1);
    }
}

/// The part of the Prometheus text that concerns one tenant: its samples,
/// with the `# HELP` and `# TYPE` lines of their families. Host-wide series
/// (no `tenant` label) are left out.
pub fn tenant_view(text: &str, tenant: &str) -> String {
    let wanted_open = format!("{{tenant=\"{tenant}\"");
    let wanted_inner = format!(",tenant=\"{tenant}\"");
    let mut out = String::new();
    let mut pending = String::new();
    let mut family_shown = false;
    for line in text.lines() {
        if line.starts_with('#') {
            if family_shown {
                pending.clear();
                family_shown = false;
            }
            pending.push_str(line);
            pending.push('\n');
            continue;
        }
        let matches = line.find('{').is_some_and(|at| {
            let set = &line[at..];
            set.starts_with(&wanted_open) || set.contains(&wanted_inner)
        });
        if matches {
            if !family_shown {
                out.push_str(&pending);
                pending.clear();
                family_shown = true;
            }
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_view_keeps_only_that_tenants_samples() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\n\
            a_total{tenant=\"acme\",service=\"s\"} 3\n\
            a_total{tenant=\"acme2\",service=\"s\"} 4\n\
            a_total{service=\"s\",tenant=\"acme\"} 5\n\
            # HELP b_total B.\n# TYPE b_total counter\n\
            b_total{tenant=\"other\"} 1\n\
            # HELP host_gauge H.\n# TYPE host_gauge gauge\nhost_gauge 7\n";
        let view = tenant_view(text, "acme");
        assert_eq!(
            view,
            "# HELP a_total A.\n# TYPE a_total counter\n\
             a_total{tenant=\"acme\",service=\"s\"} 3\n\
             a_total{service=\"s\",tenant=\"acme\"} 5\n"
        );
        assert_eq!(tenant_view(text, "nobody"), "");
    }
}
