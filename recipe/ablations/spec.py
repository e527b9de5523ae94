#!/usr/bin/env python3
"""Writes a run spec TOML from a recipe run's spec.json with overrides.

usage: spec.py SPEC.json OUT.toml key.path=json_value ...
e.g.   spec.py /tmp/r1abl/B/runs/3/spec.json r1-lr5e-5.toml name='"r1-lr5e-5"' \
           algorithm.learner.lr=5e-5 schedule.eval_every=10 rewards.1.weight=0.1
"""
import json, sys

spec = json.load(open(sys.argv[1]))
for kv in sys.argv[3:]:
    path, value = kv.split("=", 1)
    node, keys = spec, path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    v = json.loads(value)
    if isinstance(node, list):
        node[int(last)] = v
    else:
        node[last] = v

def val(v):
    if isinstance(v, bool): return "true" if v else "false"
    if isinstance(v, str): return json.dumps(v)
    if isinstance(v, list): return "[" + ", ".join(val(x) for x in v) + "]"
    if v is None: raise ValueError("None")
    return repr(v)

out = []
def emit(table, prefix):
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and not (isinstance(v, list) and v and isinstance(v[0], dict)) and v is not None}
    for k, v in scalars.items():
        out.append(f"{k} = {val(v)}")
    for k, v in table.items():
        if isinstance(v, dict):
            out.append(f"\n[{prefix}{k}]")
            emit(v, f"{prefix}{k}.")
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                out.append(f"\n[[{prefix}{k}]]")
                emit(item, f"{prefix}{k}.")
emit(spec, "")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
