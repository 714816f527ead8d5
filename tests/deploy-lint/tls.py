"""deploy/kubernetes/tls/ for tests/deploy-lint/run, which kubernetes-validate cannot read as it is:
patch-tls.yaml is a strategic-merge patch (no kind), so it is applied here to every Deployment of
deploy/kubernetes/ and the results are written to OUT_DIR for kubernetes-validate; certificate.yaml
is a cert-manager resource (no schema in kubernetes-validate), so it is checked here against the
cert-manager.io/v1 Certificate fields (certificate.schema.json, strict: an unknown field fails).

usage: python tls.py OUT_DIR
"""

import copy
import glob
import json
import os
import sys

import jsonschema
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TLS = os.path.join(ROOT, "deploy", "kubernetes", "tls")

# The strategic-merge keys of the lists the patch touches (the Kubernetes API's patchMergeKey).
MERGE_KEYS = {"containers": "name", "ports": "containerPort", "volumeMounts": "mountPath", "volumes": "name"}


def merge(into, patch):
    """A strategic merge of `patch` into `into`, for maps and the keyed lists of MERGE_KEYS."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(into.get(key), list):
            by = MERGE_KEYS[key]
            for item in value:
                same = [old for old in into[key] if old.get(by) == item.get(by)]
                if same:
                    merge(same[0], item)
                else:
                    into[key].append(copy.deepcopy(item))
        else:
            into[key] = copy.deepcopy(value)


def patched_deployments(out_dir):
    with open(os.path.join(TLS, "patch-tls.yaml")) as f:
        patch = yaml.safe_load(f)
    written = []
    for path in sorted(glob.glob(os.path.join(ROOT, "deploy", "kubernetes", "*.yaml"))):
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        deployments = [d for d in docs if d.get("kind") == "Deployment"]
        if not deployments:
            continue
        for d in deployments:
            merge(d, patch)
        name = "patched-tls-" + os.path.basename(path)
        with open(os.path.join(out_dir, name), "w") as f:
            yaml.safe_dump_all(deployments, f)
        written.append(name)
    if not written:
        sys.exit("deploy lint: patch-tls.yaml: no Deployment to apply it to")
    return written


def check_certificate():
    with open(os.path.join(HERE, "certificate.schema.json")) as f:
        schema = json.load(f)
    with open(os.path.join(TLS, "certificate.yaml")) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    errors = [e for d in docs for e in jsonschema.Draft202012Validator(schema).iter_errors(d)]
    for e in errors:
        where = ".".join(str(p) for p in e.absolute_path) or "(top)"
        print(f"deploy lint: tls/certificate.yaml {where}: {e.message}", file=sys.stderr)
    if errors or len(docs) != 1:
        sys.exit("deploy lint: tls/certificate.yaml is not one valid cert-manager.io/v1 Certificate")


if __name__ == "__main__":
    check_certificate()
    print(" ".join(patched_deployments(sys.argv[1])))
