# The other side of `churn bench train`: scikit-learn LogisticRegression and LightGBM on the
# same snapshots, read with DuckDB: the same feature columns (numbers only, `tier` excluded),
# training median imputation with missing indicators, standardisation for the logistic
# regression, balanced class weights.
# Usage: python sklearn_train.py LAKE FIT_DATE,FIT_DATE,... TEST_DATE
# Prints a JSON list of {tool, fit_seconds, rows, test_roc_auc}.
import sys, time, json, duckdb, numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
import lightgbm as lgb
lake, fit_dates, test_date = sys.argv[1], sys.argv[2].split(','), sys.argv[3]
def load(dates):
    files_f = [f"{lake}/features/as_of={d}/*.parquet" for d in dates]
    files_l = [f"{lake}/labels/as_of={d}/*.parquet" for d in dates]
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    rel = con.sql(f"SELECT f.*, CAST(l.churned AS DOUBLE) AS churned_label FROM read_parquet({files_f!r}, filename = true) f JOIN read_parquet({files_l!r}, filename = true) l ON f.customer_id = l.customer_id AND regexp_extract(f.filename, 'as_of=([0-9-]+)', 1) = regexp_extract(l.filename, 'as_of=([0-9-]+)', 1)")
    skip = ('customer_id', 'churned_label', 'tier', 'filename', 'as_of')
    numeric = ('BIGINT', 'INTEGER', 'DOUBLE', 'FLOAT', 'BOOLEAN', 'SMALLINT', 'TINYINT', 'HUGEINT')
    cols = [c for c, t in zip(rel.columns, rel.types) if c not in skip and (str(t) in numeric or str(t).startswith('DECIMAL'))]
    data = rel.project(', '.join([f'CAST("{c}" AS DOUBLE) AS "{c}"' for c in cols] + ['churned_label'])).fetchnumpy()
    x = np.column_stack([np.asarray(data[c], dtype=float) for c in cols])
    return x, np.asarray(data['churned_label'], dtype=float)
x_fit, y_fit = load(fit_dates)
x_test, y_test = load([test_date])
missing = np.isnan(x_fit).any(axis=0)
median = np.nanmedian(x_fit, axis=0)
def prep(x):
    ind = np.isnan(x[:, missing]).astype(float)
    x = np.where(np.isnan(x), median, x)
    return np.hstack([x, ind])
a, b = prep(x_fit), prep(x_test)
mean, std = a.mean(axis=0), a.std(axis=0)
std[std == 0] = 1
out = []
t = time.time()
lr = LogisticRegression(C=1.0, class_weight='balanced', max_iter=200).fit((a - mean) / std, y_fit)
out.append({"tool": "scikit-learn LogisticRegression", "fit_seconds": time.time() - t, "rows": len(y_fit), "test_roc_auc": roc_auc_score(y_test, lr.predict_proba((b - mean) / std)[:, 1])})
t = time.time()
gb = lgb.LGBMClassifier(n_estimators=200, learning_rate=0.05, max_depth=4, num_leaves=15, class_weight='balanced', verbose=-1).fit(a, y_fit)
out.append({"tool": "LightGBM (200 trees, depth 4)", "fit_seconds": time.time() - t, "rows": len(y_fit), "test_roc_auc": roc_auc_score(y_test, gb.predict_proba(b)[:, 1])})
print(json.dumps(out))
