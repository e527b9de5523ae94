#!/usr/bin/env python3
"""Checks the Helm chart (k8s/r1) and the images (deploy/) with what runs without a cluster
or a container engine; scripts/test runs it in CI through scripts/chart-env.

    $(scripts/chart-env) k8s/test/chart_test.py            # every check, a line each
    $(scripts/chart-env) k8s/test/chart_test.py render -f k8s/test/values/cpu.yaml
        # the rendered objects as one JSON list (what cli/tests/chart.rs starts as processes)
    $(scripts/chart-env) k8s/test/chart_test.py values-files   # the matrix, one a line
    $(scripts/chart-env) k8s/test/chart_test.py compose        # compose.yaml's services

The checks, each a table of cases:
- the real Helm (v4, embedded by helm-python-sdk) lints the chart strictly with its defaults
  and with every values file in k8s/test/values/ (CPU only, GPU, KEDA, existing claims and
  secret), and renders each;
- every rendered object validates against Kubernetes' own schemas (kubernetes-validate,
  strict: unknown fields fail) for the oldest Kubernetes the chart supports and the newest
  the validator knows; KEDA's ScaledObject against k8s/test/schemas/;
- what the chart promises holds in every render (the `expect_*` checks below: world size,
  GPU requests, probes, non-root pods, claims and Secrets that exist, ...);
- bad values fail at render with a message naming the value (BAD_VALUES);
- the Dockerfiles pass hadolint and build r1ctl with the command CI checks.

Whether every rendered command is accepted by r1ctl (`--check`) and whether the rendered
chart runs a training run as local processes is tested in Rust: cli/tests/chart.rs.
"""

import argparse
import base64
import copy
import json
import pathlib
import re
import subprocess
import sys

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "k8s" / "r1"
VALUES_DIR = ROOT / "k8s" / "test" / "values"
SCHEMAS = ROOT / "k8s" / "test" / "schemas"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest the
# validator ships.
KUBE_VERSIONS = ["1.28.0", kubernetes_validate.latest_version()]
RELEASE, NAMESPACE = "demo", "ml"

# (values, the words the error must contain): each must fail at render, naming the value.
BAD_VALUES = [
    ({"learner": {"replicas": -1}}, ["/learner/replicas", "minimum"]),
    ({"learner": {"replicas": 0}}, ["/learner/replicas", "minimum"]),
    ({"actors": {"replicas": -2}}, ["/actors/replicas", "minimum"]),
    ({"rewardWorkers": {"replicas": -1}}, ["/rewardWorkers/replicas", "minimum"]),
    ({"learner": {"gpu": {"enabled": True}}}, ["learner.gpu.count is 0", "learner.gpu.enabled"]),
    ({"actors": {"gpu": {"enabled": True, "count": 0}}}, ["actors.gpu.count is 0"]),
    ({"autoscaling": {"keda": {"enabled": True}}}, ["autoscaling.keda.prometheusAddress is empty"]),
    ({"autoscaling": {"minReplicas": 0}}, ["autoscaling.minReplicas is 0", "HPA"]),
    ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, ["autoscaling.maxReplicas (2) is below autoscaling.minReplicas (5)"]),
    ({"learner": {"gpus": 1}}, ["/learner", "gpus"]),
    ({"coordinator": {"port": 70000}}, ["/coordinator/port", "maximum"]),
    ({"coordinator": {"persistence": {"size": "ten gigs"}}}, ["/coordinator/persistence/size"]),
    ({"image": {"pullPolicy": "Sometimes"}}, ["/image/pullPolicy"]),
    ({"learner": {"checkpoints": {"mountPath": "checkpoints"}}}, ["/learner/checkpoints/mountPath"]),
    ({"autoscaling": {"scoreQueuePerReplica": 0}}, ["/autoscaling/scoreQueuePerReplica", "minimum"]),
]


def values_files():
    return sorted(VALUES_DIR.glob("*.yaml"))


def load_values(paths, sets=()):
    values = {}
    for p in paths:
        merge(values, yaml.safe_load(pathlib.Path(p).read_text()) or {})
    for s in sets:
        merge(values, helm.parse_set_string(s))
    return values


def merge(into, new):
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = copy.deepcopy(v)


def render(values):
    """The chart's objects (tests included) and NOTES.txt for `values`."""
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs, notes = [], ""
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                docs.append(doc)
    return docs, notes


def pod_specs(docs):
    """(object, pod spec) of every workload and test pod."""
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            yield d, d["spec"]["template"]["spec"]
        elif d["kind"] == "Pod":
            yield d, d["spec"]


