"""Invariants of the rendered chart that a Kubernetes schema cannot see.

Usage: check_manifests.py VALUES_FILE RENDERED_YAML OUT_TOML
Exits 1 naming every broken rule; writes the rendered gateway.toml to OUT_TOML so the
gateway binary can load it next.
"""
import re
import sys

import yaml

values_file, rendered_file, out_toml = sys.argv[1:4]
values = yaml.safe_load(open(values_file)) or {}
docs = [d for d in yaml.safe_load_all(open(rendered_file)) if d]
problems = []


def check(cond, msg):
    if not cond:
        problems.append(msg)


def seconds(v):
    m = re.fullmatch(r"([0-9]+)(ms|s|m)", v)
    n, unit = int(m.group(1)), m.group(2)
    return -(-n // 1000) if unit == "ms" else n * 60 if unit == "m" else n


by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)

(deploy,) = by_kind["Deployment"]
pod = deploy["spec"]["template"]["spec"]
(c,) = pod["containers"]
sc = c["securityContext"]
check(pod["securityContext"]["runAsNonRoot"] is True, "pod must run as non-root")
check(sc["readOnlyRootFilesystem"] is True, "root filesystem must be read-only")
check(sc["allowPrivilegeEscalation"] is False, "privilege escalation must be off")
check(sc["capabilities"]["drop"] == ["ALL"], "every capability must be dropped")
check(pod["automountServiceAccountToken"] is False, "no service account token")
check(c["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "admin"}, "liveness on admin /health/live")
check(c["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "admin"}, "readiness on admin /health/ready")

# terminationGracePeriodSeconds covers preStop + grace + drain + margin, from the values.
cfg = values.get("config", {})
grace = seconds(cfg.get("http", {}).get("shutdown_grace", "5s"))
request = seconds(cfg.get("http", {}).get("request_timeout", "10s"))
submit = seconds(cfg.get("smpp", {}).get("submit_timeout", "5s"))
pre = values.get("preStopSleepSeconds", 5)
need = pre + grace + request + submit
check(pod["terminationGracePeriodSeconds"] > need,
      f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} must exceed preStop {pre} + grace {grace} + drain {request}+{submit}")
if pre:
    check(c["lifecycle"]["preStop"] == {"sleep": {"seconds": pre}}, "preStop sleep action")

# Secrets only by reference: every OTPGW_ variable holding a secret comes from a secretKeyRef.
secret_env = {"OTPGW_AUTH__CLIENTS", "OTPGW_OTP__HASH_KEY", "OTPGW_SMPP__URL", "OTPGW_SMPP__ROUTES",
              "OTPGW_ADMIN__TOKEN", "OTPGW_STORE__REDIS_URL", "OTPGW_STORE__REDIS_CLUSTER_URLS"}
for e in c.get("env", []):
    if e["name"] in secret_env:
        check("secretKeyRef" in e.get("valueFrom", {}), f"{e['name']} must come from a Secret")
env_names = {e["name"] for e in c.get("env", [])}
check("OTPGW_AUTH__CLIENTS" in env_names, "clients come from a Secret")
embedded = values.get("smsc", {}).get("embedded", False)
check(embedded or len(env_names & {"OTPGW_SMPP__URL", "OTPGW_SMPP__ROUTES"}) == 1, "exactly one SMSC source")

(cm,) = by_kind["ConfigMap"]
toml = cm["data"]["gateway.toml"]
for key in ["hash_key", "token", "redis_url", "redis_cluster_urls", "clients", "routes", "password", "url"]:
    check(not re.search(rf'^"{key}"\s*=', toml, re.M) and f"[[auth.{key}]]" not in toml,
          f"the ConfigMap must not hold `{key}`")
check("smpp://" not in toml and "redis://" not in toml, "no URL with credentials in the ConfigMap")
check(('"expose" = true' in toml) == bool(embedded), "sandbox.expose only with the embedded SMSC")
open(out_toml, "w").write(toml)

# Services: the public one carries the API only; the admin one is ClusterIP.
services = {s["metadata"]["labels"].get("app.kubernetes.io/component"): s for s in by_kind["Service"]}
api = services["api"]
check([p["targetPort"] for p in api["spec"]["ports"]] == ["http"], "the API Service publishes only the http port")
if "admin" in services:
    check(services["admin"]["spec"]["type"] == "ClusterIP", "the admin Service is ClusterIP")
for sm in by_kind.get("ServiceMonitor", []):
    sel = sm["spec"]["selector"]["matchLabels"]
    check(sel.get("app.kubernetes.io/component") == "admin", "the ServiceMonitor selects the admin Service only")
    check("admin" in services, "the ServiceMonitor has an admin Service to scrape")
    check(all(ep["port"] == "admin" and ep["path"] == "/metrics" for ep in sm["spec"]["endpoints"]),
          "the ServiceMonitor scrapes admin /metrics")
    check(sm["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")

# NetworkPolicy: the admin port is reachable only from the configured peers.
for np in by_kind.get("NetworkPolicy", []):
    for rule in np["spec"]["ingress"]:
        if any(p["port"] == "admin" for p in rule["ports"]):
            check(rule.get("from"), "the admin port needs `from` peers")
    check(set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}, "ingress and egress are policed")

autoscaling = values.get("autoscaling", {}).get("enabled", False)
check(("HorizontalPodAutoscaler" in by_kind) == autoscaling, "HPA rendered exactly when enabled")
check(("replicas" not in deploy["spec"]) == autoscaling, "replicas left to the HPA exactly when enabled")

if problems:
    print("\n".join(f"FAIL {rendered_file}: {p}" for p in problems))
    sys.exit(1)
print(f"ok   {len(docs)} manifests, invariants hold")
