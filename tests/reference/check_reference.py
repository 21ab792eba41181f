#!/usr/bin/env python3
"""Cross-check the DuckDB reference output against a second, plain-Python reading of the contract.

Usage:
    python check_reference.py --input DIR --as-of YYYY-MM-DD --features F.csv --labels L.csv
        [--lookback-days 365] [--horizon-days 90]

DIR holds the demo CSVs. Everything here is recomputed row by row with the standard library only
(csv, datetime, fractions, statistics); money is summed exactly with Fraction. Every column of every
row is compared (floats with a 1e-12 relative tolerance), and the population size is checked against
a separate one-line DuckDB query. Exits non-zero on any mismatch.
"""
import argparse
import calendar
import csv
import datetime as dt
import math
import os
import statistics
import sys
from collections import defaultdict
from fractions import Fraction

import duckdb


def parse_ts(s):
    return dt.datetime.strptime(s, "%Y-%m-%d %H:%M:%S")


def parse_bool(s):
    return {"true": True, "false": False}.get(s.strip().lower())


def next_birthday(b, d):
    def in_year(y):
        if b.month == 2 and b.day == 29 and not calendar.isleap(y):
            return dt.date(y, 3, 1)
        return dt.date(y, b.month, b.day)
    nb = in_year(d.year)
    return nb if nb >= d else in_year(d.year + 1)


