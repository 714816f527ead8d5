//! The deployment files (`deploy/`) checked against each other and against tollgate itself, with no
//! cluster and no Docker: every manifest parses; every Secret, ConfigMap, volume, port, selector and
//! scale target they name exists; the Services and probes reach tollgate's own ports and endpoints;
//! the ConfigMap's `tollgate.toml` is accepted by `tollgate::config::parse` with exactly the
//! environment each Deployment gives the container, and it (like `config/tollgate.toml`) answers CORS
//! preflights with `[api.cors]`, not a public `OPTIONS` rule; the shutdown fits the grace period; the pods are
//! locked down; the Dockerfile builds from Cargo.lock, ships `config/` and runs unprivileged; and
//! `tls/`'s patch mounts the Certificate's Secret where the ConfigMap's `[listen.tls]` example reads it.
//! Field names and types per Kubernetes version are `tests/deploy-lint/run`'s job (kubernetes-validate).

// Panicking is how these tests fail, so unwrap/expect (with messages) are the point, not a smell.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use tollgate::config::{self, LogFormat, Settings};
use yaml_rust2::{Yaml, YamlLoader};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The container every Deployment here runs tollgate in.
const TOLLGATE: &str = "tollgate";
/// What every placeholder value in the example Secret carries, so no real secret lands in git.
const PLACEHOLDER: &str = "REPLACE-ME";

/// One Kubernetes object and the file it came from.
struct Object {
    file: String,
    kind: String,
    name: String,
    doc: Yaml,
}

/// One Dockerfile instruction, continuation lines joined.
struct Instruction {
    keyword: String,
    args: String,
}

// === impl Object ===

impl Object {
    fn id(&self) -> String {
        format!("{}: {} {}", self.file, self.kind, self.name)
    }

    fn pod(&self) -> &Yaml {
        &self.doc["spec"]["template"]["spec"]
    }

    fn pod_labels(&self) -> &Yaml {
        &self.doc["spec"]["template"]["metadata"]["labels"]
    }

    fn tollgate(&self) -> &Yaml {
        seq(&self.pod()["containers"])
            .iter()
            .find(|c| c["name"].as_str() == Some(TOLLGATE))
            .unwrap_or_else(|| panic!("{} has no container named {TOLLGATE:?}", self.id()))
    }

    /// A ConfigMap's `data`, or a Secret's decoded `data` and its `stringData`.
    fn values(&self) -> BTreeMap<String, String> {
        let mut values = BTreeMap::new();
        for (key, value) in hash(&self.doc["data"]) {
            let value = str_at(value, &format!("{} data.{key}", self.id()));
            let value = if self.kind == "Secret" {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(value)
                    .unwrap_or_else(|e| panic!("{} data.{key} is not base64: {e}", self.id()));
                String::from_utf8(bytes).expect("Secret data is UTF-8")
            } else {
                value.to_owned()
            };
            values.insert(key, value);
        }
        // Written over `data`, as the API server does.
        for (key, value) in hash(&self.doc["stringData"]) {
            let value = str_at(value, &format!("{} stringData.{key}", self.id()));
            values.insert(key, value.to_owned());
        }
        values
    }
}

// === manifests ===

/// Every object of every `deploy/kubernetes/*.yaml`, which must all parse and name themselves.
fn manifests() -> Vec<Object> {
    let dir = Path::new(ROOT).join("deploy/kubernetes");
    let mut paths: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    paths.sort();
    let mut objects = Vec::new();
    for path in paths {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(&path).unwrap();
        let docs = YamlLoader::load_from_str(&text)
            .unwrap_or_else(|e| panic!("deploy/kubernetes/{file} is not valid YAML: {e}"));
        let before = objects.len();
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            let at = format!("an object in {file}");
            str_at(&doc["apiVersion"], &at);
            let kind = str_at(&doc["kind"], &at).to_owned();
            let name = str_at(&doc["metadata"]["name"], &at).to_owned();
            objects.push(Object {
                file: file.clone(),
                kind,
                name,
                doc,
            });
        }
        assert!(objects.len() > before, "{file} defines no object");
    }
    objects
}

fn find<'a>(objects: &'a [Object], kind: &str, name: &str) -> Option<&'a Object> {
    objects.iter().find(|o| o.kind == kind && o.name == name)
}

fn of_kind<'a>(objects: &'a [Object], kind: &'a str) -> impl Iterator<Item = &'a Object> {
    objects.iter().filter(move |o| o.kind == kind)
}

