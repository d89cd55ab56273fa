//! The deployment files on paper (no Docker engine or cluster here):
//! `docker-compose.yml` and `deploy/k8s/` are parsed, their topology checked,
//! and every environment variable they give a binary is checked to be one it
//! reads, by loading that binary's settings with exactly that environment
//! (unknown keys and bad values fail the load).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value as Yaml;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(text: &str) -> Yaml {
    let mut v: Yaml = serde_yaml::from_str(text).unwrap();
    // A merged anchor may carry its own `<<` (gateway2 <- gateway1 <- app):
    // resolve until none is left, as compose's YAML loader does.
    for _ in 0..5 {
        v.apply_merge().unwrap();
    }
    v
}

fn s(v: &Yaml) -> String {
    match v {
        Yaml::String(x) => x.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Null => String::new(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// The binaries the image ships, from the Dockerfile's copy line.
fn shipped_binaries() -> BTreeSet<String> {
    let dockerfile = read("Dockerfile");
    let line = dockerfile
        .lines()
        .skip_while(|l| !l.contains("cp target/dist/"))
        .take_while(|l| !l.contains("/out/"))
        .chain(
            dockerfile
                .lines()
                .filter(|l| l.contains("/out/") && l.contains("target/dist")),
        )
        .collect::<Vec<_>>()
        .join(" ");
    let bins: BTreeSet<String> = line
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("target/dist/"))
        .map(str::to_owned)
        .collect();
    for b in &bins {
        let main = if b == "migrations" {
            "migrations/src/main.rs".to_owned()
        } else {
            format!("{b}/src/main.rs")
        };
        assert!(
            root().join(&main).exists(),
            "the image ships `{b}` but {main} is missing"
        );
        assert!(
            dockerfile.contains(&format!("-p {b}")),
            "`{b}` is copied but not built"
        );
    }
    bins
}

/// Which names a binary reads from the environment: its aliases, its
/// `<PREFIX>__` variables, its config file variable, and the logging ones.
fn reads(binary: &str, name: &str) -> bool {
    let aliases: &[(&str, &str)] = match binary {
        "gateway" => gateway::ENV_ALIASES,
        "users" => users::settings::ENV_ALIASES,
        "orders" => orders::settings::ENV_ALIASES,
        "scanner" => scanner::ENV_ALIASES,
        other => panic!("unknown binary {other}"),
    };
    let upper = binary.to_ascii_uppercase();
    aliases.iter().any(|(n, _)| *n == name)
        || name.starts_with(&format!("{upper}__"))
        || name == format!("{upper}_CONFIG_FILE")
        || matches!(name, "RUST_LOG" | "LOG_FORMAT")
}

/// Load the binary's settings with exactly `env` set (files named by
/// `files` are replaced by repository copies).
fn load_settings(binary: &str, env: &BTreeMap<String, String>) {
    let env = env.clone();
    let binary = binary.to_owned();
    figment::Jail::expect_with(move |jail| {
        for (k, v) in &env {
            jail.set_env(k, v);
        }
        let loaded = match binary.as_str() {
            "gateway" => gateway::Settings::load().map(|_| ()),
            "users" => users::Settings::load().map(|_| ()),
            "orders" => orders::Settings::load().map(|_| ()),
            "scanner" => scanner::Settings::load().map(|_| ()),
            other => panic!("unknown binary {other}"),
        };
        loaded.map_err(|e| figment::Error::from(format!("{binary}: {e}")))
    });
}

/// `${NAME}`, `${NAME:-default}` and `${NAME:?message}` from `.env.example`.
fn interpolate(value: &str, dotenv: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').unwrap() + i;
        let expr = &rest[i + 2..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr.split(":?").next().unwrap(), None),
        };
        let v = dotenv.get(name).cloned().filter(|v| !v.is_empty());
        out.push_str(&v.or(default.map(str::to_owned)).unwrap_or_default());
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out.replace("$$", "$")
}

fn dotenv() -> BTreeMap<String, String> {
    read(".env.example")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

const APP: [&str; 4] = ["gateway", "users", "orders", "scanner"];

/// The migrate step applies every service's schema with the CLI's own flags.
fn check_migrate_script(script: &str, env_names: &BTreeSet<String>) {
    let cli = read("migrations/src/main.rs");
    assert!(
        cli.contains("database_url") && cli.contains("Up,"),
        "CLI flags changed"
    );
    for svc in APP {
        let line = script
            .lines()
            .find(|l| l.contains(&format!("--service {svc} ")))
            .unwrap_or_else(|| panic!("no migration of {svc} in {script}"));
        assert!(
            line.trim_start().starts_with("migrations ") && line.trim_end().ends_with(" up"),
            "{line}"
        );
        let var = format!("{}_DATABASE_URL", svc.to_ascii_uppercase());
        assert!(line.contains(&var), "{line}");
        assert!(
            env_names.contains(&var),
            "{var} is not given to the migrate step"
        );
    }
}

#[test]
fn docker_compose_describes_the_topology_and_every_variable_is_read() {
    let compose = yaml(&read("docker-compose.yml"));
    let dotenv = dotenv();
    let bins = shipped_binaries();
    let services = compose["services"].as_mapping().unwrap();
    let names: BTreeSet<String> = services.keys().map(s).collect();
    let want: BTreeSet<String> = [
        "postgres", "redis", "migrate", "users", "orders", "scanner1", "scanner2", "gateway1",
        "gateway2",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    assert_eq!(names, want);
    assert_eq!(compose["networks"]["backend"]["internal"], Yaml::Bool(true));
    let config_targets: BTreeMap<String, String> = services
        .values()
        .filter_map(|svc| svc["configs"].as_sequence())
        .flatten()
        .map(|c| {
            let source = s(&c["source"]);
            let file = s(&compose["configs"][source.as_str()]["file"]);
            (s(&c["target"]), file)
        })
        .collect();

    let mut loaded = Vec::new();
    for (name, svc) in services {
        let name = s(name);
        let at = |m: &str| format!("{name}: {m}");
        // Only the gateways are published.
        assert_eq!(
            svc.get("ports").is_some(),
            name.starts_with("gateway"),
            "{}",
            at("ports")
        );
        let nets: Vec<String> = svc["networks"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(s)
            .collect();
        assert!(
            nets.contains(&"backend".to_owned()),
            "{}",
            at("not on backend")
        );
        if !name.starts_with("gateway") {
            assert!(
                !nets.contains(&"edge".to_owned()),
                "{}",
                at("on the edge network")
            );
        }
        // Every long-running service has a health check; dependencies wait for health.
        if name != "migrate" {
            assert!(
                svc["healthcheck"]["test"].is_sequence(),
                "{}",
                at("no healthcheck")
            );
        }
        if let Some(deps) = svc["depends_on"].as_mapping() {
            for (dep, cond) in deps {
                let dep = s(dep);
                let c = s(&cond["condition"]);
                let expected = if dep == "migrate" {
                    "service_completed_successfully"
                } else {
                    "service_healthy"
                };
                assert_eq!(c, expected, "{}", at(&format!("depends on {dep}")));
                assert!(
                    services.contains_key(Yaml::String(dep.clone())),
                    "{}",
                    at(&dep)
                );
            }
        }
        let env: BTreeMap<String, String> = svc["environment"]
            .as_mapping()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (s(k), interpolate(&s(v), &dotenv)))
                    .collect()
            })
            .unwrap_or_default();
        let command: Vec<String> = svc["command"]
            .as_sequence()
            .map(|c| c.iter().map(s).collect())
            .unwrap_or_default();
        if name == "migrate" {
            let names = env.keys().cloned().collect();
            check_migrate_script(command.last().unwrap(), &names);
            assert!(bins.contains("migrations"));
            continue;
        }
        let Some(binary) = command.first().filter(|c| APP.contains(&c.as_str())) else {
            continue; // postgres, redis: their images' own commands
        };
        assert!(
            bins.contains(binary),
            "{}",
            at("runs a binary the image does not ship")
        );
        // Depends on the migration, never migrates itself.
        assert!(
            svc["depends_on"]["migrate"].is_mapping(),
            "{}",
            at("does not wait for migrate")
        );
        let auto = format!("{}__DATABASE__AUTO_MIGRATE", binary.to_ascii_uppercase());
        assert_eq!(
            env.get(&auto).map(String::as_str),
            Some("false"),
            "{}",
            at(&auto)
        );
        for k in env.keys() {
            assert!(
                reads(binary, k),
                "{}",
                at(&format!("sets {k}, which `{binary}` does not read"))
            );
        }
        if binary == "gateway" {
            // Metrics are never anonymous in production: a token is demanded
            // of whoever runs compose, and the gateway refuses to start
            // without one.
            let raw = s(&svc["environment"]["GATEWAY_METRICS_TOKEN"]);
            assert!(
                raw.contains(":?"),
                "{}",
                at("GATEWAY_METRICS_TOKEN is optional")
            );
            assert_eq!(
                env.get("GATEWAY__METRICS__REQUIRE_TOKEN")
                    .map(String::as_str),
                Some("true"),
                "{}",
                at("metrics.require_token is not set")
            );
        }
        // Secrets are mounted, never in the environment.
        assert!(svc["secrets"].is_sequence(), "{}", at("no secrets mounted"));
        let mut env = env;
        for v in env.values_mut() {
            if let Some(file) = config_targets.get(v.as_str()) {
                *v = root().join(file).display().to_string();
            }
        }
        load_settings(binary, &env);
        loaded.push(name.clone());
    }
    assert_eq!(
        loaded,
        [
            "users", "orders", "scanner1", "scanner2", "gateway1", "gateway2"
        ]
    );
    // Files the compose file mounts exist or are made by the secrets script.
    let script = read("deploy/make-secrets.sh");
    for secret in compose["secrets"].as_mapping().unwrap().values() {
        let file = s(&secret["file"]);
        let stem = Path::new(&file)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".key.pem", "")
            .replace(".pub.pem", "");
        assert!(
            script.contains(&format!("gen {stem}")) || script.contains(&format!("secrets/{stem}")),
            "{file} is not made by deploy/make-secrets.sh"
        );
    }
    for c in compose["configs"].as_mapping().unwrap().values() {
        assert!(root().join(s(&c["file"])).exists());
    }
    assert!(root().join("deploy/postgres/init-databases.sh").exists());
}

