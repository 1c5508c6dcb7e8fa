#!/usr/bin/env bash
# Makes the secrets deploy/collector.yaml expects, in deploy/secrets/ (never commit them):
# a CURVE keypair for the collector and one allowed client, an OTLP bearer token, and a
# self-signed TLS certificate for the OTLP receivers. Apps then use:
#   OTEL_TELEMETRY_ENDPOINT=tcp://127.0.0.1:5555
#   OTEL_TELEMETRY_CURVE_SERVER_KEY=deploy/secrets/zmq/collector.key
#   OTEL_TELEMETRY_CURVE_CLIENT_KEY=deploy/secrets/zmq/clients-secret/app.key_secret
set -euo pipefail
cd "$(dirname "$0")"
umask 077
mkdir -p secrets/zmq/clients secrets/zmq/clients-secret
otel-telemetry keys generate --dir secrets/zmq --name collector
otel-telemetry keys generate --dir secrets/zmq/clients-secret --name app
cp secrets/zmq/clients-secret/app.key secrets/zmq/clients/app.key
python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > secrets/otlp-token
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=otel-telemetry" \
  -keyout secrets/tls.key -out secrets/tls.crt 2>/dev/null
echo "secrets written to deploy/secrets/"
