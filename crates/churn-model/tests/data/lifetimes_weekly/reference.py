"""Reference BG/NBD fit at WEEKLY grain on the CDNOW sample, using lifetimes 0.11.3.

Usage: python reference.py /path/to/CDNOW_sample.txt > reference.json

Prints JSON with:
  * "lifetimes": the exact call summary_data_from_transaction_data(..., freq='W',
    observation_period_end='1997-09-30') + BetaGeoFitter(penalizer_coef=0.0).fit(...)
  * "strict_cutoff": the same, but with rows dated after 1997-09-30 dropped first
    (lifetimes' own truncation keeps the whole week containing the end date, i.e. up to
    Sunday 1997-10-05; see README.md)
  * "verification": an independent by-hand weekly summary (plain datetime) compared
    against lifetimes' summary for every customer, for both cut-off conventions
  * an independent numpy/scipy BG/NBD log-likelihood (and an independent re-fit).
"""
import datetime as dt
import json
import sys
from collections import defaultdict

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, gammaln

import lifetimes
from lifetimes import BetaGeoFitter
from lifetimes.utils import summary_data_from_transaction_data

END = dt.date(1997, 9, 30)  # calibration end, inclusive (a Tuesday)


def read_raw(path):
    rows = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if not p:
                continue
            rows.append((int(p[0]), dt.datetime.strptime(p[2], "%Y%m%d").date(), float(p[4])))
    return rows


def by_hand(rows, last_date):
    """Weekly summary from raw rows with plain datetime. Week = Monday..Sunday.
    x = distinct purchase weeks - 1, t_x = (last week - first week) in weeks,
    T = (week containing END - first week) in weeks. Rows dated after last_date dropped."""
    monday = lambda d: d - dt.timedelta(days=d.weekday())
    weeks = defaultdict(set)
    for cust, d, _ in rows:
        if d <= last_date:
            weeks[cust].add(monday(d))
    end_week = monday(END)
    out = {}
    for cust, ws in weeks.items():
        first, last = min(ws), max(ws)
        out[cust] = (len(ws) - 1, (last - first).days / 7.0, (end_week - first).days / 7.0)
    return out


def own_ll(params, x, tx, T):
    """ln of the Fader-Hardie-Lee (2005) BG/NBD likelihood, summed over customers."""
    r, alpha, a, b = params
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    t1 = betaln(a, b + x) - betaln(a, b) + common - (r + x) * np.log(alpha + T)
    xm = np.maximum(x, 1)
    t2 = betaln(a + 1, b + xm - 1) - betaln(a, b) + common - (r + x) * np.log(alpha + tx)
    t2 = np.where(x > 0, t2, -np.inf)
    return float(np.sum(np.logaddexp(t1, t2)))


def fit_and_report(df, raw_rows, hand_last_date):
    s = summary_data_from_transaction_data(
        df, "customer_id", "date", observation_period_end="1997-09-30", freq="W"
    ).sort_index()
    bgf = BetaGeoFitter(penalizer_coef=0.0)
    bgf.fit(s["frequency"], s["recency"], s["T"])
    p = bgf.params_
    x, tx, T = s["frequency"].values, s["recency"].values, s["T"].values
    n = len(s)
    # lifetimes fits on time scaled by 1/max(T) and stores the MEAN negative LL in those
    # scaled units (penalizer 0 here). Evaluate lifetimes' own function on unscaled (weeks)
    # data at the fitted params to get the TOTAL LL in weeks.
    ll_lifetimes_weeks = -n * float(BetaGeoFitter._negative_log_likelihood(
        np.log(p.values.astype(float)), x.astype(int), tx, T, np.ones(n), 0.0))
    ll_own = own_ll(p.values.astype(float), x, tx, T)
    # independent re-fit (Nelder-Mead on log params, own likelihood, different start)
    nm = minimize(lambda lp: -own_ll(np.exp(lp), x, tx, T), np.log([1.0, 1.0, 1.0, 1.0]),
                  method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 20000, "maxfev": 40000})
    # by-hand summary comparison
    hand = by_hand(raw_rows, hand_last_date)
    mism = sum(1 for c in s.index if hand.get(c) != (x[s.index.get_loc(c)], tx[s.index.get_loc(c)], T[s.index.get_loc(c)]))
    return {
        "r": float(p["r"]), "alpha": float(p["alpha"]), "a": float(p["a"]), "b": float(p["b"]),
        "log_likelihood_total_weeks": ll_lifetimes_weeks,
        "log_likelihood_total_own_numpy": ll_own,
        "lifetimes_negative_log_likelihood_attr": float(bgf._negative_log_likelihood_),
        "lifetimes_time_scale": float(bgf._scale),
        "n_customers": n,
        "sum_frequency": float(x.sum()), "sum_recency": float(tx.sum()), "sum_T": float(T.sum()),
        "n_repeaters": int((x > 0).sum()),
        "max_T": float(T.max()), "min_T": float(T.min()),
        "independent_refit_nelder_mead": {
            "r": float(np.exp(nm.x[0])), "alpha": float(np.exp(nm.x[1])),
            "a": float(np.exp(nm.x[2])), "b": float(np.exp(nm.x[3])),
            "log_likelihood_total": float(-nm.fun), "success": bool(nm.success)},
        "by_hand_summary_mismatches": mism,
        "first5": [{"customer": int(c), "frequency": float(r.frequency), "recency": float(r.recency), "T": float(r["T"])}
                   for c, r in s.head(5).iterrows()],
    }, hand


def main():
    path = sys.argv[1]
    raw = read_raw(path)
    df = pd.DataFrame(raw, columns=["customer_id", "date", "spend"])
    df["date"] = pd.to_datetime(df["date"])

    main_res, hand_lt = fit_and_report(df, raw, END + dt.timedelta(days=5))  # week of END runs to Sun 10-05
    strict_res, hand_strict = fit_and_report(df[df["date"] <= "1997-09-30"], raw, END)

    late = [(c, d) for c, d, _ in raw if END < d <= END + dt.timedelta(days=5)]
    changed = sorted(c for c in hand_lt if hand_lt[c] != hand_strict.get(c))
    print(json.dumps({
        "source": "lifetimes %s, pandas %s, numpy %s" % (lifetimes.__version__, pd.__version__, np.__version__),
        "input_rows": len(raw),
        "rows_with_zero_dollar_value": sum(1 for _, _, v in raw if v == 0.0),
        "rows_dated_1997_10_01_to_10_05": len(late),
        "customers_whose_summary_differs_lifetimes_vs_strict": len(changed),
        "customers_whose_summary_differs_ids": changed,
        "lifetimes": main_res,
        "strict_cutoff": strict_res,
    }, indent=1))


if __name__ == "__main__":
    main()
