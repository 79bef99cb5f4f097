#!/usr/bin/env bash
# The rollout story on a real kind cluster (needs Docker, kind, kubectl). See tests/kind/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=${CLUSTER:-modelfleet-e2e}
NS=${NS:-default}
PY=${PY:-.venv/bin/python}
GATEWAY_API_VERSION=${GATEWAY_API_VERSION:-v1.4.0}

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "tests/kind needs $tool on PATH" >&2; exit 2; }
done

step() { printf '\n== %s\n' "$*"; }

cleanup() {
  if [[ "${KEEP_CLUSTER:-0}" != "1" ]]; then
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

step "kind cluster $CLUSTER"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s

step "example models and images"
test -f examples/models/model.txt || "$PY" examples/train_models.py --out examples/models
docker build -q -f Dockerfile.operator -t modelfleet-operator:kind .
docker build -q -f Dockerfile.server -t modelfleet-server:kind .
docker build -q -f tests/kind/models.Dockerfile -t modelfleet-models:kind .
for image in modelfleet-operator:kind modelfleet-server:kind modelfleet-models:kind; do
  kind load docker-image --name "$CLUSTER" "$image"
done

step "Gateway API CRDs, Prometheus, models, operator"
kubectl apply -f "https://github.com/kubernetes-sigs/gateway-api/releases/download/${GATEWAY_API_VERSION}/standard-install.yaml"
kubectl apply -f tests/kind/prometheus.yaml
kubectl apply -f tests/kind/models.yaml
workdir=$(mktemp -d)
cp -r manifests "$workdir/"
( cd "$workdir/manifests/operator" \
  && kubectl kustomize . > all.yaml \
  && sed -i \
       -e 's|ghcr.io/modelfleet/modelfleet-operator:[^"]*|modelfleet-operator:kind|' \
       -e 's|ghcr.io/modelfleet/modelfleet-server:[^"]*|modelfleet-server:kind|' \
       -e 's|http://prometheus-operated.monitoring.svc:9090|http://prometheus.monitoring.svc:9090|' \
       all.yaml )
kubectl apply --server-side -f "$workdir/manifests/operator/all.yaml"
kubectl -n monitoring rollout status deploy/prometheus --timeout=180s
kubectl -n "$NS" rollout status deploy/models --timeout=180s
kubectl -n modelfleet-system rollout status deploy/modelfleet-operator --timeout=180s

model_deployment() {  # version model-file [fault-error-rate]
  cat <<YAML
apiVersion: modelfleet.io/v1alpha1
kind: ModelDeployment
metadata:
  name: demo
  namespace: $NS
spec:
  model:
    uri: http://models.$NS.svc:8000/$2
    version: $1
  replicas: 2
  server:
    env:
      - {name: MODELFLEET_FAULT_ERROR_RATE, value: "${3:-0}"}
  rollout:
    steps: [10, 25, 50, 100]
    stepDuration: 20s
    scaleDownDelay: 5s
    analysis:
      interval: 5s
      minRequests: 50
YAML
}

wait_outcome() {  # version outcome
  for _ in $(seq 1 120); do
    got=$(kubectl -n "$NS" get md demo -o jsonpath='{.status.history[0].version}/{.status.history[0].outcome}' 2>/dev/null || true)
    if [[ "$got" == "$1/$2" ]]; then echo "$1: $2"; return 0; fi
    sleep 5
  done
  kubectl -n "$NS" get md demo -o yaml
  echo "timed out waiting for $1 to be $2 (last: $got)" >&2
  return 1
}

step "v1"
model_deployment v1 model.txt | kubectl apply -f -
kubectl -n "$NS" wait --for=condition=Ready md/demo --timeout=300s

step "traffic"
kubectl -n "$NS" delete job traffic --ignore-not-found
kubectl -n "$NS" create job traffic --image=curlimages/curl:8.10.1 -- sh -c \
  "while true; do curl -s -o /dev/null -H 'content-type: application/json' \
   --data '$(tr -d '\n' < examples/models/request.json)' http://demo.$NS.svc:8080/v2/models/demo/infer; sleep 0.02; done"

step "v2: a good model is promoted through 10 → 25 → 50 → 100"
model_deployment v2 model-v2.txt | kubectl apply -f -
wait_outcome v2 Promoted

step "v3: a model answering 5 % errors is rolled back"
model_deployment v3 model.txt 0.05 | kubectl apply -f -
wait_outcome v3 RolledBack
kubectl -n "$NS" get md demo -o jsonpath='{.status.conditions[?(@.type=="Degraded")].message}'; echo
kubectl -n "$NS" get md demo
echo "kind rollout story: OK"