/// The Deployment in the same file whose Pods the selector picks.
fn selected<'a>(objects: &'a [Object], by: &Object, selector: &Yaml) -> Option<&'a Object> {
    of_kind(objects, "Deployment").find(|d| d.file == by.file && selects(selector, d.pod_labels()))
}

fn selects(selector: &Yaml, labels: &Yaml) -> bool {
    let Some(selector) = selector.as_hash() else {
        return false;
    };
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| k.as_str().is_some_and(|k| labels[k] == *v))
}

fn seq(y: &Yaml) -> &[Yaml] {
    y.as_vec().map_or(&[], Vec::as_slice)
}

fn hash(y: &Yaml) -> impl Iterator<Item = (String, &Yaml)> {
    y.as_hash()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str().expect("string keys").to_owned(), v))
}

fn str_at<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, found {y:?}"))
}

/// The containerPort a probe, Service or NetworkPolicy port (a name or a number) designates.
fn container_port(container: &Yaml, port: &Yaml) -> Option<i64> {
    seq(&container["ports"])
        .iter()
        .find(|p| match port {
            Yaml::Integer(n) => p["containerPort"].as_i64() == Some(*n),
            Yaml::String(name) => p["name"].as_str() == Some(name.as_str()),
            _ => false,
        })
        .and_then(|p| p["containerPort"].as_i64())
}

fn prestop_sleep(container: &Yaml) -> Duration {
    let seconds = container["lifecycle"]["preStop"]["sleep"]["seconds"].as_i64();
    Duration::from_secs(seconds.map_or(0, |s| u64::try_from(s).expect("seconds >= 0")))
}

// === the configuration each Deployment runs with ===

/// The `--config` of the tollgate container (else of the image's CMD), which must be the image's.
fn config_path(d: &Object) -> String {
    let args: Vec<String> = match d.tollgate()["args"].as_vec() {
        Some(args) => args.iter().map(|a| str_at(a, "args").to_owned()).collect(),
        None => exec_form(&dockerfile(), "CMD"),
    };
    let path = args
        .iter()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .unwrap_or_else(|| panic!("{}: tollgate runs without --config: {args:?}", d.id()));
    assert_eq!(
        path,
        &image_config_path(),
        "{}: not the image's --config",
        d.id()
    );
    path.clone()
}