def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def arg_after(container, flag):
    args = container["args"]
    assert flag in args, f"{container['name']} has no {flag}: {args}"
    return args[args.index(flag) + 1]


class Failures(list):
    def check(self, ok, what):
        if not ok:
            self.append(what)


def expect_objects(docs, values, f: Failures, label):
    merged = helm.Chart.load(str(CHART)).merge_values(values)
    kinds = sorted({d["kind"] for d in docs})
    sts, deps = by_kind(docs, "StatefulSet"), by_kind(docs, "Deployment")
    coord = sts.get(f"{RELEASE}-r1-coordinator")
    learner = sts.get(f"{RELEASE}-r1-learner")
    f.check(coord and coord["spec"]["replicas"] == 1, f"{label}: one coordinator replica ({kinds})")
    f.check(learner is not None, f"{label}: a learner StatefulSet")
    f.check(set(deps) == {f"{RELEASE}-r1-actor", f"{RELEASE}-r1-reward"}, f"{label}: actor and reward Deployments, got {sorted(deps)}")
    if not (coord and learner):
        return
    # The learner: world size = replicas, rank from the ordinal, rank 0 by its stable name.
    lc = learner["spec"]["template"]["spec"]["containers"][0]
    replicas = merged["learner"]["replicas"]
    f.check(learner["spec"]["replicas"] == replicas, f"{label}: learner replicas {replicas}")
    f.check(arg_after(lc, "--world-size") == str(replicas), f"{label}: --world-size = replicas")
    rank = env_of(lc)["R1_LEARNER_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    f.check(rank == "metadata.labels['apps.kubernetes.io/pod-index']", f"{label}: rank from the pod ordinal, got {rank}")
    headless = by_kind(docs, "Service")[f"{RELEASE}-r1-learner"]
    f.check(headless["spec"]["clusterIP"] == "None" and learner["spec"]["serviceName"] == headless["metadata"]["name"], f"{label}: headless learner Service")
    rank0 = f"{RELEASE}-r1-learner-0.{RELEASE}-r1-learner.{NAMESPACE}.svc.cluster.local"
    f.check(arg_after(lc, "--master-addr").startswith(rank0 + ":"), f"{label}: ring rendezvous at rank 0's DNS name")
    actor = deps[f"{RELEASE}-r1-actor"]["spec"]["template"]["spec"]["containers"][0]
    f.check(arg_after(actor, "--learner") == f"http://{rank0}:{merged['learner']['weightsPort']}", f"{label}: actors pull from rank 0")
    f.check(learner["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60, f"{label}: the learner has time to checkpoint")
    # GPUs: requested exactly when enabled, with the CUDA image and --device cuda.
    for role, c in (("learner", lc), ("actors", actor)):
        gpu = merged[role]["gpu"]
        limits = c.get("resources", {}).get("limits", {})
        if gpu["enabled"]:
            f.check(limits.get("nvidia.com/gpu") == gpu["count"], f"{label}: {role} requests {gpu['count']} GPU, got {limits}")
            f.check(arg_after(c, "--device") == "cuda" and merged["cudaImage"]["repository"] in c["image"], f"{label}: {role} on the CUDA image with --device cuda")
        else:
            f.check("nvidia.com/gpu" not in limits and arg_after(c, "--device") == "cpu", f"{label}: {role} without GPUs")
    # Autoscaling: exactly one of a ScaledObject and an HPA, pointing at the reward Deployment.
    scaled, hpa = by_kind(docs, "ScaledObject"), by_kind(docs, "HorizontalPodAutoscaler")
    a = merged["autoscaling"]
    want = (1 if a["enabled"] and a["keda"]["enabled"] else 0, 1 if a["enabled"] and not a["keda"]["enabled"] else 0)
    f.check((len(scaled), len(hpa)) == want, f"{label}: (ScaledObject, HPA) = {want}, got {(len(scaled), len(hpa))}")
    for so in scaled.values():
        t = so["spec"]["triggers"][0]
        f.check(so["spec"]["scaleTargetRef"]["name"] == f"{RELEASE}-r1-reward" and t["type"] == "prometheus" and 'stage="score"' in t["metadata"]["query"], f"{label}: KEDA scales the reward workers on the score queue")
    for h in hpa.values():
        m = h["spec"]["metrics"][0]["external"]["metric"]
        f.check(h["spec"]["scaleTargetRef"]["name"] == f"{RELEASE}-r1-reward" and m["selector"]["matchLabels"] == {"stage": "score"}, f"{label}: the HPA scales the reward workers on the score queue")
    reward = deps[f"{RELEASE}-r1-reward"]
    f.check(("replicas" in reward["spec"]) != a["enabled"], f"{label}: reward replicas fixed only without autoscaling")
    # Every pod: non-root, no escalation, no capabilities, RuntimeDefault seccomp, gRPC
    # probes on a port it listens on, the token from a Secret that exists.
    secrets = by_kind(docs, "Secret")
    claims = set(by_kind(docs, "PersistentVolumeClaim"))
    existing_secret = merged["auth"]["existingSecret"]
    existing_claims = {merged["data"]["existingClaim"], merged["learner"]["checkpoints"]["existingClaim"], merged["coordinator"]["persistence"]["existingClaim"]} - {""}
    for obj, spec in pod_specs(docs):
        name = obj["metadata"]["name"]
        sc = spec.get("securityContext", {})
        f.check(sc.get("runAsNonRoot") is True and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{label}: {name} runs as non-root with RuntimeDefault seccomp")
        f.check(spec.get("automountServiceAccountToken") is False, f"{label}: {name} mounts no service-account token")
        for c in spec["containers"]:
            csc = c.get("securityContext", {})
            f.check(csc.get("allowPrivilegeEscalation") is False and csc.get("capabilities", {}).get("drop") == ["ALL"], f"{label}: {name}/{c['name']} drops every capability")
            ports = {p["containerPort"] for p in c.get("ports", [])}
            if obj["kind"] != "Pod":
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    p = c.get(probe, {})
                    f.check("grpc" in p and p["grpc"]["port"] in ports, f"{label}: {name} {probe} is a gRPC health probe on a port it opens ({p})")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    ok = ref["name"] == existing_secret or (ref["name"] in secrets and ref["key"] in secrets[ref["name"]]["data"])
                    f.check(ok, f"{label}: {name} reads {ref} from a Secret that exists")
        for v in spec.get("volumes", []):
            claim = v.get("persistentVolumeClaim", {}).get("claimName")
            if claim:
                f.check(claim in claims or claim in existing_claims, f"{label}: {name} mounts claim {claim}, which is rendered or given")
    if not existing_secret:
        token = base64.b64decode(next(iter(secrets.values()))["data"]["token"]).decode()
        f.check(len(token) >= 32 or token == merged["auth"]["token"], f"{label}: a generated token is long")
    for claim in claims:
        pvc = by_kind(docs, "PersistentVolumeClaim")[claim]
        f.check(pvc["metadata"]["annotations"].get("helm.sh/resource-policy") == "keep", f"{label}: claim {claim} survives helm uninstall")
    tests = [d for d in docs if d["kind"] == "Pod" and d["metadata"]["annotations"].get("helm.sh/hook") == "test"]
    f.check(len(tests) == (1 if merged["tests"]["enabled"] else 0), f"{label}: a helm test pod when tests.enabled")
    for t in tests:
        f.check(t["spec"]["containers"][0]["args"][0] == "runs", f"{label}: helm test runs `r1ctl runs`")
    policies = by_kind(docs, "NetworkPolicy")
    if merged["networkPolicy"]["enabled"]:
        rp = policies[f"{RELEASE}-r1-reward"]["spec"]
        to = [p for rule in rp["egress"] for p in rule["to"]]
        f.check(rp["ingress"] == [] and set(rp["policyTypes"]) == {"Ingress", "Egress"}, f"{label}: nothing reaches reward workers")
        f.check(any(p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "coordinator" for p in to) and len(rp["egress"]) == 2, f"{label}: reward workers reach the coordinator and DNS only")
        lp = policies[f"{RELEASE}-r1-learner"]["spec"]["ingress"]
        weight_from = [r["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for r in lp]
        f.check(sorted(weight_from) == ["actor", "learner"], f"{label}: only learners and actors reach the learner, got {weight_from}")
    else:
        f.check(not policies, f"{label}: no NetworkPolicy when disabled")


def validate_schemas(docs, f: Failures, label):
    keda = json.loads((SCHEMAS / "keda-scaledobject.json").read_text())
    for d in docs:
        what = f"{label}: {d['kind']}/{d['metadata']['name']}"
        if d["kind"] == "ScaledObject":
            errors = sorted(jsonschema.Draft7Validator(keda).iter_errors(d), key=str)
            f.check(not errors, f"{what}: {[e.message for e in errors]}")
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(d, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                f.append(f"{what} on Kubernetes {version}: {e.message} at {'.'.join(map(str, e.path))}")
            except kubernetes_validate.SchemaNotFoundError as e:
                f.append(f"{what}: no schema on Kubernetes {version}: {e}")


def check_chart(f: Failures):
    cases = [("defaults", [])] + [(p.stem, [p]) for p in values_files()]
    for label, files in cases:
        values = load_values(files)
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version="v1.28.0")
        bad = [m for m in report["messages"] if m["severity"] >= 2]
        f.check(not report["errors"] and not bad, f"{label}: helm lint --strict: {report['errors']} {bad}")
        try:
            docs, notes = render(values)
        except helm.HelmError as e:
            f.append(f"{label}: does not render: {e}")
            continue
        validate_schemas(docs, f, label)
        expect_objects(docs, values, f, label)
        f.check("r1ctl submit-run" in notes and "port-forward" in notes, f"{label}: NOTES.txt says how to reach the coordinator and submit a run")
        print(f"ok  chart renders and validates with {label}: {len(docs)} objects")
    for values, words in BAD_VALUES:
        try:
            render(values)
            f.append(f"bad values {values} rendered; they must fail naming the value")
        except helm.HelmError as e:
            msg = str(e)
            missing = [w for w in words if w not in msg]
            f.check(not missing, f"bad values {values}: the error lacks {missing}: {msg}")
    print(f"ok  {len(BAD_VALUES)} bad values fail at render, naming the value")


def check_images(f: Failures):
    dockerfiles = {"Dockerfile": "cargo build --locked --release -p r1ctl", "Dockerfile.cuda": "cargo build --locked --release -p r1ctl --features cuda"}
    hadolint = pathlib.Path(sys.executable).parent / "hadolint"
    for name, build in dockerfiles.items():
        path = ROOT / "deploy" / name
        out = subprocess.run([str(hadolint), "--no-color", "--config", str(ROOT / "deploy" / "hadolint.yaml"), str(path)], capture_output=True, text=True)
        f.check(out.returncode == 0, f"hadolint {name}: {out.stdout}{out.stderr}")
        text = path.read_text()
        # Continuation lines joined, so the RUN line reads as one command.
        runs = [l for l in text.replace("\\\n", " ").splitlines() if "cargo build" in l]
        f.check(len(runs) == 1 and re.sub(r"\s+", " ", runs[0].split("cargo build", 1)[1].split("&&")[0]).strip() == build.split("cargo build ", 1)[1], f"{name} builds r1ctl with `{build}`: {runs}")
        froms = re.findall(r"^ARG (\w+_IMAGE)=(\S+)$", text, re.M)
        f.check(len(froms) == 2 and all(re.search(r":[0-9][\w.-]*$|@sha256:[0-9a-f]{64}$", img) for _, img in froms), f"{name}: base images pinned by exact tag or digest: {froms}")
        f.check(re.search(r"^USER 10001", text, re.M) and 'ENTRYPOINT ["/usr/local/bin/r1ctl"]' in text, f"{name}: non-root, r1ctl as the entrypoint")
    # The build context keeps what `cargo build --locked` reads: every member's folder and the lock.
    ignored = [l.strip().rstrip("/") for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    members = re.search(r"members = \[(.*?)\]", (ROOT / "Cargo.toml").read_text(), re.S).group(1)
    for m in re.findall(r'"([^"]+)"', members) + ["Cargo.lock", "Cargo.toml"]:
        f.check(m not in ignored, f".dockerignore must not leave out {m}")
    f.check("target" in ignored and ".git" in ignored, ".dockerignore leaves out target/ and .git/")
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    f.check({"coordinator", "learner", "actor", "reward"} <= set(compose["services"]), f"compose.yaml has one of each role: {sorted(compose['services'])}")
    print("ok  Dockerfiles pass hadolint and build r1ctl as CI checks; .dockerignore and compose.yaml hold")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    r = sub.add_parser("render", help="print the rendered objects as one JSON list")
    r.add_argument("-f", "--values", action="append", default=[], help="values file (repeatable)")
    r.add_argument("--set", action="append", default=[], help="helm --set expression (repeatable)")
    sub.add_parser("values-files", help="print the values files of the test matrix, one a line")
    sub.add_parser("compose", help="print deploy/compose.yaml's services as JSON")
    a = ap.parse_args()
    if a.cmd == "render":
        docs, _ = render(load_values(a.values, a.set))
        json.dump(docs, sys.stdout)
        return
    if a.cmd == "compose":
        json.dump(yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"], sys.stdout)
        return
    if a.cmd == "values-files":
        print("\n".join(str(p) for p in values_files()))
        return
    f = Failures()
    check_chart(f)
    check_images(f)
    if f:
        print(f"{len(f)} chart/image checks failed:", *f, sep="\n  ", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
