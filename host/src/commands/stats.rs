//! `berth stats [SERVICE]`: a service's (or every service's) request rate,
//! error rate, latency, CPU time and memory over 1, 5 and 15 minutes.

use serde_json::Value;

use super::client::{Client, s, table};

const WINDOWS: [&str; 3] = ["1m", "5m", "15m"];

fn figure(v: &Value, key: &str, unit: &str, precision: usize) -> String {
    match v.get(key).and_then(Value::as_f64) {
        Some(x) => format!("{x:.precision$}{unit}"),
        None => "-".into(),
    }
}

/// One row per window of one service.
fn window_rows(service: &Value) -> Vec<Vec<String>> {
    WINDOWS
        .iter()
        .map(|w| {
            let f = &service["windows"][w];
            vec![
                s(service, "service"),
                (*w).to_string(),
                figure(f, "requests_per_second", "/s", 2),
                format!("{:.2}%", f["error_rate"].as_f64().unwrap_or(0.0) * 100.0),
                figure(f, "p50_ms", "ms", 3),
                figure(f, "p99_ms", "ms", 3),
                figure(f, "cpu_ms_per_request", "ms", 3),
                f["memory_peak_bytes"]
                    .as_u64()
                    .map_or("-".into(), |b| format!("{:.1}MiB", b as f64 / 1048576.0)),
            ]
        })
        .collect()
}

impl Client {
    pub async fn stats(&self, service: Option<&str>) -> anyhow::Result<()> {
        let tenant = self.tenant().await?;
        let path = match service {
            Some(name) => format!("/v1/tenants/{tenant}/services/{name}/stats"),
            None => format!("/v1/tenants/{tenant}/stats"),
        };
        let v = self.send(self.request(reqwest::Method::GET, &path)).await?;
        self.print(&v, |v| {
            let services: Vec<Value> = match v.get("services").and_then(Value::as_array) {
                Some(all) => all.clone(),
                None => vec![v.clone()],
            };
            table(
                &[
                    "SERVICE", "WINDOW", "RATE", "ERRORS", "P50", "P99", "CPU/REQ", "MEMORY",
                ],
                services.iter().flat_map(window_rows).collect(),
            )
        });
        Ok(())
    }
}