/// Every document of every manifest in deploy/k8s.
/// What a production configuration sets (#30): the admin role only with a
/// second factor, and the registry's hosts written out.
fn shipped_for_production(gateway_yaml: &Yaml, what: &str) {
    let roles = &gateway_yaml["mfa"]["required_for_roles"];
    assert!(
        roles
            .as_sequence()
            .is_some_and(|r| r.iter().any(|x| x == "admin")),
        "{what}: mfa.required_for_roles has no admin"
    );
    assert!(
        gateway_yaml["registry"]["allowed_targets"].is_sequence(),
        "{what}: registry.allowed_targets is not set"
    );
}

#[test]
fn the_compose_gateway_is_configured_for_production() {
    shipped_for_production(&yaml(&read("deploy/compose/gateway.yaml")), "compose");
    let compose = yaml(&read("docker-compose.yml"));
    let env = &compose["services"]["gateway1"]["environment"];
    assert_eq!(env["GATEWAY__TOKENS__ISSUER"], env["GATEWAY_PUBLIC_URL"]);
}

fn manifests() -> Vec<(String, Yaml)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(root().join("deploy/k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = serde_yaml::Value::deserialize(doc).unwrap();
            if !v.is_null() {
                out.push((f.file_name().unwrap().to_string_lossy().into_owned(), v));
            }
        }
    }
    out
}