/// The file the tollgate container runs with, in the ConfigMap volume mounted over the directory
/// of its `--config`. Returns the ConfigMap and the text.
fn mounted_config<'a>(objects: &'a [Object], d: &Object) -> (&'a Object, String) {
    let path = config_path(d);
    let (dir, file) = path.rsplit_once('/').unwrap();
    let mount = seq(&d.tollgate()["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(dir))
        .unwrap_or_else(|| panic!("{}: nothing is mounted at {dir}", d.id()));
    // A subPath mount never sees ConfigMap updates, and tollgate hot-reloads on them.
    assert!(
        mount["subPath"].is_badvalue(),
        "{}: mount {dir} without subPath",
        d.id()
    );
    let volume = seq(&d.pod()["volumes"])
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("{}: no volume {:?}", d.id(), mount["name"]));
    let map_name = str_at(
        &volume["configMap"]["name"],
        "the config volume's configMap",
    );
    let map = find(objects, "ConfigMap", map_name).unwrap_or_else(|| {
        panic!(
            "{}: ConfigMap {map_name} is not in deploy/kubernetes",
            d.id()
        )
    });
    let key = seq(&volume["configMap"]["items"])
        .iter()
        .find(|i| i["path"].as_str() == Some(file))
        .map_or(file, |i| str_at(&i["key"], "items[].key"));
    let text = map.values().remove(key);
    (
        map,
        text.unwrap_or_else(|| panic!("{} has no key {key}", map.id())),
    )
}

/// The environment the container starts with: `envFrom` Secrets and ConfigMaps, then `env`
/// (literal values and `valueFrom` keys), which wins, as in Kubernetes.
fn container_env(objects: &[Object], d: &Object, container: &Yaml) -> HashMap<String, String> {
    let source = |kind: &str, name: &Yaml| {
        let name = str_at(name, &format!("{}: an env source's name", d.id()));
        find(objects, kind, name)
            .unwrap_or_else(|| panic!("{}: {kind} {name} is not in deploy/kubernetes", d.id()))
            .values()
    };
    let mut env = HashMap::new();
    for from in seq(&container["envFrom"]) {
        assert!(from["prefix"].is_badvalue(), "{}: envFrom prefix", d.id());
        for (kind, field) in [("Secret", "secretRef"), ("ConfigMap", "configMapRef")] {
            if !from[field].is_badvalue() {
                env.extend(source(kind, &from[field]["name"]));
            }
        }
    }
    for var in seq(&container["env"]) {
        let name = str_at(&var["name"], "env[].name").to_owned();
        let value = if let Some(value) = var["value"].as_str() {
            value.to_owned()
        } else {
            let from = &var["valueFrom"];
            let (kind, r) = match from["secretKeyRef"].is_badvalue() {
                false => ("Secret", &from["secretKeyRef"]),
                true => ("ConfigMap", &from["configMapKeyRef"]),
            };
            let key = str_at(&r["key"], &format!("{}: env {name}", d.id()));
            let values = source(kind, &r["name"]);
            let value = values.get(key).cloned();
            value.unwrap_or_else(|| panic!("{}: env {name}: {kind} has no key {key}", d.id()))
        };
        env.insert(name, value);
    }
    env
}

/// Every `${VAR}` in the file's string values, as interpolation sees them (comments don't count).
fn variables(doc: &toml::Value, into: &mut BTreeSet<String>) {
    match doc {
        toml::Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(at) = rest.find('$') {
                let after = &rest[at..];
                if let Some(tail) = after.strip_prefix("$${") {
                    rest = tail;
                } else if let Some(tail) = after.strip_prefix("${") {
                    let end = tail.find('}').expect("a terminated ${");
                    into.insert(tail[..end].to_owned());
                    rest = &tail[end + 1..];
                } else {
                    rest = &after[1..];
                }
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|v| variables(v, into)),
        toml::Value::Table(table) => table.values().for_each(|v| variables(v, into)),
        _ => {}
    }
}

fn toml_doc(text: &str) -> toml::Value {
    toml::Value::Table(toml::from_str(text).expect("the ConfigMap's tollgate.toml is TOML"))
}

// === Dockerfile ===

fn dockerfile() -> Vec<Instruction> {
    let text = fs::read_to_string(Path::new(ROOT).join("deploy/Dockerfile")).unwrap();
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                let (keyword, args) = current.split_once(' ').unwrap_or((&current, ""));
                instructions.push(Instruction {
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.trim().to_owned(),
                });
                current.clear();
            }
        }
    }
    instructions
}

/// The final (runtime) stage's instructions.
fn runtime_stage(instructions: &[Instruction]) -> &[Instruction] {
    let from = instructions
        .iter()
        .rposition(|i| i.keyword == "FROM")
        .expect("a FROM");
    &instructions[from..]
}

/// An exec-form (JSON array) ENTRYPOINT or CMD of the runtime stage.
fn exec_form(instructions: &[Instruction], keyword: &str) -> Vec<String> {
    let args = &runtime_stage(instructions)
        .iter()
        .rfind(|i| i.keyword == keyword)
        .unwrap_or_else(|| panic!("the runtime stage has no {keyword}"))
        .args;
    serde_json::from_str(args)
        .unwrap_or_else(|e| panic!("{keyword} {args} is not exec form (a JSON array): {e}"))
}

fn image_config_path() -> String {
    let cmd = exec_form(&dockerfile(), "CMD");
    let at = cmd
        .iter()
        .position(|a| a == "--config")
        .expect("CMD names --config");
    cmd[at + 1].clone()
}

// === tests ===

#[test]
fn every_manifest_parses_into_named_objects() {
    let objects = manifests();
    for file in [
        "configmap.yaml",
        "secret.yaml",
        "sidecar.yaml",
        "standalone.yaml",
    ] {
        assert!(
            objects.iter().any(|o| o.file == file),
            "deploy/kubernetes/{file} is missing"
        );
    }
    let mut seen = BTreeSet::new();
    for o in &objects {
        assert!(
            seen.insert((&o.kind, &o.name)),
            "{} is defined twice",
            o.id()
        );
    }
    let deployments = of_kind(&objects, "Deployment").count();
    assert_eq!(
        deployments, 2,
        "one Deployment in sidecar.yaml and one in standalone.yaml"
    );
}

