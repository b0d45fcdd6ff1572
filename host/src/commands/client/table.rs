//! Text output: aligned columns, and the short forms of values the verbs
//! print.

use berth_api::VersionLabel;
use berth_api::services::ServiceView;
use std::collections::BTreeMap;

/// Left-aligned columns, two spaces apart, under a header.
pub fn table(header: &[&str], body: Vec<Vec<String>>) -> String {
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    table.extend(body);
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            table
                .iter()
                .map(|r| r.get(i).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in &table {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A value that may be absent, `-` when it is.
pub fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

/// A list, comma-separated, `-` when empty.
pub fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(",")
    }
}

/// `2.0.0` when one version serves, `1.0.0=90,2.0.0=10` for a split.
pub fn serving(service: &ServiceView) -> String {
    if let Some(active) = &service.active {
        return active.to_string();
    }
    service.split.as_ref().map_or_else(|| "-".into(), weights)
}

fn weights(split: &BTreeMap<VersionLabel, u32>) -> String {
    split
        .iter()
        .map(|(label, weight)| format!("{label}={weight}"))
        .collect::<Vec<_>>()
        .join(",")
}
