#!/usr/bin/env python3
"""Every metric the Grafana dashboard and the Prometheus alert rules query is
in the metrics catalogue of docs/operations.md (whose own test checks it
against what the admin ports serve), so a renamed metric cannot leave a
panel or an alert silently empty."""
import json
import re
import sys

root = sys.argv[1]
doc = open(f"{root}/docs/operations.md", encoding="utf-8").read()
catalogue = set(re.findall(r"^\| `((?:portico|process)_[a-z0-9_]+)`", doc, re.M))
if len(catalogue) < 10:
    sys.exit(f"only {len(catalogue)} metrics found in the catalogue of docs/operations.md")

def queries_of_dashboard(path):
    out = []
    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "expr" and isinstance(v, str):
                    out.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(json.load(open(path, encoding="utf-8")))
    return out

def queries_of_rules(path):
    return re.findall(r"^\s*expr:\s*(.+(?:\n\s{8,}.+)*)", open(path, encoding="utf-8").read(), re.M)

sources = {
    "deploy/grafana/dashboards/portico.json": queries_of_dashboard(
        f"{root}/deploy/grafana/dashboards/portico.json"),
    "deploy/prometheus/alerts.yml": queries_of_rules(f"{root}/deploy/prometheus/alerts.yml"),
}
problems = 0
for source, queries in sources.items():
    if not queries:
        print(f"{source}: no queries found")
        problems += 1
    for q in queries:
        for name in re.findall(r"\b((?:portico|process)_[a-z0-9_]+)", q):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            if base not in catalogue and name not in catalogue:
                print(f"{source}: {name} is not in docs/operations.md's metrics catalogue")
                problems += 1
print(f"{sum(len(q) for q in sources.values())} queries checked, {problems} problem(s)")
sys.exit(1 if problems else 0)