#[test]
fn env_sources_and_volumes_name_objects_defined_here() {
    let objects = manifests();
    for d in of_kind(&objects, "Deployment") {
        let volumes = seq(&d.pod()["volumes"]);
        for container in seq(&d.pod()["containers"]) {
            // Resolves every envFrom and valueFrom, panicking on a missing object or key.
            container_env(&objects, d, container);
            for mount in seq(&container["volumeMounts"]) {
                let named = volumes.iter().any(|v| v["name"] == mount["name"]);
                assert!(
                    named,
                    "{}: volumeMount {:?} names no volume",
                    d.id(),
                    mount["name"]
                );
            }
        }
        for volume in volumes {
            if let Some(name) = volume["configMap"]["name"].as_str() {
                let map = find(&objects, "ConfigMap", name);
                let map = map.unwrap_or_else(|| panic!("{}: no ConfigMap {name} here", d.id()));
                for item in seq(&volume["configMap"]["items"]) {
                    let key = str_at(&item["key"], "items[].key");
                    assert!(map.values().contains_key(key), "{}: no key {key}", map.id());
                }
            }
            if let Some(name) = volume["secret"]["secretName"].as_str() {
                let found = find(&objects, "Secret", name).is_some();
                assert!(found, "{}: no Secret {name} here", d.id());
            }
        }
    }
}

#[test]
fn selectors_and_scale_targets_find_their_deployment() {
    let objects = manifests();
    for d in of_kind(&objects, "Deployment") {
        let own = selects(&d.doc["spec"]["selector"]["matchLabels"], d.pod_labels());
        assert!(
            own,
            "{}: spec.selector does not select its own template",
            d.id()
        );
    }
    for o in &objects {
        let selector = match o.kind.as_str() {
            "Service" => &o.doc["spec"]["selector"],
            "PodDisruptionBudget" => &o.doc["spec"]["selector"]["matchLabels"],
            _ => continue,
        };
        let found = selected(&objects, o, selector).is_some();
        assert!(found, "{} selects no Pod of its file", o.id());
    }
    for hpa in of_kind(&objects, "HorizontalPodAutoscaler") {
        let target = &hpa.doc["spec"]["scaleTargetRef"];
        let name = str_at(&target["name"], "scaleTargetRef.name");
        assert_eq!(target["kind"].as_str(), Some("Deployment"), "{}", hpa.id());
        let d = find(&objects, "Deployment", name);
        let found = d.is_some_and(|d| d.file == hpa.file);
        assert!(found, "{}: no Deployment {name} in its file", hpa.id());
    }
}

#[test]
fn services_and_probes_reach_tollgate_never_the_api() {
    let objects = manifests();
    for d in of_kind(&objects, "Deployment") {
        let tollgate = d.tollgate();
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            let get = &tollgate[probe]["httpGet"];
            assert_eq!(get["path"].as_str(), Some(path), "{}: {probe} path", d.id());
            let port = container_port(tollgate, &get["port"]);
            assert!(
                port.is_some(),
                "{}: {probe} port {:?} is not tollgate's",
                d.id(),
                get["port"]
            );
        }
    }
    for o in &objects {
        let ports: Vec<&Yaml> = match o.kind.as_str() {
            "Service" => seq(&o.doc["spec"]["ports"])
                .iter()
                .map(|p| &p["targetPort"])
                .collect(),
            "NetworkPolicy" => seq(&o.doc["spec"]["ingress"])
                .iter()
                .flat_map(|rule| seq(&rule["ports"]).iter().map(|p| &p["port"]))
                .collect(),
            _ => continue,
        };
        // A NetworkPolicy may select Pods defined elsewhere (the API's, in standalone.yaml).
        let Some(d) = selected(&objects, o, &o.doc["spec"]["selector"])
            .or_else(|| selected(&objects, o, &o.doc["spec"]["podSelector"]["matchLabels"]))
        else {
            assert_eq!(
                o.kind,
                "NetworkPolicy",
                "{} selects no Pod of its file",
                o.id()
            );
            continue;
        };
        for port in ports {
            let found = container_port(d.tollgate(), port);
            assert!(
                found.is_some(),
                "{}: port {port:?} is not one of tollgate's",
                o.id()
            );
        }
    }
}

