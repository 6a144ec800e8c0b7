#!/usr/bin/env bash
# Property-based API testing with schemathesis against a running gateway, on the official YAML
# of one CAMARA version: scripts/schemathesis.sh [VERSION] [API_URL] (defaults: 1.1.1 and
# http://127.0.0.1:18080). The gateway must run in the same version (api.camara_version) with
# the clients of conformance-tests/ci/gateway.toml; scripts/test starts one per version.
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
version="${1:-1.1.1}"
api="${2:-http://127.0.0.1:18080}"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/schemathesis-venv"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5"
fi
official="$root/../shared/camara/one-time-password-sms-v$version.yaml"
[ -f "$official" ] || { echo "no official YAML for CAMARA $version: $official"; exit 1; }
served=$("$venv/bin/python" -c 'import json,sys,urllib.request
print(json.load(urllib.request.urlopen(sys.argv[1] + "/openapi.json"))["info"]["version"])' "$api")
[ "$served" = "$version" ] || { echo "the gateway at $api serves CAMARA $served, not $version"; exit 1; }
spec="$target/schemathesis-camara-v$version.yaml"
"$venv/bin/python" scripts/schemathesis_spec.py "$official" "$spec" "$api/one-time-password-sms/v1"
token=$("$venv/bin/python" - "$api" <<'PY'
import base64, json, sys, urllib.request
req = urllib.request.Request(
    sys.argv[1] + "/oauth2/token",
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
  --url "$api/one-time-password-sms/v1" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --report junit --report-dir "$target/schemathesis-v$version"
