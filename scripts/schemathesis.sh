#!/usr/bin/env bash
# Property-based API testing with schemathesis against a running gateway (started by .ci/run
# with conformance-tests/ci/gateway.toml on 127.0.0.1:18080). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/schemathesis-venv"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5"
fi
spec="$target/schemathesis-camara-v1.1.0.yaml"
"$venv/bin/python" scripts/schemathesis_spec.py \
  "$root/../shared/camara/one-time-password-sms-v1.1.0.yaml" "$spec" \
  "http://127.0.0.1:18080/one-time-password-sms/v1"
token=$("$venv/bin/python" - <<'PY'
import base64, json, urllib.request
req = urllib.request.Request(
    "http://127.0.0.1:18080/oauth2/token",
    data=b"grant_type=client_credentials&scope=one-time-password-sms:send-validate",
    headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": "Basic " + base64.b64encode(b"conformance:conformance-secret").decode(),
    },
)
print(json.load(urllib.request.urlopen(req))["access_token"])
PY
)
"$venv/bin/schemathesis" --config-file scripts/schemathesis.toml run "$spec" \
  --url "http://127.0.0.1:18080/one-time-password-sms/v1" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --report junit --report-dir "$target/schemathesis"