#[test]
fn the_config_map_is_a_valid_config_with_each_deployments_environment() {
    let objects = manifests();
    for d in of_kind(&objects, "Deployment") {
        let (map, text) = mounted_config(&objects, d);
        let env = container_env(&objects, d, d.tollgate());
        let mut needed = BTreeSet::new();
        variables(&toml_doc(&text), &mut needed);
        for var in &needed {
            assert!(
                env.contains_key(var),
                "{}'s tollgate.toml reads ${{{var}}}, but {}'s tollgate container is not given it: \
                 add it to secret.yaml (or to the container's env if it is no secret)",
                map.id(),
                d.id()
            );
        }
        let settings = config::parse(&text, &env).unwrap_or_else(|e| {
            panic!(
                "{}: tollgate refuses {}'s tollgate.toml: {e}",
                d.id(),
                map.id()
            )
        });
        listeners_match_the_pod(d, &settings);
        upstreams_fit_the_layout(d, &settings);
        preflights_are_answered_not_forwarded(&d.id(), &settings);
    }
}

/// Browser preflights are tollgate's to answer (`[api.cors]`); a public `OPTIONS` rule would
/// forward every `OPTIONS`, preflight or not, to the API without a token.
fn preflights_are_answered_not_forwarded(what: &str, settings: &Settings) {
    for api in &settings.apis {
        assert!(
            api.cors.is_some(),
            "{what}: api {} has no [api.cors]",
            api.name
        );
        for (i, rule) in api.rules.iter().enumerate() {
            let options = rule
                .methods
                .as_ref()
                .is_none_or(|ms| ms.contains(&http::Method::OPTIONS));
            assert!(
                !(rule.public && options),
                "{what}: api {} rule {i} lets OPTIONS through without a token",
                api.name
            );
        }
    }
}

#[test]
fn the_example_config_is_valid_and_answers_preflights_itself() {
    let text = fs::read_to_string(Path::new(ROOT).join("config/tollgate.toml")).unwrap();
    let mut needed = BTreeSet::new();
    variables(&toml_doc(&text), &mut needed);
    let env: HashMap<String, String> = needed
        .into_iter()
        .map(|var| (var, "placeholder.example".to_owned()))
        .collect();
    let settings = config::parse(&text, &env)
        .unwrap_or_else(|e| panic!("tollgate refuses config/tollgate.toml: {e}"));
    preflights_are_answered_not_forwarded("config/tollgate.toml", &settings);
}

/// The gateway listens on the port the Service targets, the admin endpoints on the probes' port,
/// both on every interface: the kubelet and kube-proxy come in through the Pod's IP.
fn listeners_match_the_pod(d: &Object, settings: &Settings) {
    let tollgate = d.tollgate();
    let probe_port = container_port(tollgate, &tollgate["readinessProbe"]["httpGet"]["port"]);
    assert_eq!(
        probe_port,
        Some(i64::from(settings.listen.admin_address.port())),
        "{}",
        d.id()
    );
    let http = container_port(tollgate, &Yaml::String("http".to_owned()));
    assert_eq!(
        http,
        Some(i64::from(settings.listen.address.port())),
        "{}: port http",
        d.id()
    );
    for addr in [settings.listen.address, settings.listen.admin_address] {
        assert!(
            addr.ip().is_unspecified(),
            "{}: {addr} is not reachable from the kubelet",
            d.id()
        );
    }
    assert_eq!(
        settings.log.format,
        LogFormat::Json,
        "{}: JSON logs",
        d.id()
    );
}

/// Beside the API (sidecar), tollgate forwards over loopback to a port of another container; alone
/// (standalone), to a Service, since nothing else listens in its Pod.
fn upstreams_fit_the_layout(d: &Object, settings: &Settings) {
    let others: Vec<&Yaml> = seq(&d.pod()["containers"])
        .iter()
        .filter(|c| c["name"].as_str() != Some(TOLLGATE))
        .collect();
    for api in &settings.apis {
        let url = &api.upstream.url;
        let host = url.host_str().expect("an upstream host");
        let loopback =
            host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let port = url.port_or_known_default().map(i64::from);
        if others.is_empty() {
            assert!(
                !loopback,
                "{}: api {} forwards to its own Pod: {url}",
                d.id(),
                api.name
            );
            assert_ne!(
                host,
                d.name,
                "{}: api {} forwards to tollgate itself",
                d.id(),
                api.name
            );
        } else {
            let served = others.iter().any(|c| {
                seq(&c["ports"])
                    .iter()
                    .any(|p| p["containerPort"].as_i64() == port)
            });
            assert!(
                loopback && served,
                "{}: api {}'s {url} is not the API container",
                d.id(),
                api.name
            );
        }
    }
}

