//! The Kubernetes manifests in `deploy/kubernetes/` parse into the API's
//! own types, and say what running Berth as a fleet needs: probes on the
//! admin port, the ports the binary listens on, a locked-down container,
//! the secrets wired in, and the rollout and disruption limits.

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Container, Probe, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::path::PathBuf;

fn manifests() -> PathBuf {
    berth_e2e::repo_root().join("deploy/kubernetes")
}

/// Every document of `file` whose kind is `kind`, parsed as `T`.
fn documents<T: DeserializeOwned>(file: &str, kind: &str) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(manifests().join(file))
        .with_context(|| format!("reading {file}"))?;
    let mut found = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(document)?;
        if value.get("kind").and_then(|k| k.as_str()) == Some(kind) {
            let parsed: T = serde_yaml::from_value(value)
                .with_context(|| format!("{file}: not a valid {kind}"))?;
            found.push(parsed);
        }
    }
    ensure!(!found.is_empty(), "{file} has no {kind}");
    Ok(found)
}

fn http_get(probe: &Option<Probe>, what: &str) -> Result<(String, IntOrString)> {
    let get = probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .with_context(|| format!("no HTTP {what} probe"))?;
    Ok((get.path.clone().unwrap_or_default(), get.port.clone()))
}

fn port_named(container: &Container, name: &str) -> Option<i32> {
    container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(name))
        .map(|p| p.container_port)
}

#[test]
fn kubernetes_manifests_describe_a_locked_down_fleet() -> Result<()> {
    let deployment: Deployment = documents("deployment.yaml", "Deployment")?.remove(0);
    let spec = deployment.spec.context("no spec")?;
    ensure!(
        spec.replicas.unwrap_or(1) >= 2,
        "a fleet needs more than one host"
    );
    let rolling = spec
        .strategy
        .and_then(|s| s.rolling_update)
        .context("no rolling update")?;
    ensure!(rolling.max_unavailable == Some(IntOrString::Int(0)));
    let pod = spec.template.spec.context("no pod spec")?;
    ensure!(pod.containers.len() == 1);
    let berth = &pod.containers[0];

    // The ports are the ones the arguments make Berth listen on.
    let args = berth.args.clone().unwrap_or_default();
    ensure!(args.first().map(String::as_str) == Some("serve"));
    ensure!(
        args.contains(&"--listen=0.0.0.0:8080".to_string()),
        "{args:?}"
    );
    ensure!(
        args.contains(&"--admin-listen=0.0.0.0:8081".to_string()),
        "{args:?}"
    );
    ensure!(port_named(berth, "http") == Some(8080));
    ensure!(port_named(berth, "admin") == Some(8081));

    // Liveness on /healthz, readiness on /readyz, both on the admin port.
    let admin = IntOrString::String("admin".into());
    ensure!(http_get(&berth.liveness_probe, "liveness")? == ("/healthz".into(), admin.clone()));
    ensure!(http_get(&berth.readiness_probe, "readiness")? == ("/readyz".into(), admin.clone()));
    ensure!(http_get(&berth.startup_probe, "startup")?.1 == admin);

    // Not root, nothing to escalate to, nothing written outside /data.
    let pod_security = pod.security_context.context("no pod security context")?;
    ensure!(pod_security.run_as_non_root == Some(true));
    ensure!(pod_security.run_as_user.is_some_and(|u| u > 0));
    let security = berth
        .security_context
        .as_ref()
        .context("no container security context")?;
    ensure!(security.read_only_root_filesystem == Some(true));
    ensure!(security.allow_privilege_escalation == Some(false));
    let dropped = security
        .capabilities
        .as_ref()
        .and_then(|c| c.drop.clone())
        .unwrap_or_default();
    ensure!(dropped == ["ALL"], "{dropped:?}");
    let mounts = berth.volume_mounts.clone().unwrap_or_default();
    ensure!(
        mounts
            .iter()
            .any(|m| m.mount_path == "/data" && m.name == "data")
    );
    ensure!(args.contains(&"--data-dir=/data".to_string()), "{args:?}");
    let volumes = pod.volumes.unwrap_or_default();
    ensure!(volumes.iter().any(|v| v.name == "data"));

    // The operator token and the database URL come from the Secret.
    let secret: Secret = documents("secret.yaml", "Secret")?.remove(0);
    let secret_name = secret.metadata.name.context("unnamed secret")?;
    let keys = secret.string_data.unwrap_or_default();
    for (variable, key) in [
        ("BERTH_OPERATOR_TOKEN", "operator-token"),
        ("BERTH_STORE", "store-url"),
    ] {
        let env = berth
            .env
            .iter()
            .flatten()
            .find(|e| e.name == variable)
            .with_context(|| format!("{variable} is not set"))?;
        let from = env
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .with_context(|| format!("{variable} is not from a secret"))?;
        ensure!(
            from.name == secret_name && from.key == key,
            "{variable}: {from:?}"
        );
        ensure!(keys.contains_key(key), "the secret has no {key}");
    }
    ensure!(keys["store-url"].starts_with("postgres://"));

    // The Services select the pods and reach the named ports.
    let selector = spec.selector.match_labels.unwrap_or_default();
    let services: Vec<Service> = documents("service.yaml", "Service")?;
    ensure!(services.len() == 2);
    for service in &services {
        let spec = service.spec.as_ref().context("service without spec")?;
        ensure!(spec.selector.as_ref() == Some(&selector));
        for port in spec.ports.iter().flatten() {
            let target = port.target_port.clone().context("no target port")?;
            let IntOrString::String(name) = target else {
                anyhow::bail!("target ports are named");
            };
            ensure!(
                port_named(berth, &name).is_some(),
                "no container port {name}"
            );
        }
    }

    // The autoscaler scales this Deployment, never below two hosts.
    let hpa: HorizontalPodAutoscaler = documents("hpa.yaml", "HorizontalPodAutoscaler")?.remove(0);
    let hpa = hpa.spec.context("no HPA spec")?;
    ensure!(hpa.scale_target_ref.kind == "Deployment");
    ensure!(Some(hpa.scale_target_ref.name) == deployment.metadata.name);
    ensure!(hpa.min_replicas.unwrap_or(1) >= 2 && hpa.max_replicas > hpa.min_replicas.unwrap_or(1));

    // Voluntary disruptions take one host at a time, of these pods.
    let pdb: PodDisruptionBudget = documents("pdb.yaml", "PodDisruptionBudget")?.remove(0);
    let pdb = pdb.spec.context("no PDB spec")?;
    ensure!(pdb.max_unavailable == Some(IntOrString::Int(1)));
    ensure!(pdb.selector.and_then(|s| s.match_labels) == Some(selector));

    // Every file is listed for `kubectl apply -k`.
    let kustomization = std::fs::read_to_string(manifests().join("kustomization.yaml"))?;
    for file in [
        "secret.yaml",
        "deployment.yaml",
        "service.yaml",
        "hpa.yaml",
        "pdb.yaml",
    ] {
        ensure!(
            kustomization.contains(file),
            "kustomization.yaml misses {file}"
        );
    }
    Ok(())
}

