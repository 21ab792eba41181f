"""Independent recomputation of `churn score` for a logistic model, for the activate tests.

Reads the registered artifact.json (preprocessing, coefficients, calibrator) and the lake's
feature snapshot with DuckDB, applies the documented steps by hand (median fill,
standardisation, missing indicators, one-hot of kept categories, sigmoid of the linear score,
Platt calibration), and prints one JSON object: customer_id -> churn probability.
Usage: python score_reference.py ARTIFACT_JSON FEATURES_GLOB
"""

import json
import math
import sys

import duckdb

artifact_path, features_glob = sys.argv[1], sys.argv[2]
artifact = json.load(open(artifact_path))
pre, clf, cal = artifact["preprocessor"], artifact["classifier"], artifact["calibrator"]
assert clf["kind"] == "logistic", clf["kind"]

con = duckdb.connect()
rel = con.execute(f"SELECT * FROM read_parquet('{features_glob}') ORDER BY customer_id")
names = [d[0] for d in rel.description]
rows = rel.fetchall()


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


out = {}
for row in rows:
    record = dict(zip(names, row))
    design = []
    for inp in pre["inputs"]:
        enc = inp["encoding"]
        value = record[inp["name"]]
        if enc["kind"] == "numeric":
            missing = value is None or (isinstance(value, float) and math.isnan(value))
            filled = enc["fill"] if missing else float(value)
            design.append((filled - enc["mean"]) / enc["std"])
            if enc["missing_indicator"]:
                design.append(1.0 if missing else 0.0)
        else:
            text = None if value is None else str(value)
            design.extend(1.0 if text == c else 0.0 for c in enc["categories"])
    assert len(design) == len(clf["coefficients"]), (len(design), len(clf["coefficients"]))
    p = sigmoid(clf["intercept"] + sum(c * x for c, x in zip(clf["coefficients"], design)))
    if cal["kind"] == "platt":
        p = min(max(p, 1e-9), 1.0 - 1e-9)  # the calibrator's clamp, so logit stays finite
        p = sigmoid(cal["a"] * math.log(p / (1.0 - p)) + cal["b"])
    else:
        assert cal["kind"] == "identity", cal["kind"]
    out[record["customer_id"]] = p
print(json.dumps(out))
