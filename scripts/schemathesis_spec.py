"""Writes the copy of an official CAMARA YAML (v1.1.0 or v1.1.1) that schemathesis runs on.

Why a copy (the official file stays untouched in ../shared):
- schemathesis 4.32 cannot generate strings for the `Message` pattern `.*\\{\\{code\\}\\}.*`
  combined with `maxLength: 160`, so the copy drops that `maxLength` (the gateway still
  enforces it; the integration tests cover it).
- Commonalities 0.5 and 0.6 allow 405, 415, 503 and 504 without documenting them; the gateway answers
  them (wrong method, non-JSON body, SMSC down or silent), so the copy documents them with the
  `ErrorInfo` body instead of hiding correct answers from the status-code check.
- `servers` points at the gateway under test.
"""

import sys

import yaml

source, target, base_url = sys.argv[1], sys.argv[2], sys.argv[3]
with open(source, encoding="utf-8") as f:
    spec = yaml.safe_load(f)

spec["servers"] = [{"url": base_url}]
spec["components"]["schemas"]["Message"].pop("maxLength", None)

extra = {
    "405": ("Method Not Allowed", "METHOD_NOT_ALLOWED"),
    "415": ("Unsupported Media Type", "UNSUPPORTED_MEDIA_TYPE"),
    "503": ("Service Unavailable", "UNAVAILABLE"),
    "504": ("Gateway Timeout", "TIMEOUT"),
}
for item in spec["paths"].values():
    for op in item.values():
        for status, (description, code) in extra.items():
            op["responses"].setdefault(
                status,
                {
                    "description": description,
                    "headers": {"x-correlator": {"$ref": "#/components/headers/x-correlator"}},
                    "content": {
                        "application/json": {
                            "schema": {
                                "allOf": [
                                    {"$ref": "#/components/schemas/ErrorInfo"},
                                    {
                                        "type": "object",
                                        "properties": {
                                            "status": {"enum": [int(status)]},
                                            "code": {"enum": [code]},
                                        },
                                    },
                                ]
                            }
                        }
                    },
                },
            )

with open(target, "w", encoding="utf-8") as f:
    yaml.safe_dump(spec, f, sort_keys=False)