def compute(input_dir, D, lookback, horizon):
    Dts = dt.datetime(D.year, D.month, D.day)
    def start(n):
        return Dts - dt.timedelta(days=n)

    tx = defaultdict(list)
    with open(os.path.join(input_dir, "transactions.csv"), encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            amt = float(r["amount"])
            ret = parse_bool(r["is_return"])
            tx[r["customer_id"]].append(dict(
                ts=parse_ts(r["ts"]), amount=amt, cat=r["product_category"] or None,
                channel=r["channel"] or None,
                purchase=(ret is False and amt > 0),
                refund=(ret is True or amt < 0)))
    cust = {}
    with open(os.path.join(input_dir, "customers.csv"), encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            cust[r["customer_id"]] = r
    ev = defaultdict(list)
    with open(os.path.join(input_dir, "campaign_events.csv"), encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            ev[r["customer_id"]].append((parse_ts(r["ts"]), r["event"]))

    def has_purchase_before_D(cid):
        return any(t["purchase"] and t["ts"] < Dts for t in tx.get(cid, []))

    feats, labels = {}, {}
    for cid, rows in tx.items():
        before = [t for t in rows if t["ts"] < Dts]
        purch = [t for t in before if t["purchase"]]
        if not any(t["ts"] >= start(lookback) for t in purch):
            continue
        def win(n, lst):
            return [t for t in lst if t["ts"] >= start(n)]
        def net(lst):
            s = Fraction(0)
            for t in lst:
                if t["purchase"]:
                    s += Fraction(t["amount"])
                elif t["refund"]:
                    s -= Fraction(abs(t["amount"]))
            return float(s)
        days = sorted({t["ts"].date() for t in purch})
        gaps = [(b - a).days for a, b in zip(days, days[1:])]
        last, first = days[-1], days[0]
        recency = (D - last).days
        mean_gap = (last - first).days / (len(days) - 1) if len(days) >= 2 else None
        p365 = win(365, purch)
        redeems = [ts.date() for ts, e in ev.get(cid, []) if e == "redeemed" and ts < Dts]
        e90 = [e for ts, e in ev.get(cid, []) if start(90) <= ts < Dts]
        c = cust.get(cid)
        bday = dt.date.fromisoformat(c["birthday"]) if c and c["birthday"] else None
        if bday:
            age = D.year - bday.year - (1 if (D.month, D.day) < (bday.month, bday.day) else 0)
            dtb = (next_birthday(bday, D) - D).days
        else:
            age = dtb = None
        feats[cid] = dict(
            customer_id=cid, as_of=D.isoformat(),
            recency_days=recency, tenure_days=(D - first).days,
            frequency_30d=len(win(30, purch)), frequency_90d=len(win(90, purch)),
            frequency_365d=len(p365), frequency_total=len(purch),
            monetary_30d=net(win(30, before)), monetary_90d=net(win(90, before)),
            monetary_365d=net(win(365, before)),
            avg_basket_365d=float(sum(Fraction(t["amount"]) for t in p365) / len(p365)) if p365 else None,
            mean_gap_days=mean_gap,
            std_gap_days=statistics.stdev(gaps) if len(days) >= 3 else None,
            last_gap_days=gaps[-1] if gaps else None,
            overdue_ratio=recency / mean_gap if mean_gap else None,
            spend_trend_90d=float(Fraction(net(win(90, before)))
                                  - Fraction(net([t for t in before if start(180) <= t["ts"] < start(90)]))),
            returns_365d=sum(1 for t in win(365, before) if t["refund"]),
            category_count_365d=len({t["cat"] for t in p365 if t["cat"] is not None}),
            online_share_365d=(sum(1 for t in p365 if t["channel"] == "online") / len(p365)) if p365 else None,
            campaign_sent_90d=e90.count("sent"), campaign_opened_90d=e90.count("opened"),
            campaign_clicked_90d=e90.count("clicked"), campaign_redeemed_90d=e90.count("redeemed"),
            days_since_last_redeem=(D - max(redeems)).days if redeems else None,
            age_years=age, tier=(c["tier"] or None) if c else None,
            has_referrer=bool(c and c["referrer_id"]),
            referrals_converted=sum(1 for o in cust.values()
                                    if o["referrer_id"] == cid and has_purchase_before_D(o["customer_id"])),
            days_to_birthday=dtb,
            btyd_frequency=len(days) - 1,
            btyd_recency_weeks=(last - first).days / 7.0,
            # The age runs to the last day before D: (D - 1 - first purchase day) / 7.
            btyd_age_weeks=(D - dt.timedelta(days=1) - first).days / 7.0,
        )
        fut = [t["ts"].date() for t in rows
               if t["purchase"] and Dts <= t["ts"] < Dts + dt.timedelta(days=horizon)]
        labels[cid] = dict(customer_id=cid, churned=0 if fut else 1,
                           next_purchase_date=min(fut).isoformat() if fut else None)
    return feats, labels


def compare(path, expected):
    bad = 0
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    ids = [r["customer_id"] for r in rows]
    if ids != sorted(expected):
        print(f"{path}: customer set/order differs ({len(ids)} vs {len(expected)})")
        return 1
    for r in rows:
        e = expected[r["customer_id"]]
        if list(r.keys()) != list(e.keys()):
            print(f"{path}: columns differ: {list(r.keys())} vs {list(e.keys())}")
            return 1
        for k, got in r.items():
            want = e[k]
            if want is None:
                ok = got == ""
            elif isinstance(want, bool):
                ok = got == ("true" if want else "false")
            elif isinstance(want, float):
                ok = got != "" and math.isclose(float(got), want, rel_tol=1e-12, abs_tol=1e-9)
            else:
                ok = got == str(want)
            if not ok:
                bad += 1
                if bad <= 20:
                    print(f"{path}: {r['customer_id']}.{k}: reference={got!r} python={want!r}")
    print(f"{path}: {len(rows)} rows, {bad} mismatching cells")
    return bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--as-of", required=True, type=dt.date.fromisoformat)
    ap.add_argument("--lookback-days", type=int, default=365)
    ap.add_argument("--horizon-days", type=int, default=90)
    ap.add_argument("--features", required=True)
    ap.add_argument("--labels", required=True)
    a = ap.parse_args()
    feats, labels = compute(a.input, a.as_of, a.lookback_days, a.horizon_days)
    bad = compare(a.features, feats) + compare(a.labels, labels)

    # Population size by a separate, deliberately simple query.
    n = duckdb.sql(f"""
        SELECT count(DISTINCT customer_id)
        FROM read_csv('{os.path.join(a.input, 'transactions.csv')}')
        WHERE is_return = false AND amount > 0
          AND ts >= DATE '{a.as_of}' - INTERVAL {a.lookback_days} DAY
          AND ts <  DATE '{a.as_of}'
    """).fetchone()[0]
    print(f"population by simple query: {n}; python: {len(feats)}")
    if n != len(feats):
        bad += 1
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