#[test]
fn the_secret_is_a_placeholder_example_of_what_the_config_reads() {
    let objects = manifests();
    let secret =
        find(&objects, "Secret", "tollgate-secrets").expect("secret.yaml: tollgate-secrets");
    let values = secret.values();
    for (key, value) in &values {
        assert!(
            value.contains(PLACEHOLDER),
            "{} {key}: not a {PLACEHOLDER} placeholder",
            secret.id()
        );
    }
    let map =
        find(&objects, "ConfigMap", "tollgate-config").expect("configmap.yaml: tollgate-config");
    let mut read = BTreeSet::new();
    variables(&toml_doc(&map.values()["tollgate.toml"]), &mut read);
    // What is no secret and differs per layout (the upstream) each Deployment sets itself.
    let set_by_every_deployment = |var: &str| {
        of_kind(&objects, "Deployment").all(|d| {
            seq(&d.tollgate()["env"])
                .iter()
                .any(|e| e["name"].as_str() == Some(var) && e["value"].as_str().is_some())
        })
    };
    for var in &read {
        let provided = values.contains_key(var) || set_by_every_deployment(var);
        assert!(
            provided,
            "tollgate.toml reads ${{{var}}}: add it to {}",
            secret.id()
        );
    }
    for key in values.keys() {
        assert!(
            read.contains(key),
            "{} {key}: tollgate.toml never reads it",
            secret.id()
        );
    }
}

#[test]
fn shutdown_fits_in_the_termination_grace_period() {
    let objects = manifests();
    for d in of_kind(&objects, "Deployment") {
        let period = d.pod()["terminationGracePeriodSeconds"].as_i64();
        assert_eq!(
            period,
            Some(30),
            "{}: terminationGracePeriodSeconds",
            d.id()
        );
        let period = Duration::from_secs(30);
        let (_, text) = mounted_config(&objects, d);
        // Kubernetes counts the grace period from the start of preStop; SIGTERM comes after it.
        let grace = config::parse(&text, &container_env(&objects, d, d.tollgate()))
            .unwrap_or_else(|e| panic!("{}: {e}", d.id()))
            .listen
            .shutdown_grace;
        // tollgate stops accepting at SIGTERM; kube-proxy and ingresses drop the Pod a moment after
        // it starts terminating. The preStop sleep covers that moment, or clients are refused.
        let prestop = prestop_sleep(d.tollgate());
        assert!(
            !prestop.is_zero(),
            "{}: tollgate needs a preStop sleep",
            d.id()
        );
        let drained = prestop + grace;
        assert!(
            drained < period,
            "{}: preStop + shutdown_grace = {drained:?} >= {period:?}",
            d.id()
        );
        for other in seq(&d.pod()["containers"])
            .iter()
            .filter(|c| c["name"].as_str() != Some(TOLLGATE))
        {
            // The API must outlive every request tollgate is still finishing.
            let up = prestop_sleep(other);
            assert!(
                up >= drained && up < period,
                "{}: {:?} preStop {up:?}",
                d.id(),
                other["name"]
            );
        }
    }
}

#[test]
fn tollgate_runs_locked_down_with_resources() {
    let objects = manifests();
    for d in of_kind(&objects, "Deployment") {
        let (id, c) = (d.id(), d.tollgate());
        let (sc, pod_sc) = (&c["securityContext"], &d.pod()["securityContext"]);
        // The container's setting, else the Pod's, as Kubernetes reads them.
        let either = |field: &str| {
            if sc[field].is_badvalue() {
                &pod_sc[field]
            } else {
                &sc[field]
            }
        };
        assert_eq!(
            either("runAsNonRoot").as_bool(),
            Some(true),
            "{id}: runAsNonRoot"
        );
        assert_ne!(either("runAsUser").as_i64(), Some(0), "{id}: runAsUser");
        let seccomp = either("seccompProfile")["type"].as_str();
        assert_eq!(seccomp, Some("RuntimeDefault"), "{id}: seccompProfile");
        let read_only = sc["readOnlyRootFilesystem"].as_bool();
        assert_eq!(read_only, Some(true), "{id}: readOnlyRootFilesystem");
        let escalation = sc["allowPrivilegeEscalation"].as_bool();
        assert_eq!(escalation, Some(false), "{id}: allowPrivilegeEscalation");
        let all = Yaml::String("ALL".to_owned());
        assert!(
            seq(&sc["capabilities"]["drop"]).contains(&all),
            "{id}: capabilities.drop ALL"
        );
        for bound in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                let set = &c["resources"][bound][resource];
                let set = !set.is_badvalue() && !set.is_null();
                assert!(set, "{id}: resources.{bound}.{resource}");
            }
        }
    }
}

