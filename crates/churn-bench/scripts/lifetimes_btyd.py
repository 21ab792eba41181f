# The other side of `churn bench btyd`: the customers' summaries from the same Parquet lake
# with DuckDB (the conventions of `churn btyd fit`: purchases are non-returns with a positive
# amount, before AS_OF; one period per calendar day; frequency = purchase days - 1; recency
# and age in weeks, age to the day before AS_OF; monetary = mean spend of the repeat purchase
# days; the benchmark lake's time zone is UTC), then lifetimes 0.11's fitters on them, each
# timed on its own.
# Usage: python lifetimes_btyd.py LAKE AS_OF MODEL,MODEL,...   (bgnbd, pareto-nbd, gamma-gamma)
# Prints one JSON object: {summary_seconds, customers, fits: [{model, fit_seconds, parameters}]}.
import json, sys, time, warnings
import duckdb
import numpy
from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter

warnings.simplefilter("ignore")
# ParetoNBDFitter starts from random parameters: a fixed seed makes runs repeatable.
numpy.random.seed(0)
lake, as_of, models = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
started = time.time()
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
summary = con.sql(f"""
WITH purchases AS (
    SELECT customer_id, CAST(ts AT TIME ZONE 'UTC' AS DATE) AS day, CAST(amount AS DECIMAL(38, 6)) AS amount
    FROM read_parquet('{lake}/transactions/*/*.parquet', hive_partitioning = false)
    WHERE NOT is_return AND amount > 0 AND CAST(ts AT TIME ZONE 'UTC' AS DATE) < DATE '{as_of}'
),
days AS (SELECT customer_id, day, sum(amount) AS spend FROM purchases GROUP BY 1, 2),
ranked AS (SELECT *, min(day) OVER (PARTITION BY customer_id) AS first_day FROM days),
final AS (
    SELECT customer_id,
        CAST(count(*) - 1 AS DOUBLE) AS frequency,
        CAST(max(day) - min(day) AS DOUBLE) / 7.0 AS recency,
        CAST((DATE '{as_of}' - 1) - min(day) AS DOUBLE) / 7.0 AS age,
        coalesce(CAST(avg(spend) FILTER (WHERE day > first_day) AS DOUBLE), 0.0) AS monetary
    FROM ranked GROUP BY customer_id
)
SELECT * FROM final
""").df()
summary_seconds = time.time() - started
fits = []
for model in models:
    t = time.time()
    if model == "bgnbd":
        f = BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["age"])
        params = {k: float(f.params_[k]) for k in ("r", "alpha", "a", "b")}
    elif model == "pareto-nbd":
        f = ParetoNBDFitter().fit(summary["frequency"], summary["recency"], summary["age"])
        params = {k: float(f.params_[k]) for k in ("r", "alpha", "s", "beta")}
    elif model == "gamma-gamma":
        repeat = summary[(summary["frequency"] > 0) & (summary["monetary"] > 0)]
        f = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary"])
        params = {"p": float(f.params_["p"]), "q": float(f.params_["q"]), "gamma": float(f.params_["v"])}
    else:
        raise SystemExit(f"unknown model {model}")
    fits.append({"model": model, "fit_seconds": time.time() - t, "parameters": params})
print(json.dumps({"summary_seconds": summary_seconds, "customers": len(summary), "fits": fits}))
