//! The Helm chart (k8s/r1) against the real `r1ctl`, without a cluster: the chart is rendered
//! by real Helm (k8s/test/chart_test.py through scripts/chart-env), and each rendered pod
//! becomes local processes the way a kubelet would start them.
//!
//! - `every_rendered_command_passes_check`: for the chart's defaults and every values file of
//!   the test matrix (k8s/test/values/), every container of every pod (each learner rank with
//!   its own ordinal), and every service of deploy/compose.yaml, runs its command and
//!   environment with `--check`: r1ctl must accept it.
//! - `the_rendered_chart_trains_a_run_as_local_processes`: renders the CPU values, starts
//!   each pod's container (command, arguments, environment with its Secret, field and `$(VAR)`
//!   references resolved, volumes as folders) on loopback, with every Service name and port
//!   mapped to a 127.0.0.1 port; waits until every readiness probe (grpc.health.v1) answers
//!   SERVING, submits a short run with `r1ctl submit-run`, sees it complete with exact
//!   counters, runs the `helm test` pod's command, and stops every pod with SIGTERM.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{Proc, Watch, fail_with_logs, fixture, free_addr, r1ctl};

const NAMESPACE: &str = "ml";

fn repo() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The chart checks' Python (scripts/chart-env creates it once).
fn chart_py() -> String {
    let out = Command::new("bash").arg(repo().join("scripts/chart-env")).output().unwrap();
    assert!(out.status.success(), "scripts/chart-env failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `k8s/test/chart_test.py <args>`, its JSON answer.
fn chart(py: &str, args: &[&str]) -> Value {
    let out = Command::new(py).arg(repo().join("k8s/test/chart_test.py")).args(args).output().unwrap();
    assert!(out.status.success(), "chart_test.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {s}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').map(val).collect();
    bytes
        .chunks(4)
        .flat_map(|c| {
            let n = c.iter().enumerate().fold(0u32, |n, (i, &v)| n | (v as u32) << (18 - 6 * i));
            let out = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.into_iter().take(c.len() - 1)
        })
        .collect()
}

/// One pod of a workload: its name, ordinal, labels and spec.
struct Pod {
    name: String,
    ordinal: usize,
    component: String,
    spec: Value,
    /// volumeClaimTemplates of its StatefulSet (per-pod claims).
    templates: Vec<String>,
    test_hook: bool,
}

fn pods(docs: &[Value]) -> Vec<Pod> {
    let mut pods = Vec::new();
    for d in docs {
        let name = d["metadata"]["name"].as_str().unwrap();
        let (spec, replicas, templates) = match d["kind"].as_str().unwrap() {
            "StatefulSet" | "Deployment" => {
                let t: Vec<String> = d["spec"]["volumeClaimTemplates"].as_array().map_or(vec![], |a| {
                    a.iter().map(|t| t["metadata"]["name"].as_str().unwrap().to_string()).collect()
                });
                (&d["spec"]["template"]["spec"], d["spec"]["replicas"].as_u64().unwrap_or(1), t)
            }
            "Pod" => (&d["spec"], 1, vec![]),
            _ => continue,
        };
        let labels =
            if d["kind"] == "Pod" { &d["metadata"]["labels"] } else { &d["spec"]["template"]["metadata"]["labels"] };
        for ordinal in 0..replicas as usize {
            pods.push(Pod {
                name: if d["kind"] == "Pod" { name.to_string() } else { format!("{name}-{ordinal}") },
                ordinal,
                component: labels["app.kubernetes.io/component"].as_str().unwrap().to_string(),
                spec: spec.clone(),
                templates: templates.clone(),
                test_hook: d["metadata"]["annotations"]["helm.sh/hook"] == "test",
            });
        }
    }
    pods
}

/// The rendered chart mapped onto this machine: local ports for container ports, folders for
/// volumes, the Secrets' values.
struct Local {
    dir: PathBuf,
    services: HashMap<String, Value>,
    pods: Vec<Pod>,
    secrets: HashMap<(String, String), String>,
    ports: HashMap<(String, u64), String>,
    addr: regex::Regex,
}

impl Local {
    fn new(docs: &[Value], dir: &Path) -> Local {
        let pods = pods(docs);
        let mut ports = HashMap::new();
        for p in &pods {
            for c in p.spec["containers"].as_array().unwrap() {
                for port in c["ports"].as_array().into_iter().flatten() {
                    ports.insert((p.name.clone(), port["containerPort"].as_u64().unwrap()), free_addr());
                }
            }
        }
        let mut secrets = HashMap::new();
        for d in docs.iter().filter(|d| d["kind"] == "Secret") {
            for (k, v) in d["data"].as_object().unwrap() {
                let value = String::from_utf8(base64_decode(v.as_str().unwrap())).unwrap();
                secrets.insert((d["metadata"]["name"].as_str().unwrap().to_string(), k.clone()), value);
            }
        }
        let services = docs
            .iter()
            .filter(|d| d["kind"] == "Service")
            .map(|d| (d["metadata"]["name"].as_str().unwrap().to_string(), d.clone()))
            .collect();
        let addr = regex::Regex::new(r"(0\.0\.0\.0|[a-z0-9-]+(?:\.[a-z0-9-]+)*\.svc\.cluster\.local):(\d+)").unwrap();
        Local { dir: dir.to_path_buf(), services, pods, secrets, ports, addr }
    }

    fn pod(&self, name: &str) -> &Pod {
        self.pods.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no pod {name}"))
    }

    /// The local address of `pod`'s container port `port` (a number or a port's name).
    fn port(&self, pod: &Pod, port: &Value) -> String {
        let number = match port {
            Value::String(name) => pod.spec["containers"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .find(|p| p["name"] == *name)
                .unwrap_or_else(|| panic!("{} has no port named {name}", pod.name))["containerPort"]
                .as_u64()
                .unwrap(),
            n => n.as_u64().unwrap(),
        };
        self.ports
            .get(&(pod.name.clone(), number))
            .unwrap_or_else(|| panic!("{} does not open port {number}", pod.name))
            .clone()
    }

    /// `host:port` as the process on `pod` must use it here.
    fn address(&self, pod: &Pod, host: &str, port: u64) -> String {
        if host == "0.0.0.0" {
            return self.port(pod, &Value::from(port));
        }
        let labels: Vec<&str> = host.trim_end_matches(".svc.cluster.local").split('.').collect();
        let (target_pod, service) = match labels.as_slice() {
            [svc, ns] if *ns == NAMESPACE => (None, *svc),
            [p, svc, ns] if *ns == NAMESPACE => (Some(*p), *svc),
            _ => panic!("{host} is not a name of this namespace's Services"),
        };
        let svc = self.services.get(service).unwrap_or_else(|| panic!("no Service {service} for {host}"));
        let entry = svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["port"].as_u64() == Some(port))
            .unwrap_or_else(|| panic!("Service {service} has no port {port}"));
        let target = match target_pod {
            Some(p) => self.pod(p),
            None => {
                let component = &svc["spec"]["selector"]["app.kubernetes.io/component"];
                self.pods
                    .iter()
                    .find(|p| p.component == *component && !p.test_hook)
                    .unwrap_or_else(|| panic!("Service {service} selects no pod"))
            }
        };
        self.port(target, &entry["targetPort"])
    }

    /// The local folder of `pod`'s volume `volume`.
    fn volume(&self, pod: &Pod, volume: &str) -> PathBuf {
        let v = pod.spec["volumes"].as_array().into_iter().flatten().find(|v| v["name"] == volume);
        let dir = match v {
            Some(v) if v["persistentVolumeClaim"].is_object() => {
                self.dir.join("claims").join(v["persistentVolumeClaim"]["claimName"].as_str().unwrap())
            }
            Some(_) => self.dir.join("pods").join(&pod.name).join(volume),
            None if pod.templates.iter().any(|t| t == volume) => {
                self.dir.join("claims").join(format!("{volume}-{}", pod.name))
            }
            None => panic!("{} mounts {volume}, which it does not declare", pod.name),
        };
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `s` with addresses and mount paths made local.
    fn local(&self, pod: &Pod, container: &Value, s: &str) -> String {
        let out = self
            .addr
            .replace_all(s, |c: &regex::Captures| self.address(pod, &c[1], c[2].parse().unwrap()))
            .into_owned();
        // The longest mount path that holds it, once.
        let mut mounts: Vec<&Value> = container["volumeMounts"].as_array().into_iter().flatten().collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m["mountPath"].as_str().unwrap().len()));
        for m in mounts {
            let path = m["mountPath"].as_str().unwrap();
            if out == path || out.starts_with(&format!("{path}/")) {
                return format!("{}{}", self.volume(pod, m["name"].as_str().unwrap()).display(), &out[path.len()..]);
            }
        }
        out
    }

    /// A container's arguments and environment as the kubelet would resolve them, made local.
    fn command(&self, pod: &Pod, container: &Value) -> (Vec<String>, Vec<(String, String)>) {
        assert!(container["command"].is_null(), "the image's entrypoint (r1ctl) runs every container");
        let args = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| self.local(pod, container, a.as_str().unwrap()))
            .collect();
        let mut env: Vec<(String, String)> = Vec::new();
        for e in container["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap().to_string();
            let value = if let Some(v) = e["value"].as_str() {
                // Kubernetes expands $(VAR) from the variables defined before.
                let mut v = v.to_string();
                for (k, val) in &env {
                    v = v.replace(&format!("$({k})"), val);
                }
                v
            } else if let Some(r) = e["valueFrom"]["secretKeyRef"].as_object() {
                let key = (r["name"].as_str().unwrap().to_string(), r["key"].as_str().unwrap().to_string());
                // A Secret the chart does not render (auth.existingSecret) is the admin's.
                self.secrets.get(&key).cloned().unwrap_or_else(|| "existing-secret-token".into())
            } else if let Some(f) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                match f {
                    "status.podIP" => "127.0.0.1".into(),
                    "metadata.name" => pod.name.clone(),
                    "metadata.namespace" => NAMESPACE.into(),
                    "metadata.labels['apps.kubernetes.io/pod-index']" => pod.ordinal.to_string(),
                    other => panic!("{}: no local value for the field {other}", pod.name),
                }
            } else {
                panic!("{}: env {name} has neither a value nor a reference this test knows: {e}", pod.name);
            };
            env.push((name, self.local(pod, container, &value)));
        }
        (args, env)
    }

    /// The local address of `pod`'s readiness probe.
    fn probe(&self, pod: &Pod) -> String {
        let c = &pod.spec["containers"][0];
        self.port(pod, &c["readinessProbe"]["grpc"]["port"])
    }
}