#[test]
fn the_image_builds_from_the_lock_file_and_ships_the_binary_and_config() {
    let instructions = dockerfile();
    let build = instructions.iter().find(|i| i.keyword == "FROM");
    assert_eq!(build.expect("a FROM").args, "rust:1-bookworm AS build");
    let locked = "cargo build --release --locked";
    let builds = instructions
        .iter()
        .any(|i| i.keyword == "RUN" && i.args.contains(locked));
    assert!(builds, "the build stage runs {locked}");
    let copies: Vec<&str> = runtime_stage(&instructions)
        .iter()
        .filter(|i| i.keyword == "COPY")
        .map(|i| i.args.as_str())
        .collect();
    assert!(
        copies.contains(&"config/ /etc/tollgate/"),
        "the image ships config/: {copies:?}"
    );
    let binary =
        |c: &&str| c.starts_with("--from=build ") && c.ends_with(" /usr/local/bin/tollgate");
    assert!(
        copies.iter().any(binary),
        "the image ships the binary: {copies:?}"
    );
    assert_eq!(copies.len(), 2, "only the binary and config/: {copies:?}");
    assert_eq!(
        exec_form(&instructions, "ENTRYPOINT"),
        ["/usr/local/bin/tollgate"]
    );
    assert_eq!(exec_form(&instructions, "CMD")[0], "run");
    let config = image_config_path();
    let shipped = config
        .strip_prefix("/etc/tollgate/")
        .map(|f| Path::new(ROOT).join("config").join(f));
    assert!(
        shipped.is_some_and(|f| f.is_file()),
        "CMD's {config} is not a file of config/"
    );
}

#[test]
fn the_image_runs_unprivileged_and_exposes_tollgates_ports() {
    let instructions = dockerfile();
    let runtime = runtime_stage(&instructions);
    // Numeric, so that Kubernetes' runAsNonRoot can verify it; neither user nor group root.
    let user = runtime.iter().rfind(|i| i.keyword == "USER");
    let user = &user.expect("the runtime stage sets USER").args;
    for id in user.split(':') {
        let id: u32 = id
            .parse()
            .unwrap_or_else(|_| panic!("USER {user}: numeric ids, please"));
        assert_ne!(id, 0, "USER {user} is root");
    }
    let exposed: BTreeSet<i64> = runtime
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| {
            i.args
                .split_whitespace()
                .map(|p| p.parse::<i64>().expect("EXPOSE port"))
        })
        .collect();
    for d in of_kind(&manifests(), "Deployment") {
        for port in seq(&d.tollgate()["ports"]) {
            let port = port["containerPort"].as_i64().unwrap();
            assert!(
                exposed.contains(&port),
                "{}: containerPort {port} is not EXPOSEd",
                d.id()
            );
        }
    }
}

#[test]
fn the_build_context_admits_what_the_dockerfile_copies() {
    let ignore = fs::read_to_string(Path::new(ROOT).join(".dockerignore")).expect(".dockerignore");
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        patterns.first(),
        Some(&"*"),
        ".dockerignore admits what it names, nothing else"
    );
    for copy in dockerfile()
        .iter()
        .filter(|i| i.keyword == "COPY" && !i.args.starts_with("--from"))
    {
        let mut parts: Vec<&str> = copy.args.split_whitespace().collect();
        parts.pop(); // the destination
        for source in parts {
            let source = source.trim_end_matches('/');
            let admitted = patterns.contains(&format!("!{source}").as_str());
            assert!(
                admitted,
                ".dockerignore must admit {source} (COPY {})",
                copy.args
            );
        }
    }
}

// === deploy/kubernetes/tls/ ===

/// The one object of `deploy/kubernetes/tls/{file}`, which must parse.
fn tls_manifest(file: &str) -> Yaml {
    let path = Path::new(ROOT).join("deploy/kubernetes/tls").join(file);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading tls/{file}: {e}"));
    let mut docs = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("deploy/kubernetes/tls/{file} is not valid YAML: {e}"));
    docs.retain(|d| !d.is_null());
    assert_eq!(docs.len(), 1, "tls/{file} holds one document");
    docs.remove(0)
}

