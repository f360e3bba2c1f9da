#!/usr/bin/env python3
"""Renders deploy/k8s (base and the example overlay) with `kubectl kustomize`
and checks the result against what the runbook promises: probes on the admin
port, resources, drain on stop, non-root read-only pods, an autoscaler and a
disruption budget per Deployment, headless gRPC Services, a migrations Job per
service, the CloudNativePG cluster and databases, configuration the binaries
accept, and NetworkPolicies that allow exactly the intended flows (evaluated
with the NetworkPolicy semantics, not by string matching).

Own code because no Debian package checks rendered manifests against a
project's own rules (kubeconform and friends check schemas only).

usage: check_manifests.py --source DIR --kubectl KUBECTL \
           --binary gateway=PATH --binary users=PATH --binary data=PATH
"""

import argparse
import re
import subprocess
import sys
from urllib.parse import urlparse

import yaml

SERVICES = ("gateway", "users", "data")
ADMIN_PORT = {"gateway": 9090, "users": 9091, "data": 9092}
GRPC_PORT = {"users": 50051, "data": 50052}
HTTP_PORT = 8080
# The drain each binary allows itself after SIGTERM (10 s grace; the gateway
# then spends up to 4 s cancelling and closing), plus a margin.
SHUTDOWN_GRACE_S = 10 + 4 + 2
# Connections kept free of the services' pools: PostgreSQL's superuser
# reserve (3 by default), the migration Jobs, a backup, monitoring and a psql.
DB_RESERVE = 20
# Secrets the operator creates (docs/operations.md, Kubernetes).
EXTERNAL_SECRETS = {"portico-users-db", "portico-data-db", "portico-data-secrets"}

failures = []


def fail(where, msg):
    failures.append(f"{where}: {msg}")


def render(kubectl, path):
    r = subprocess.run([kubectl, "kustomize", path], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"`{kubectl} kustomize {path}` failed:\n{r.stderr}")
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def accepted_vars(binary):
    """PORTICO_* variables (and *_FILE forms of secrets) that `binary --help` lists."""
    try:
        out = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    except OSError as e:
        sys.exit(f"cannot run {binary} --help: {e}")
    names = set(re.findall(r"^  (PORTICO_[A-Z0-9_]+)$", out, re.M))
    names |= set(re.findall(r"file named by (PORTICO_[A-Z0-9_]+_FILE)", out))
    if not names:
        sys.exit(f"{binary} --help lists no variables")
    return names


def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d.get("kind") == kind}