fn check(args: &[String], env: &[(String, String)], what: &str) {
    let mut cmd = r1ctl();
    cmd.args(args).arg("--check").env_remove("RUST_BACKTRACE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("config ok"),
        "{what}: r1ctl {} --check refused it: {}{}",
        args.join(" "),
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_rendered_command_passes_check() {
    let py = chart_py();
    let files = Command::new(&py).arg(repo().join("k8s/test/chart_test.py")).arg("values-files").output().unwrap();
    let files = String::from_utf8(files.stdout).unwrap();
    let mut cases: Vec<Vec<String>> = vec![vec![]];
    cases.extend(files.lines().map(|f| vec!["-f".to_string(), f.to_string()]));
    let mut checked = 0;
    for case in &cases {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["render"];
        args.extend(case.iter().map(String::as_str));
        let docs = chart(&py, &args);
        let local = Local::new(docs.as_array().unwrap(), dir.path());
        for pod in local.pods.iter().filter(|p| !p.test_hook) {
            for c in pod.spec["containers"].as_array().unwrap() {
                let (args, env) = local.command(pod, c);
                check(&args, &env, &format!("values {case:?}, pod {}", pod.name));
                checked += 1;
            }
        }
    }
    // deploy/compose.yaml: the same commands on one host.
    for (name, svc) in chart(&py, &["compose"]).as_object().unwrap() {
        let args: Vec<String> =
            svc["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
        let env: Vec<(String, String)> = svc["environment"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                (
                    k.clone(),
                    if v.as_str().unwrap().contains("R1_TOKEN") {
                        "compose-token".into()
                    } else {
                        v.as_str().unwrap().to_string()
                    },
                )
            })
            .collect();
        check(&args, &env, &format!("compose service {name}"));
        checked += 1;
    }
    // Pods: defaults, existing.yaml and keda.yaml 4 each (one of each role; the autoscaled
    // reward Deployment starts at 1), cpu.yaml 6 (2 actors, 2 reward workers), gpu.yaml 14
    // (4 learner ranks, 8 actors); compose.yaml 4 services.
    assert_eq!(checked, 4 + 4 + 4 + 6 + 14 + 4, "commands checked");
}

#[test]
fn the_rendered_chart_trains_a_run_as_local_processes() {
    let py = chart_py();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let values = repo().join("k8s/test/values/cpu.yaml");
    let docs = chart(
        &py,
        &[
            "render",
            "-f",
            values.to_str().unwrap(),
            "--set",
            "learner.replicas=2,actors.replicas=1,rewardWorkers.replicas=1",
        ],
    );
    let local = Local::new(docs.as_array().unwrap(), d);
    let coordinator = local.pods.iter().find(|p| p.component == "coordinator").unwrap();
    let (_, coord_env) = local.command(coordinator, &coordinator.spec["containers"][0]);
    let token = coord_env
        .iter()
        .find(|(k, _)| k == "R1_COORDINATOR_TOKEN")
        .map(|(_, v)| v.clone())
        .expect("the coordinator gets the token");
    let url = format!(
        "http://{}",
        local.address(coordinator, &format!("demo-r1-coordinator.{NAMESPACE}.svc.cluster.local"), 7070)
    );
    // Every pod, the coordinator first (kubelet would start them together; the workers retry).
    let spawn = |pod: &Pod| {
        let c = &pod.spec["containers"][0];
        let (args, env) = local.command(pod, c);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Proc::spawn(d, &pod.name, &args, &env)
    };
    let mut procs = vec![spawn(coordinator)];
    for pod in local.pods.iter().filter(|p| p.component != "coordinator" && !p.test_hook) {
        procs.push(spawn(pod));
    }
    // Ready as the kubelet sees it: each readiness probe (grpc.health.v1) answers SERVING.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    for pod in local.pods.iter().filter(|p| !p.test_hook) {
        let probe = format!("http://{}", local.probe(pod));
        while !rt.block_on(r1_proto::health::check(&probe, "")).unwrap_or(false) {
            if let Some(dead) = procs.iter_mut().find_map(|p| p.exited().map(|c| format!("{} exited with {c}", p.name)))
            {
                fail_with_logs(d, &format!("{dead} before every pod was ready"));
            }
            if Instant::now() > deadline {
                fail_with_logs(d, &format!("{}'s readiness probe ({probe}) never answered SERVING", pod.name));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // The model and dataset go on the data volume, as NOTES.txt tells a user to copy them.
    let data = local.volume(coordinator, "data");
    let model = data.join("models/qwen2-tiny");
    std::fs::create_dir_all(&model).unwrap();
    for f in std::fs::read_dir(fixture()).unwrap().flatten().filter(|f| f.path().is_file()) {
        std::fs::copy(f.path(), model.join(f.file_name())).unwrap();
    }
    std::fs::write(data.join("train.jsonl"), common::digit_sums(24)).unwrap();
    let spec = d.join("run.toml");
    std::fs::write(
        &spec,
        format!(
            "name = 'chart'\nbase_model = '{}'\n[dataset]\npath = '{}'\nfields = {{prompt = 'question', answer = 'answer'}}\n\
             [[rewards]]\nname = 'accuracy'\nverifier = 'math'\nweight = 1.0\n\
             [algorithm]\nkind = 'grpo'\ngroup_size = 4\nprompts_per_step = 2\n\
             [algorithm.sampling]\ntemplate = 'raw'\nmax_new_tokens = 8\n[algorithm.learner]\nlr = 1e-3\nmicro_batch = 4\n\
             [schedule]\ntotal_steps = 3\ncheckpoint_every = 1\neval_every = 0\n",
            model.display(),
            data.join("train.jsonl").display()
        ),
    )
    .unwrap();
    let submitted = common::json(&url, Some(&token), &["submit-run", spec.to_str().unwrap()])
        .unwrap_or_else(|| fail_with_logs(d, "submit-run with the chart's token failed"));
    let run = submitted["id"].as_u64().unwrap();
    let watch = Watch { dir: d, url: &url, token: Some(&token) };
    let status = watch.wait_run(run, &mut procs, "the run to complete", 300, |s| s["state"] == "completed");
    common::check_counters(&status, 3, 2);
    // `helm test`: the test pod's command, with its environment, against the coordinator.
    let test = local.pods.iter().find(|p| p.test_hook).expect("a helm test pod");
    let (args, env) = local.command(test, &test.spec["containers"][0]);
    let out = r1ctl().args(&args).envs(env).output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("`chart`: completed"),
        "helm test: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Pods are stopped with SIGTERM; each ends cleanly (the coordinator too: it is safe to end).
    for p in procs.iter().skip(1) {
        p.term();
    }
    for p in procs.iter_mut().skip(1) {
        match p.wait_exit(60) {
            Some(code) => assert!(code.success(), "{} exited with {code} after SIGTERM", p.name),
            None => fail_with_logs(d, &format!("{} did not stop after SIGTERM", p.name)),
        }
    }
}
