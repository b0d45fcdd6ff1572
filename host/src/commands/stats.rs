//! `berth stats [SERVICE]`: a service's (or every service's) request rate,
//! error rate, latency, CPU time and memory over 1, 5 and 15 minutes.

use berth_api::ServiceName;
use berth_api::observe::{ServiceStatsView, TenantStatsView};

use super::client::Client;
use super::client::table::table;

const WINDOWS: [&str; 3] = ["1m", "5m", "15m"];

fn figure(value: Option<f64>, unit: &str, precision: usize) -> String {
    match value {
        Some(x) => format!("{x:.precision$}{unit}"),
        None => "-".into(),
    }
}

/// One row per window of one service.
fn window_rows(service: &ServiceStatsView) -> Vec<Vec<String>> {
    WINDOWS
        .iter()
        .map(|w| {
            let f = service.stats.windows.get(*w);
            vec![
                service.service.to_string(),
                (*w).to_string(),
                figure(f.map(|f| f.requests_per_second), "/s", 2),
                format!("{:.2}%", f.map_or(0.0, |f| f.error_rate) * 100.0),
                figure(f.and_then(|f| f.p50_ms), "ms", 3),
                figure(f.and_then(|f| f.p99_ms), "ms", 3),
                figure(f.and_then(|f| f.cpu_ms_per_request), "ms", 3),
                f.map_or("-".into(), |f| {
                    format!("{:.1}MiB", f.memory_peak_bytes as f64 / 1048576.0)
                }),
            ]
        })
        .collect()
}

impl Client {
    pub async fn stats(&self, service: Option<&ServiceName>) -> anyhow::Result<()> {
        let tenant = self.tenant().await?;
        let method = reqwest::Method::GET;
        let shown = match service {
            Some(name) => TenantStatsView {
                services: vec![
                    self.send(self.request(
                        method,
                        &format!("/v1/tenants/{tenant}/services/{name}/stats"),
                    ))
                    .await?,
                ],
            },
            None => {
                self.send(self.request(method, &format!("/v1/tenants/{tenant}/stats")))
                    .await?
            }
        };
        let text = |v: &TenantStatsView| {
            table(
                &[
                    "SERVICE", "WINDOW", "RATE", "ERRORS", "P50", "P99", "CPU/REQ", "MEMORY",
                ],
                v.services.iter().flat_map(window_rows).collect(),
            )
        };
        // `-o json` prints what the host answered: one service's figures, or
        // every service's.
        match (service, shown.services.first()) {
            (Some(_), Some(one)) => self.print(one, |one| {
                text(&TenantStatsView {
                    services: vec![one.clone()],
                })
            }),
            _ => self.print(&shown, text),
        }
        Ok(())
    }
}