/// The `[listen.tls]` example the ConfigMap's tollgate.toml carries commented out, uncommented.
fn commented_listen_tls(text: &str) -> toml::Table {
    let block: Vec<&str> = text
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "# [listen.tls]")
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim())
        .collect();
    assert!(
        !block.is_empty(),
        "the ConfigMap's tollgate.toml has no commented [listen.tls] example"
    );
    let doc: toml::Table = toml::from_str(&block.join("\n"))
        .unwrap_or_else(|e| panic!("the commented [listen.tls] example is not TOML: {e}"));
    let tls = doc.get("listen").and_then(|l| l.get("tls"));
    tls.and_then(toml::Value::as_table)
        .cloned()
        .expect("[listen.tls]")
}

/// cert-manager writes the Certificate's Secret; the patch mounts that Secret, whole, where the
/// ConfigMap's `[listen.tls]` example reads `tls.crt` and `tls.key`, and opens the port of its
/// `address`; and it applies to every Deployment without colliding with what is there.
#[test]
fn the_tls_patch_mounts_the_certificates_secret_where_the_example_config_reads_it() {
    let cert = tls_manifest("certificate.yaml");
    assert_eq!(cert["apiVersion"].as_str(), Some("cert-manager.io/v1"));
    assert_eq!(cert["kind"].as_str(), Some("Certificate"));
    let secret = str_at(
        &cert["spec"]["secretName"],
        "certificate.yaml spec.secretName",
    );
    assert!(
        !seq(&cert["spec"]["dnsNames"]).is_empty(),
        "certificate.yaml names no dnsNames"
    );
    str_at(
        &cert["spec"]["issuerRef"]["name"],
        "certificate.yaml spec.issuerRef.name",
    );

    let patch = tls_manifest("patch-tls.yaml");
    let pod = &patch["spec"]["template"]["spec"];
    let container = seq(&pod["containers"])
        .iter()
        .find(|c| c["name"].as_str() == Some(TOLLGATE))
        .expect("patch-tls.yaml patches the tollgate container");
    let mounts = seq(&container["volumeMounts"]);
    assert_eq!(mounts.len(), 1, "patch-tls.yaml mounts one volume");
    let mount = &mounts[0];
    // A subPath mount is never updated when cert-manager renews the Secret.
    assert!(
        mount["subPath"].is_badvalue(),
        "the TLS mount has no subPath"
    );
    assert_eq!(mount["readOnly"].as_bool(), Some(true), "read-only");
    let dir = str_at(&mount["mountPath"], "patch-tls.yaml mountPath");
    let volume = seq(&pod["volumes"])
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("patch-tls.yaml defines the volume it mounts");
    assert_eq!(
        volume["secret"]["secretName"].as_str(),
        Some(secret),
        "patch-tls.yaml mounts the Certificate's Secret"
    );
    let https = Yaml::String("https".to_owned());
    let port = container_port(container, &https).expect("patch-tls.yaml: port https");

    let objects = manifests();
    let map =
        find(&objects, "ConfigMap", "tollgate-config").expect("configmap.yaml: tollgate-config");
    let tls = commented_listen_tls(&map.values()["tollgate.toml"]);
    for (key, file) in [("cert", "tls.crt"), ("key", "tls.key")] {
        assert_eq!(
            tls.get(key).and_then(toml::Value::as_str),
            Some(format!("{dir}/{file}").as_str()),
            "[listen.tls] {key}: the file cert-manager writes, where patch-tls.yaml mounts it"
        );
    }
    let address: std::net::SocketAddr = tls
        .get("address")
        .and_then(toml::Value::as_str)
        .and_then(|a| a.parse().ok())
        .expect("[listen.tls] address");
    assert_eq!(i64::from(address.port()), port, "[listen.tls] address port");
    assert!(
        address.ip().is_unspecified(),
        "{address}: reachable from the Service"
    );

    let deployments: Vec<&Object> = of_kind(&objects, "Deployment").collect();
    assert!(!deployments.is_empty());
    for d in deployments {
        let c = d.tollgate();
        assert!(
            container_port(c, &Yaml::Integer(port)).is_none()
                && container_port(c, &https).is_none(),
            "{}: port {port} or the name https is taken already",
            d.id()
        );
        let taken = seq(&d.pod()["volumes"])
            .iter()
            .any(|v| v["name"] == mount["name"])
            || seq(&c["volumeMounts"])
                .iter()
                .any(|m| m["mountPath"].as_str() == Some(dir));
        assert!(
            !taken,
            "{}: the TLS volume or {dir} is taken already",
            d.id()
        );
    }
}
