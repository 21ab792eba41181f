"""Per-customer BTYD outputs on the CDNOW sample, fitted and evaluated with lifetimes 0.11.3.

Usage: python reference.py /path/to/CDNOW_sample.txt > reference.json

The calibration matches `churn btyd fit --as-of 1997-10-01` at daily grain: only purchases
dated up to 1997-09-30 count (dropped before lifetimes sees them), purchases on one day
collapse into one, times are days / 7 (freq='D', freq_multiplier=7), T runs to 1997-09-30
(the day before the as-of date) and the monetary value is the mean spend of the repeat
purchase days. The eight $0 orders are recorded at $0.01, as the CLI test ingests them (each
is its customer's only order, so it counts as a purchase and never enters a mean spend).

Prints JSON with, for each model, lifetimes' fitted parameters and the per-customer values at
those parameters: BG/NBD and Pareto/NBD `p_alive` and `expected_purchases` over 90 days
(90/7 weeks, the CLI's default horizon), Gamma-Gamma `expected_spend`
(conditional_expected_average_profit, fitted on the repeat buyers). `customers` holds every
12th customer in id order (a deterministic subset); `sums` holds the sums over all customers.
"""
import datetime as dt
import json
import sys

import numpy as np
import pandas as pd

import lifetimes
from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter
from lifetimes.utils import summary_data_from_transaction_data

END = dt.date(1997, 9, 30)  # last day of the calibration period (as-of 1997-10-01 minus one)
HORIZON_WEEKS = 90 / 7
EVERY = 12


def read_raw(path):
    rows = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if not p:
                continue
            day = dt.datetime.strptime(p[2], "%Y%m%d").date()
            dollars = float(p[4])
            rows.append((p[0], pd.Timestamp(day), dollars if dollars > 0 else 0.01))
    return rows


def main():
    rows = [r for r in read_raw(sys.argv[1]) if r[1].date() <= END]
    df = pd.DataFrame(rows, columns=["customer_id", "date", "amount"])
    s = summary_data_from_transaction_data(
        df,
        "customer_id",
        "date",
        monetary_value_col="amount",
        observation_period_end=END.isoformat(),
        freq="D",
        freq_multiplier=7,
    ).sort_index()
    x, tx, T, m = (s[c] for c in ["frequency", "recency", "T", "monetary_value"])

    bgf = BetaGeoFitter(penalizer_coef=0.0).fit(x, tx, T)
    # lifetimes' Pareto/NBD fit starts Nelder-Mead from random parameters with tol=1e-4 (its
    # optimum then moves in the 6th digit from run to run): start it from ones, to 1e-12.
    pnbd = ParetoNBDFitter(penalizer_coef=0.0).fit(
        x, tx, T, initial_params=np.ones(4), tol=1e-12, maxiter=20000
    )
    repeat = s[(x > 0) & (m > 0)]
    ggf = GammaGammaFitter(penalizer_coef=0.0).fit(
        repeat["frequency"], repeat["monetary_value"]
    )

    values = pd.DataFrame(
        {
            "frequency": x,
            "recency_weeks": tx,
            "age_weeks": T,
            "monetary": m,
            "bgnbd_p_alive": bgf.conditional_probability_alive(x, tx, T),
            "bgnbd_expected_purchases": bgf.conditional_expected_number_of_purchases_up_to_time(
                HORIZON_WEEKS, x, tx, T
            ),
            "pareto_nbd_p_alive": pnbd.conditional_probability_alive(x, tx, T),
            "pareto_nbd_expected_purchases": pnbd.conditional_expected_number_of_purchases_up_to_time(
                HORIZON_WEEKS, x, tx, T
            ),
            "expected_spend": ggf.conditional_expected_average_profit(x, m),
        },
        index=s.index,
    )
    subset = values.iloc[::EVERY]
    out = {
        "lifetimes_version": lifetimes.__version__,
        "calibration_end": END.isoformat(),
        "horizon_weeks": HORIZON_WEEKS,
        "n_customers": len(s),
        "n_repeat_buyers": len(repeat),
        "parameters": {
            "bgnbd": {k: float(bgf.params_[k]) for k in ["r", "alpha", "a", "b"]},
            "pareto-nbd": {k: float(pnbd.params_[k]) for k in ["r", "alpha", "s", "beta"]},
            "gamma-gamma": {k: float(ggf.params_[k]) for k in ["p", "q", "v"]},
        },
        "sums": {c: float(np.sum(values[c])) for c in values.columns},
        "customers": {
            cid: {c: float(row[c]) for c in values.columns} for cid, row in subset.iterrows()
        },
    }
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


main()
