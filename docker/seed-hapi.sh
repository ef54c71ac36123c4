#!/bin/sh
# Loads every sample patient into the HAPI FHIR server (dates moved to today), so the service
# can fetch missing prefetch from a real FHIR server. Run once by docker-compose.
set -eu
FHIR=${FHIR_BASE:-http://hapi:8080/fhir}
echo "waiting for $FHIR ..."
i=0
until curl -fsS "$FHIR/metadata" >/dev/null 2>&1; do
  i=$((i + 1)); [ "$i" -gt 120 ] && { echo "HAPI did not come up" >&2; exit 1; }
  sleep 2
done
for f in /app/samples/*.json; do
  case "$f" in *.expected.json) continue ;; esac
  leg-cramp-cds sample-bundle "$f" | curl -fsS -X POST -H 'Content-Type: application/fhir+json' --data-binary @- "$FHIR" >/dev/null
  echo "loaded $(basename "$f" .json)"
done
