//! Metric series of deleted tenants and services. The Prometheus exporter
//! cannot delete a series, and a tenant made again under the same name
//! would count on in its predecessor's counters. So every series with a
//! `tenant` label also carries the `berth_incarnation` of its tenant and
//! service, which [`forget`] moves on at a deletion; [`scrub`] leaves out
//! of the exposition every series of an incarnation that is gone, and the
//! label itself from the rest. Old series stay in the exporter's memory
//! (a few hundred bytes each), never in what a scrape sees.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

/// The label every tenant's series carries until [`scrub`] strips it.
pub const LABEL: &str = "berth_incarnation";

type Generations = HashMap<(String, Option<String>), u64>;

fn generations() -> std::sync::MutexGuard<'static, Generations> {
    static GENERATIONS: OnceLock<Mutex<Generations>> = OnceLock::new();
    GENERATIONS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

fn current_in(gens: &Generations, tenant: &str, service: Option<&str>) -> String {
    let of_tenant = gens.get(&(tenant.to_string(), None)).copied().unwrap_or(0);
    match service {
        None => of_tenant.to_string(),
        Some(service) => {
            let of_service = gens
                .get(&(tenant.to_string(), Some(service.to_string())))
                .copied()
                .unwrap_or(0);
            format!("{of_tenant}.{of_service}")
        }
    }
}

/// The incarnation a series of `tenant` (and `service`) carries now.
pub fn current(tenant: &str, service: Option<&str>) -> String {
    current_in(&generations(), tenant, service)
}

/// A deleted tenant's or service's series leave the exposition; new ones
/// under the same names start from nothing.
pub fn forget(tenant: &str, service: Option<&str>) {
    *generations()
        .entry((tenant.to_string(), service.map(str::to_string)))
        .or_insert(0) += 1;
}

/// One `name="value"` pair of a sample's label set, as written.
fn pairs(set: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = set;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq].trim_start_matches(',');
        let value_start = eq + 2;
        let mut end = None;
        let mut escaped = false;
        for (i, c) in rest[value_start..].char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(value_start + i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(end) = end else { break };
        out.push((name, &rest[value_start..end]));
        rest = &rest[end + 1..];
    }
    out
}

/// The exposition without the series of forgotten incarnations, and
/// without the incarnation label.
pub fn scrub(text: &str) -> String {
    let gens = generations();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let (Some(open), Some(close)) = (line.find('{'), line.rfind('}')) else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        if line.starts_with('#') || close < open {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let labels = pairs(&line[open + 1..close]);
        let find = |key: &str| labels.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let Some(incarnation) = find(LABEL) else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let Some(tenant) = find("tenant") else {
            continue;
        };
        if incarnation != current_in(&gens, tenant, find("service")) {
            continue;
        }
        let kept: Vec<String> = labels
            .iter()
            .filter(|(k, _)| *k != LABEL)
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        out.push_str(&line[..open]);
        if !kept.is_empty() {
            out.push('{');
            out.push_str(&kept.join(","));
            out.push('}');
        }
        out.push_str(&line[close + 1..]);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgotten_series_leave_and_the_label_goes() {
        let (t, s) = ("scrub-acme", "web");
        let old = current(t, Some(s));
        let other = current("scrub-other", Some(s));
        forget(t, Some(s));
        let new = current(t, Some(s));
        assert_ne!(old, new);
        let text = format!(
            "# TYPE a_total counter\n\
             a_total{{tenant=\"{t}\",service=\"{s}\",{LABEL}=\"{old}\"}} 7\n\
             a_total{{tenant=\"{t}\",service=\"{s}\",{LABEL}=\"{new}\"}} 1\n\
             a_total{{tenant=\"scrub-other\",service=\"{s}\",{LABEL}=\"{other}\"}} 2\n\
             b_bucket{{le=\"0.5\",{LABEL}=\"{new}\",tenant=\"{t}\",service=\"{s}\"}} 1\n\
             host_gauge 3\n"
        );
        assert_eq!(
            scrub(&text),
            format!(
                "# TYPE a_total counter\n\
                 a_total{{tenant=\"{t}\",service=\"{s}\"}} 1\n\
                 a_total{{tenant=\"scrub-other\",service=\"{s}\"}} 2\n\
                 b_bucket{{le=\"0.5\",tenant=\"{t}\",service=\"{s}\"}} 1\n\
                 host_gauge 3\n"
            )
        );
        // Forgetting the tenant ends every service's series of it.
        let before = current(t, None);
        forget(t, None);
        assert_ne!(before, current(t, None));
        assert_ne!(new, current(t, Some(s)));
    }

    #[test]
    fn escaped_quotes_in_values_are_read_whole() {
        assert_eq!(
            pairs(r#"a="x\"y",b="z""#),
            vec![("a", r#"x\"y"#), ("b", "z")]
        );
    }
}