/// The KEDA overlay scales the same Deployment on CPU and on the event
/// backlog's metrics, in place of the plain HPA.
#[test]
fn the_keda_overlay_scales_on_cpu_and_the_event_backlog() -> Result<()> {
    let deployment: Deployment = documents("deployment.yaml", "Deployment")?.remove(0);
    let scaled: Vec<serde_yaml::Value> = documents("keda/scaledobject.yaml", "ScaledObject")?;
    let spec = &scaled[0]["spec"];
    ensure!(spec["scaleTargetRef"]["kind"].as_str() == Some("Deployment"));
    ensure!(spec["scaleTargetRef"]["name"].as_str() == deployment.metadata.name.as_deref());
    let triggers = spec["triggers"].as_sequence().context("no triggers")?;
    let kinds: Vec<&str> = triggers.iter().filter_map(|t| t["type"].as_str()).collect();
    ensure!(kinds.contains(&"cpu"), "{kinds:?}");
    let queries: Vec<&str> = triggers
        .iter()
        .filter_map(|t| t["metadata"]["query"].as_str())
        .collect();
    for metric in ["berth_topic_backlog", "berth_topic_oldest_age_seconds"] {
        ensure!(
            queries.iter().any(|q| q.contains(metric)),
            "no trigger on {metric}: {queries:?}"
        );
    }
    let overlay = std::fs::read_to_string(manifests().join("keda/kustomization.yaml"))?;
    ensure!(overlay.contains("scaledobject.yaml") && overlay.contains("$patch: delete"));
    ensure!(overlay.contains("HorizontalPodAutoscaler"));
    Ok(())
}