#[test]
fn kubernetes_manifests_are_complete_and_consistent() {
    let docs = manifests();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|(_, d)| d["kind"] == kind && d["metadata"]["name"] == name)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let secret = find("Secret", "gatehouse-secrets");
    let config = find("ConfigMap", "gatehouse-config");
    let bins = shipped_binaries();
    // Every resource the kustomization lists exists; everything is namespaced.
    let kustomization = yaml(&read("deploy/k8s/kustomization.yaml"));
    for r in kustomization["resources"].as_sequence().unwrap() {
        assert!(root().join("deploy/k8s").join(s(r)).exists(), "{r:?}");
    }
    for (file, d) in &docs {
        if d["kind"] != "Namespace" && d["kind"] != "Kustomization" {
            assert_eq!(d["metadata"]["namespace"], "gatehouse", "{file}");
        }
    }

    // The public Service keeps client addresses (the gateway's per-address
    // login limits and X-Forwarded-For depend on them).
    let gateway_env =
        &find("Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]["env"];
    let requires = gateway_env
        .as_sequence()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "GATEWAY__METRICS__REQUIRE_TOKEN" && e["value"] == "true");
    assert!(
        requires,
        "the gateway Deployment must require a metrics token"
    );
    let public = find("Service", "gateway");
    assert_eq!(public["spec"]["type"], "LoadBalancer");
    assert_eq!(public["spec"]["externalTrafficPolicy"], "Local");
    // TLS terminates at the gateway (no Ingress): 443 to its HTTPS port,
    // the certificate from the Secret cert-manager's Certificate fills.
    assert_eq!(public["spec"]["ports"][0]["port"], 443);
    assert_eq!(public["spec"]["ports"][0]["targetPort"], "https");
    let tls_env = |name: &str| {
        gateway_env
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| s(&e["value"]))
    };
    assert_eq!(tls_env("GATEWAY_TLS").as_deref(), Some("files"));
    let certificate = find("Certificate", "gateway-tls");
    assert_eq!(certificate["spec"]["secretName"], "gateway-tls");

    let workloads = [
        ("Deployment", "users", "users"),
        ("Deployment", "orders", "orders"),
        ("StatefulSet", "scanner", "scanner"),
        ("Deployment", "gateway", "gateway"),
    ];
    for (kind, name, binary) in workloads {
        let w = find(kind, name);
        let at = |m: &str| format!("{kind} {name}: {m}");
        let labels = &w["spec"]["template"]["metadata"]["labels"];
        for (k, v) in w["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
            assert_eq!(
                &labels[k],
                v,
                "{}",
                at("selector does not match the pod labels")
            );
        }
        assert!(
            w["spec"]["replicas"].as_u64().unwrap() >= 2,
            "{}",
            at("fewer than 2 replicas")
        );
        let pod = &w["spec"]["template"]["spec"];
        assert_eq!(
            pod["securityContext"]["runAsNonRoot"],
            Yaml::Bool(true),
            "{}",
            at("root")
        );
        let c = &pod["containers"][0];
        let command: Vec<String> = c["command"].as_sequence().unwrap().iter().map(s).collect();
        assert_eq!(command, [binary], "{}", at("command"));
        assert!(bins.contains(binary), "{}", at("binary not shipped"));
        let ports: Vec<String> = c["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| s(&p["name"]))
            .collect();
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            assert_eq!(c[probe]["httpGet"]["path"], path, "{}", at(probe));
            assert!(
                ports.contains(&s(&c[probe]["httpGet"]["port"])),
                "{}",
                at(probe)
            );
        }
        // Volumes: every secret/config item key exists.
        for v in pod["volumes"].as_sequence().unwrap() {
            let (source, items) = if v["secret"]["secretName"] == "gateway-tls" {
                // A kubernetes.io/tls Secret (cert-manager's), mounted where
                // the gateway's TLS settings read it.
                let mount = c["volumeMounts"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .find(|m| m["name"] == v["name"])
                    .map(|m| s(&m["mountPath"]))
                    .unwrap();
                for (key, var) in [
                    ("tls.crt", "GATEWAY_TLS_CERT_FILE"),
                    ("tls.key", "GATEWAY_TLS_KEY_FILE"),
                ] {
                    let set =
                        c["env"].as_sequence().unwrap().iter().any(|e| {
                            e["name"] == var && s(&e["value"]) == format!("{mount}/{key}")
                        });
                    assert!(set, "{}", at(&format!("{var} is not {mount}/{key}")));
                }
                continue;
            } else if v["secret"].is_mapping() {
                (&secret["stringData"], &v["secret"]["items"])
            } else if v["configMap"].is_mapping() {
                (&config["data"], &v["configMap"]["items"])
            } else {
                continue;
            };
            for item in items.as_sequence().unwrap() {
                assert!(
                    source.get(s(&item["key"])).is_some(),
                    "{}",
                    at(&format!("volume key {:?}", item["key"]))
                );
            }
        }
        let mounts: BTreeMap<String, String> = c["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| (s(&m["mountPath"]), s(&m["name"])))
            .collect();
        // The environment: every name is read by the binary, every
        // reference resolves, and the settings load with these values.
        let mut env = BTreeMap::new();
        for e in c["env"].as_sequence().unwrap() {
            let name = s(&e["name"]);
            assert!(
                reads(binary, &name),
                "{}",
                at(&format!("sets {name}, which `{binary}` does not read"))
            );
            let from = &e["valueFrom"];
            let value = if let Some(v) = e.get("value") {
                s(v)
            } else if from["secretKeyRef"].is_mapping() {
                let key = s(&from["secretKeyRef"]["key"]);
                s(secret["stringData"]
                    .get(&key)
                    .unwrap_or_else(|| panic!("{}", at(&format!("no secret key {key}")))))
            } else if from["configMapKeyRef"].is_mapping() {
                let key = s(&from["configMapKeyRef"]["key"]);
                s(config["data"]
                    .get(&key)
                    .unwrap_or_else(|| panic!("{}", at(&format!("no config key {key}")))))
            } else if from["fieldRef"].is_mapping() {
                format!("{name}-0")
            } else {
                panic!("{}", at(&format!("{name} has no value")));
            };
            env.insert(name, value);
        }
        let auto = format!("{}__DATABASE__AUTO_MIGRATE", binary.to_ascii_uppercase());
        assert_eq!(
            env.get(&auto).map(String::as_str),
            Some("false"),
            "{}",
            at(&auto)
        );
        // The gateway's config file is the ConfigMap's, mounted where it says.
        if let Some(file) = env.get("GATEWAY_CONFIG_FILE").cloned() {
            let dir = Path::new(&file).parent().unwrap().display().to_string();
            assert!(
                mounts.contains_key(&dir),
                "{}",
                at("config file not mounted")
            );
            let tmp =
                std::env::temp_dir().join(format!("gatehouse-k8s-{}.yaml", std::process::id()));
            std::fs::write(&tmp, s(&config["data"]["gateway.yaml"])).unwrap();
            env.insert("GATEWAY_CONFIG_FILE".into(), tmp.display().to_string());
        }
        load_settings(binary, &env);
        // Each workload has a Service in front.
        let service = find("Service", name);
        for (k, v) in service["spec"]["selector"].as_mapping().unwrap() {
            assert_eq!(&labels[k], v, "{}", at("Service selector"));
        }
    }
    // The scanners' Service is headless: the gateway discovers its pods'
    // addresses by DNS.
    assert_eq!(find("Service", "scanner")["spec"]["clusterIP"], "None");
    let gw_config: serde_yaml::Value =
        serde_yaml::from_str(&s(&config["data"]["gateway.yaml"])).unwrap();
    shipped_for_production(&gw_config, "the k8s ConfigMap");
    assert!(s(&gw_config["tokens"]["issuer"]).starts_with("https://"));
    assert_eq!(
        gw_config["tokens"]["issuer"],
        gw_config["tokens"]["public_url"]
    );
    let scanner = &gw_config["upstreams"]["scanner"]["targets"][0];
    assert_eq!(scanner["discover"], "dns");
    assert_eq!(
        s(&scanner["url"]),
        "http://scanner.gatehouse.svc.cluster.local:8080"
    );
    // The gateway scales on CPU, never below 2.
    let hpa = find("HorizontalPodAutoscaler", "gateway");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "gateway");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
    assert!(hpa["spec"]["maxReplicas"].as_u64() > hpa["spec"]["minReplicas"].as_u64());
    // Migrations run once, in a Job, with every service's database.
    let job = find("Job", "gatehouse-migrate");
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    let names: BTreeSet<String> = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| s(&e["name"]))
        .collect();
    for e in c["env"].as_sequence().unwrap() {
        let key = s(&e["valueFrom"]["secretKeyRef"]["key"]);
        assert!(
            secret["stringData"].get(&key).is_some(),
            "job secret key {key}"
        );
    }
    let script = s(c["command"].as_sequence().unwrap().last().unwrap());
    check_migrate_script(&script.replace('$', "$$"), &names);
    // Only the gateway is reachable from outside the namespace.
    let np = find("NetworkPolicy", "backend-from-gateway-only");
    assert_eq!(np["spec"]["podSelector"]["matchLabels"]["tier"], "backend");
    for (kind, name, _) in workloads.iter().filter(|w| w.1 != "gateway") {
        assert_eq!(
            find(kind, name)["spec"]["template"]["metadata"]["labels"]["tier"],
            "backend"
        );
    }
    assert_eq!(find("Service", "gateway")["spec"]["type"], "LoadBalancer");
}

#[test]
#[should_panic(expected = "unknown field")]
fn a_variable_the_binary_does_not_know_fails_the_load() {
    load_settings(
        "users",
        &BTreeMap::from([("USERS__DATABASE__MAX_CONECTIONS".to_owned(), "5".to_owned())]),
    );
}