def selector_matches(sel, labels):
    """A LabelSelector ({} or None matches everything)."""
    if sel is None:
        return True
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def port_number(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p["containerPort"]
    return None


def addr_port(value):
    return int(value.rsplit(":", 1)[1])


# ---------------------------------------------------------------- workloads


def container_env(obj, configmaps, where):
    """Every variable a workload's first container gets, with its value (None
    when it comes from a Secret)."""
    c = pod_spec(obj)["containers"][0]
    env = {}
    for src in c.get("envFrom") or []:
        ref = src.get("configMapRef")
        if ref:
            cm = configmaps.get(ref["name"])
            if cm is None:
                fail(where, f"envFrom names a missing ConfigMap {ref['name']}")
                continue
            env.update(cm.get("data") or {})
        if src.get("secretRef") and src["secretRef"]["name"] not in EXTERNAL_SECRETS:
            fail(where, f"envFrom names an undocumented Secret {src['secretRef']['name']}")
    for e in c.get("env") or []:
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            if ref["name"] not in EXTERNAL_SECRETS:
                fail(where, f"{e['name']} comes from an undocumented Secret {ref['name']}")
            env[e["name"]] = None
        else:
            env[e["name"]] = e.get("value")
    return env


def check_deployment(svc, dep, docs, accepted):
    where = f"Deployment {dep['metadata']['name']}"
    spec = pod_spec(dep)
    c = spec["containers"][0]
    image = c["image"].split("@")[0]
    # The images tests/compose builds from deploy/docker/Dockerfile:
    # portico/<service>, possibly under a registry.
    image_name = image.split(":")[0] if "/" not in image.rsplit(":", 1)[-1] else image
    if not (image_name == f"portico/{svc}" or image_name.endswith(f"/portico/{svc}")):
        fail(where, f"image {c['image']} is not portico/{svc}")
    if "replicas" in dep["spec"]:
        fail(where, "sets replicas, which fights its HorizontalPodAutoscaler")
    if not selector_matches(dep["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"]):
        fail(where, "selector does not match its own pods")

    admin = port_number(c, "admin")
    if admin != ADMIN_PORT[svc]:
        fail(where, f"no container port named admin = {ADMIN_PORT[svc]}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                        ("startupProbe", "/healthz")):
        get = (c.get(probe) or {}).get("httpGet")
        if not get:
            fail(where, f"no HTTP {probe}")
            continue
        if get.get("path") != path or port_number(c, get.get("port")) != admin:
            fail(where, f"{probe} is not GET {path} on the admin port")
    res = c.get("resources") or {}
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in (res.get(kind) or {}):
                fail(where, f"no {kind}.{r}")

    pre = ((c.get("lifecycle") or {}).get("preStop")) or {}
    sleep = None
    if "sleep" in pre:
        sleep = int(pre["sleep"]["seconds"])
    elif "exec" in pre and pre["exec"]["command"][:1] == ["sleep"]:
        sleep = int(pre["exec"]["command"][1])
    if sleep is None or sleep <= 0:
        fail(where, "no preStop sleep to drain before SIGTERM")
    else:
        grace = spec.get("terminationGracePeriodSeconds", 30)
        if grace < sleep + SHUTDOWN_GRACE_S:
            fail(where, f"terminationGracePeriodSeconds {grace} < preStop {sleep} s + "
                        f"shutdown {SHUTDOWN_GRACE_S} s")

    check_security(where, spec)

    configmaps = by_kind(docs, "ConfigMap")
    env = container_env(dep, configmaps, where)
    for name in env:
        if name.startswith("PORTICO_") and name not in accepted:
            fail(where, f"sets {name}, which portico-{svc} does not accept")
    for name in set(env) & {n[:-5] for n in env if n.endswith("_FILE")}:
        fail(where, f"sets both {name} and {name}_FILE")
    if addr_port(env.get("PORTICO_ADMIN_ADDR", ":0")) != ADMIN_PORT[svc]:
        fail(where, "PORTICO_ADMIN_ADDR is not the admin container port")
    if svc == "gateway":
        if addr_port(env.get("PORTICO_HTTP_ADDR", ":0")) != port_number(c, "http"):
            fail(where, "PORTICO_HTTP_ADDR is not the http container port")
    else:
        if addr_port(env.get("PORTICO_GRPC_ADDR", ":0")) != port_number(c, "grpc"):
            fail(where, "PORTICO_GRPC_ADDR is not the grpc container port")
        check_database(svc, where, env, docs)
    targets = {"gateway": ("users", "data"), "users": ("data",), "data": ("users",)}[svc]
    for t in targets:
        check_target(where, env.get(f"PORTICO_{t.upper()}_TARGET"), t, docs)
    return env


def check_security(where, spec):
    psc = spec.get("securityContext") or {}
    if psc.get("runAsNonRoot") is not True or psc.get("runAsUser", 1) == 0:
        fail(where, "pod does not run as non-root")
    if spec.get("automountServiceAccountToken") is not False:
        fail(where, "mounts a service-account token it does not need")
    for c in spec["containers"]:
        sc = c.get("securityContext") or {}
        if sc.get("readOnlyRootFilesystem") is not True:
            fail(where, f"container {c['name']}: root filesystem is writable")
        if sc.get("allowPrivilegeEscalation") is not False:
            fail(where, f"container {c['name']}: privilege escalation allowed")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            fail(where, f"container {c['name']}: capabilities not dropped")


def check_target(where, value, target_svc, docs):
    """A dns:/// target naming a headless Service of the target's pods."""
    m = re.fullmatch(r"dns:///([a-z0-9-]+)(?:\.[a-z0-9.-]+)?:(\d+)", value or "")
    if not m:
        fail(where, f"PORTICO_{target_svc.upper()}_TARGET={value!r} is not dns:///<service>:<port>")
        return
    svc = by_kind(docs, "Service").get(m.group(1))
    if svc is None:
        fail(where, f"target names a missing Service {m.group(1)}")
        return
    if svc["spec"].get("clusterIP") != "None":
        fail(where, f"target Service {m.group(1)} is not headless: round_robin would see one address")
    dep = by_kind(docs, "Deployment")[f"portico-{target_svc}"]
    if not selector_matches({"matchLabels": svc["spec"]["selector"]},
                            dep["spec"]["template"]["metadata"]["labels"]):
        fail(where, f"target Service {m.group(1)} does not select portico-{target_svc} pods")
    if int(m.group(2)) not in [p["port"] for p in svc["spec"]["ports"]] or \
            int(m.group(2)) != GRPC_PORT[target_svc]:
        fail(where, f"target port {m.group(2)} is not the gRPC port of portico-{target_svc}")


def check_database(svc, where, env, docs):
    url = env.get("PORTICO_DATABASE_URL")
    if url is None and "PORTICO_DATABASE_URL_FILE" in env:
        return  # a whole URL from a Secret file: nothing to compare
    if not url:
        fail(where, "no PORTICO_DATABASE_URL")
        return
    u = urlparse(url)
    clusters = by_kind(docs, "Cluster")
    if len(clusters) != 1:
        fail(where, "expected one CloudNativePG Cluster")
        return
    (cname, cluster), = clusters.items()
    if u.hostname != f"{cname}-rw":
        fail(where, f"database host {u.hostname} is not the read-write Service {cname}-rw")
    dbname = u.path.lstrip("/")
    if dbname != f"portico_{svc}":
        fail(where, f"database {dbname} is not portico_{svc}")
    owner, secret = database_owner(docs, cluster, cname, dbname)
    if owner is None:
        fail(where, f"no bootstrap or Database resource creates {dbname}")
        return
    if u.username != owner:
        fail(where, f"connects as {u.username}, but {dbname} belongs to {owner}")
    if u.password is None:
        # The password must then be the role's own Secret, through PGPASSWORD.
        dep = by_kind(docs, "Deployment")[f"portico-{svc}"]
        refs = [e["valueFrom"]["secretKeyRef"]["name"]
                for e in pod_spec(dep)["containers"][0].get("env") or []
                if e["name"] == "PGPASSWORD" and "valueFrom" in e]
        if refs != [secret]:
            fail(where, f"PGPASSWORD is not taken from the role's Secret {secret}")


def database_owner(docs, cluster, cname, dbname):
    """(owner role, password Secret) of `dbname` in the cluster, or (None, None)."""
    spec = cluster["spec"]
    initdb = (spec.get("bootstrap") or {}).get("initdb") or {}
    roles = {r["name"]: (r.get("passwordSecret") or {}).get("name")
             for r in ((spec.get("managed") or {}).get("roles") or [])
             if r.get("ensure", "present") == "present" and r.get("login")}
    if initdb.get("database") == dbname:
        return initdb.get("owner"), (initdb.get("secret") or {}).get("name")
    for db in by_kind(docs, "Database").values():
        if db["apiVersion"] != "postgresql.cnpg.io/v1":
            continue
        s = db["spec"]
        if s.get("name") == dbname and s.get("cluster", {}).get("name") == cname:
            if s.get("owner") not in roles:
                return None, None
            return s["owner"], roles[s["owner"]]
    return None, None


def check_job(svc, docs, dep_env):
    jobs = [j for j in by_kind(docs, "Job").values()
            if j["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/name")
            == f"portico-{svc}"]
    if len(jobs) != 1:
        fail(f"portico-{svc}", f"expected one migrations Job, found {len(jobs)}")
        return
    job = jobs[0]
    where = f"Job {job['metadata']['name']}"
    c = pod_spec(job)["containers"][0]
    dep = by_kind(docs, "Deployment")[f"portico-{svc}"]
    if c["image"] != pod_spec(dep)["containers"][0]["image"]:
        fail(where, "image differs from the Deployment's")
    if "--migrate-only" not in (c.get("command") or []) + (c.get("args") or []):
        fail(where, "does not run --migrate-only")
    if pod_spec(job).get("restartPolicy") not in ("Never", "OnFailure"):
        fail(where, "bad restartPolicy")
    check_security(where, pod_spec(job))
    env = container_env(job, by_kind(docs, "ConfigMap"), where)
    for name in ("PORTICO_DATABASE_URL", "PGPASSWORD"):
        if env.get(name, "missing") != dep_env.get(name, "missing"):
            fail(where, f"{name} differs from the Deployment's")


def check_scaling(svc, docs):
    dep = by_kind(docs, "Deployment")[f"portico-{svc}"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    hpas = [h for h in by_kind(docs, "HorizontalPodAutoscaler").values()
            if h["spec"]["scaleTargetRef"]["kind"] == "Deployment"
            and h["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]]
    if len(hpas) != 1:
        fail(f"portico-{svc}", f"expected one HorizontalPodAutoscaler, found {len(hpas)}")
    else:
        h = hpas[0]
        if h["apiVersion"] != "autoscaling/v2":
            fail(f"HPA {h['metadata']['name']}", "is not autoscaling/v2")
        if not any(m.get("type") == "Resource" and m["resource"]["name"] == "cpu"
                   for m in h["spec"].get("metrics") or []):
            fail(f"HPA {h['metadata']['name']}", "does not scale on CPU")
        if h["spec"].get("minReplicas", 1) < 2:
            fail(f"HPA {h['metadata']['name']}", "allows a single replica")
    pdbs = [p for p in by_kind(docs, "PodDisruptionBudget").values()
            if selector_matches(p["spec"]["selector"], labels)]
    if len(pdbs) != 1:
        fail(f"portico-{svc}", f"expected one PodDisruptionBudget, found {len(pdbs)}")
    elif pdbs[0]["apiVersion"] != "policy/v1":
        fail(f"PDB {pdbs[0]['metadata']['name']}", "is not policy/v1")


def check_services(docs):
    deps = by_kind(docs, "Deployment")
    services = by_kind(docs, "Service")
    for svc in SERVICES:
        labels = deps[f"portico-{svc}"]["spec"]["template"]["metadata"]["labels"]
        selecting = [s for s in services.values()
                     if s["spec"].get("selector")
                     and selector_matches({"matchLabels": s["spec"]["selector"]}, labels)]
        admin = [s for s in selecting if s["spec"].get("clusterIP") != "None"
                 and s["spec"].get("type", "ClusterIP") == "ClusterIP"
                 and any(p.get("targetPort") in ("admin", ADMIN_PORT[svc]) for p in s["spec"]["ports"])]
        if not admin:
            fail(f"portico-{svc}", "no ClusterIP Service for the admin port")
        for s in selecting:
            for p in s["spec"]["ports"]:
                if p.get("targetPort") in ("admin", ADMIN_PORT[svc]) and \
                        s["spec"].get("type", "ClusterIP") != "ClusterIP":
                    fail(f"Service {s['metadata']['name']}", "exposes the admin port beyond the cluster")
        if svc in GRPC_PORT:
            headless = [s for s in selecting if s["spec"].get("clusterIP") == "None"
                        and any(p.get("targetPort") in ("grpc", GRPC_PORT[svc]) for p in s["spec"]["ports"])]
            if not headless:
                fail(f"portico-{svc}", "no headless Service for gRPC")
            for s in headless:
                if s["spec"].get("publishNotReadyAddresses"):
                    fail(f"Service {s['metadata']['name']}", "publishes pods that are not ready")
        else:
            public = [s for s in selecting
                      if any(p.get("targetPort") in ("http", HTTP_PORT) for p in s["spec"]["ports"])]
            if not public:
                fail("portico-gateway", "no Service for the public HTTP port")


# ---------------------------------------------------------- network policies


class Pod:
    def __init__(self, name, ns, ns_labels, labels, ports=(), portico=False):
        self.name, self.ns, self.ns_labels, self.labels = name, ns, ns_labels, labels
        self.ports = list(ports)  # [(number, protocol, name)]
        self.portico = portico  # the app namespace's pods


def peer_matches(peer, pod, policy_ns):
    if "ipBlock" in peer:
        return pod.name == "internet"
    if pod.name == "internet":
        return False
    ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
    if ns_sel is None and pod.ns != policy_ns:
        return False
    if ns_sel is not None and not selector_matches(ns_sel, pod.ns_labels):
        return False
    return pod_sel is None or selector_matches(pod_sel, pod.labels)


def rule_allows(rule, peers_key, other, dst, port, proto):
    peers = rule.get(peers_key)
    if peers and not any(peer_matches(p, other, rule["_ns"]) for p in peers):
        return False
    ports = rule.get("ports")
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != proto:
            continue
        want = p.get("port")
        if want is None:
            return True
        if isinstance(want, str):
            want = next((n for n, pr, name in dst.ports if name == want), None)
        if want == port:
            return True
    return False


def policy_types(pol):
    types = pol["spec"].get("policyTypes")
    if types:
        return types
    return ["Ingress"] + (["Egress"] if "egress" in pol["spec"] else [])


def allowed(policies, src, dst, port, proto):
    def side(pod, direction, key, peers_key, other):
        if not pod.portico:
            return True  # policies of other namespaces are not ours to judge
        pols = [p for p in policies if direction in policy_types(p)
                and selector_matches(p["spec"]["podSelector"], pod.labels)]
        if not pols:
            return True
        for p in pols:
            for rule in p["spec"].get(key) or []:
                rule = dict(rule, _ns=p["metadata"].get("namespace", "default"))
                if rule_allows(rule, peers_key, other, dst, port, proto):
                    return True
        return False
    return side(dst, "Ingress", "ingress", "from", src) and side(src, "Egress", "egress", "to", dst)


def check_network_policies(docs, ns):
    policies = list(by_kind(docs, "NetworkPolicy").values())
    for p in policies:
        if p["metadata"].get("namespace", "default") != ns:
            fail(f"NetworkPolicy {p['metadata']['name']}", "is in another namespace")
    app_ns = {"kubernetes.io/metadata.name": ns}
    pods = []
    for kind in ("Deployment", "Job"):
        for obj in by_kind(docs, kind).values():
            c = pod_spec(obj)["containers"][0]
            ports = [(p["containerPort"], p.get("protocol", "TCP"), p.get("name"))
                     for p in c.get("ports") or []]
            pods.append(Pod(obj["metadata"]["name"], ns, app_ns,
                            obj["spec"]["template"]["metadata"]["labels"], ports, True))
    (cname, _), = by_kind(docs, "Cluster").items()
    pods.append(Pod("postgres", ns, app_ns, {"cnpg.io/cluster": cname},
                    [(5432, "TCP", "postgresql"), (8000, "TCP", "status"), (9187, "TCP", "metrics")],
                    True))
    pods.append(Pod("stranger", ns, app_ns, {"app.kubernetes.io/name": "something-else"},
                    [(80, "TCP", "http")], True))
    pods += [
        Pod("prometheus", "monitoring", {"kubernetes.io/metadata.name": "monitoring"},
            {"app.kubernetes.io/name": "prometheus"}),
        Pod("operator", "cnpg-system", {"kubernetes.io/metadata.name": "cnpg-system"},
            {"app.kubernetes.io/name": "cloudnative-pg"}),
        Pod("kube-dns", "kube-system", {"kubernetes.io/metadata.name": "kube-system"},
            {"k8s-app": "kube-dns"}, [(53, "UDP", "dns"), (53, "TCP", "dns-tcp")]),
        Pod("elsewhere", "other", {"kubernetes.io/metadata.name": "other"},
            {"app.kubernetes.io/name": "portico-gateway", "app.kubernetes.io/component": "server"},
            [(80, "TCP", "http")]),
        Pod("internet", None, {}, {}, [(443, "TCP", "https")]),
    ]
    got = set()
    for src in pods:
        for dst in pods:
            if not (src.portico or dst.portico):
                continue
            for port, proto, _ in dst.ports:
                if allowed(policies, src, dst, port, proto):
                    got.add((src.name, dst.name, port, proto))

    portico = {"portico-gateway", "portico-users", "portico-data",
               "portico-users-migrate", "portico-data-migrate"}
    unrestricted = {p.name for p in pods} - portico  # no egress policy of ours
    want = set()
    for s in unrestricted:
        want.add((s, "portico-gateway", 8080, "TCP"))
        for d in ("kube-dns", "elsewhere", "internet"):
            if s in ("postgres", "stranger"):  # app-namespace pods we leave free
                for port, proto, _ in next(p for p in pods if p.name == d).ports:
                    want.add((s, d, port, proto))
    want |= {
        ("prometheus", "portico-gateway", 9090, "TCP"),
        ("prometheus", "portico-users", 9091, "TCP"),
        ("prometheus", "portico-data", 9092, "TCP"),
        ("prometheus", "postgres", 9187, "TCP"),
        ("portico-gateway", "portico-users", 50051, "TCP"),
        ("portico-gateway", "portico-data", 50052, "TCP"),
        ("portico-data", "portico-users", 50051, "TCP"),
        ("portico-users", "portico-data", 50052, "TCP"),
        ("postgres", "postgres", 5432, "TCP"), ("postgres", "postgres", 8000, "TCP"),
        ("operator", "postgres", 5432, "TCP"), ("operator", "postgres", 8000, "TCP"),
    }
    for s in ("portico-users", "portico-data", "portico-users-migrate", "portico-data-migrate"):
        want.add((s, "postgres", 5432, "TCP"))
    for s in portico:
        want |= {(s, "kube-dns", 53, "UDP"), (s, "kube-dns", 53, "TCP")}
    for extra in sorted(got - want):
        fail("NetworkPolicy", "allows %s -> %s:%d/%s" % extra)
    for missing in sorted(want - got):
        fail("NetworkPolicy", "blocks %s -> %s:%d/%s" % missing)


# ---------------------------------------------------------------- top level


def check_rendering(docs, accepted, ns):
    names = set(by_kind(docs, "Deployment"))
    if names != {f"portico-{s}" for s in SERVICES}:
        fail("Deployments", f"expected portico-gateway, -users, -data; got {sorted(names)}")
        return
    for d in docs:
        if d["kind"] == "Secret":
            fail(f"Secret {d['metadata']['name']}", "secrets do not belong in the manifests")
        if d["kind"] not in ("Namespace",) and d["metadata"].get("namespace", "default") != ns:
            fail(f"{d['kind']} {d['metadata']['name']}", f"not in namespace {ns}")
    for svc in SERVICES:
        env = check_deployment(svc, by_kind(docs, "Deployment")[f"portico-{svc}"], docs,
                               accepted[svc])
        check_scaling(svc, docs)
        if svc != "gateway":
            check_job(svc, docs, env)
    check_services(docs)
    clusters = by_kind(docs, "Cluster")
    if len(clusters) != 1 or next(iter(clusters.values()))["apiVersion"] != "postgresql.cnpg.io/v1":
        fail("PostgreSQL", "expected one postgresql.cnpg.io/v1 Cluster")
    else:
        check_network_policies(docs, ns)
        check_connection_budget(docs)
    check_hashing(docs)


def check_connection_budget(docs):
    """At their autoscalers' maximum, plus the rolling update's surge, the
    pools of users and data fit in max_connections with DB_RESERVE to spare."""
    (cname, cluster), = by_kind(docs, "Cluster").items()
    limit = int(cluster["spec"].get("postgresql", {}).get("parameters", {})
                .get("max_connections", 100))
    total = 0
    for svc in ("users", "data"):
        dep = by_kind(docs, "Deployment")[f"portico-{svc}"]
        hpa = by_kind(docs, "HorizontalPodAutoscaler")[f"portico-{svc}"]
        env = container_env(dep, by_kind(docs, "ConfigMap"), f"portico-{svc}")
        pool = int(env.get("PORTICO_DB_POOL_SIZE") or 10)
        surge = dep["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxSurge", "25%")
        n = hpa["spec"]["maxReplicas"]
        extra = -(-n * int(surge[:-1]) // 100) if str(surge).endswith("%") else int(surge)
        total += (n + extra) * pool
    if total + DB_RESERVE > limit:
        fail(f"Cluster {cname}", f"max_connections {limit} < {total} pooled connections at the "
                                 f"autoscalers' maximum (with surge) + {DB_RESERVE} reserved")


def quantity(q):
    """A Kubernetes memory quantity in bytes, or a CPU quantity in cores."""
    q = str(q)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "m": 1e-3}
    for u, f in units.items():
        if q.endswith(u):
            return float(q[:-len(u)]) * f
    return float(q)


def check_hashing(docs):
    """users hashes passwords on PORTICO_HASH_WORKERS threads of
    PORTICO_ARGON2_MEMORY each: set explicitly (the default follows the
    node's CPUs), within the CPU limit, and the memory fits the limit."""
    dep = by_kind(docs, "Deployment")["portico-users"]
    env = container_env(dep, by_kind(docs, "ConfigMap"), "portico-users")
    limits = pod_spec(dep)["containers"][0]["resources"]["limits"]
    workers = int(env.get("PORTICO_HASH_WORKERS") or 0)
    if workers < 1:
        fail("portico-users", "PORTICO_HASH_WORKERS not set: it would follow the node's CPUs")
        return
    if workers > max(1, round(quantity(limits["cpu"]))):
        fail("portico-users", f"{workers} hash workers for a CPU limit of {limits['cpu']}")
    argon = env.get("PORTICO_ARGON2_MEMORY") or "19Mi"
    need = workers * quantity(argon.replace("MiB", "Mi").replace("KiB", "Ki")) + 100 * 2**20
    if need > quantity(limits["memory"]):
        fail("portico-users", f"memory limit {limits['memory']} < {workers} x {argon} + 100Mi")


def check_overlay(base, overlay):
    """The example overlay changes what it says it changes."""
    b_dep, o_dep = by_kind(base, "Deployment"), by_kind(overlay, "Deployment")
    for name in b_dep:
        bi = pod_spec(b_dep[name])["containers"][0]
        oi = pod_spec(o_dep[name])["containers"][0]
        svc = name.removeprefix("portico-")
        if not re.fullmatch(r"[a-z0-9.-]+/(.+/)?portico/" + svc + r":[0-9][\w.-]*", oi["image"]):
            fail(f"overlay {name}", f"image {oi['image']} is not a registry image with a version")
        if oi["resources"] == bi["resources"]:
            fail(f"overlay {name}", "resources unchanged")
        if [p for p in oi.get("ports")] != [p for p in bi.get("ports")]:
            fail(f"overlay {name}", "ports changed")
    b_hpa, o_hpa = by_kind(base, "HorizontalPodAutoscaler"), by_kind(overlay, "HorizontalPodAutoscaler")
    for name in b_hpa:
        if o_hpa[name]["spec"]["minReplicas"] <= b_hpa[name]["spec"]["minReplicas"]:
            fail(f"overlay HPA {name}", "minReplicas not raised")
        if o_hpa[name]["spec"]["maxReplicas"] < o_hpa[name]["spec"]["minReplicas"]:
            fail(f"overlay HPA {name}", "maxReplicas below minReplicas")
    if by_kind(overlay, "Service")["portico-gateway"]["spec"].get("type") != "LoadBalancer":
        fail("overlay Service portico-gateway", "not a LoadBalancer")
    # The overlay's configuration merged into the generated ConfigMaps, and the
    # workloads point at the new (hash-named) ConfigMaps.
    env = container_env(o_dep["portico-gateway"], by_kind(overlay, "ConfigMap"), "overlay")
    if env.get("PORTICO_LOG_LEVEL") != "debug" or env.get("PORTICO_LOG_FORMAT") != "json":
        fail("overlay", "common ConfigMap not merged (PORTICO_LOG_LEVEL=debug, format kept)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--kubectl", default="kubectl")
    ap.add_argument("--binary", action="append", default=[], help="service=path")
    args = ap.parse_args()
    binaries = dict(b.split("=", 1) for b in args.binary)
    accepted = {s: accepted_vars(binaries[s]) for s in SERVICES}

    base = render(args.kubectl, f"{args.source}/deploy/k8s/base")
    overlay = render(args.kubectl, f"{args.source}/deploy/k8s/overlays/example")
    check_rendering(base, accepted, "default")
    n_base = len(failures)
    check_rendering(overlay, accepted, "portico")
    for i in range(n_base, len(failures)):
        failures[i] = "overlay: " + failures[i]
    check_overlay(base, overlay)
    if failures:
        print("\n".join(failures))
        print(f"{len(failures)} problem(s) in deploy/k8s")
        return 1
    print(f"deploy/k8s: base ({len(base)} objects) and overlay ({len(overlay)} objects) pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
