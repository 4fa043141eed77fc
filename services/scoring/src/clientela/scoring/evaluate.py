"""Predictive quality on a holdout: `python -m clientela.scoring.evaluate [--data F ...]`.

Calibrates on transactions up to a cut-off, predicts the period after it and compares with
what happened. Transactions become ProfileChanged aggregates and go through the same facts,
fit and model code as the service. Without --data it uses the CDNOW sample shipped in the
`lifetimes` wheel (a development dependency): weeks 1-39 calibrate, weeks 40-78 judge.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path

import numpy as np

from clientela.scoring.application.refit import FitPolicy, fit_parameters
from clientela.scoring.domain.facts import FactColumns, facts_of
from clientela.scoring.domain.value_model import BgNbdGammaGammaModel, FittedParameters
from clientela.shared.contracts import Lifecycle, ProfileAggregates, ProfileChanged

CDNOW_CUTOFF = date(1997, 9, 30)
CDNOW_END = date(1998, 6, 30)


@dataclass(frozen=True, slots=True)
class Transaction:
    """One sale: who, which day, how much."""

    customer_id: str
    day: date
    amount: Decimal


def cdnow_sample_path() -> Path:
    """Return the CDNOW sample inside the installed `lifetimes` wheel."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or spec.origin is None:
        raise SystemExit(
            "the CDNOW sample ships with the `lifetimes` package (a development dependency): "
            "run `uv sync --all-packages`, or pass --data"
        )
    return Path(spec.origin).parent / "datasets" / "CDNOW_sample.txt"


def read_cdnow(path: Path) -> list[Transaction]:
    """Read the CDNOW sample: master id, sample id, YYYYMMDD, quantity, amount."""
    out = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) == 5:
            d = fields[2]
            out.append(
                Transaction(
                    fields[1], date(int(d[:4]), int(d[4:6]), int(d[6:])), Decimal(fields[4])
                )
            )
    return out


def read_csv(path: Path) -> list[Transaction]:
    """Read a CSV with a header customer_id,date,amount (date as YYYY-MM-DD)."""
    with path.open(newline="") as handle:
        return [
            Transaction(row["customer_id"], date.fromisoformat(row["date"]), Decimal(row["amount"]))
            for row in csv.DictReader(handle)
        ]


def midnight(day: date) -> datetime:
    """Return the start of a day in UTC (sales are replayed at midnight)."""
    return datetime.combine(day, time(), tzinfo=UTC)


def profiles_of(transactions: Iterable[Transaction]) -> list[ProfileChanged]:
    """Return one ProfileChanged per customer, with the aggregates the profile service keeps."""
    days: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    counts: dict[str, int] = defaultdict(int)
    for t in transactions:
        days[t.customer_id][t.day] += t.amount
        counts[t.customer_id] += 1
    out = []
    for customer, spend in days.items():
        first, last = min(spend), max(spend)
        total = sum(spend.values(), Decimal(0))
        out.append(
            ProfileChanged(
                profile_id=customer,
                version=counts[customer],
                lifecycle=Lifecycle.CUSTOMER,
                created_at=midnight(first),
                aggregates=ProfileAggregates(
                    currency="USD",
                    purchase_count=counts[customer],
                    purchase_days=len(spend),
                    first_purchase_at=midnight(first),
                    last_purchase_at=midnight(last),
                    total_spend=total,
                    average_order_value=(total / counts[customer]).quantize(Decimal("0.0001")),
                ),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Holdout figures of one calibration."""

    parameters: FittedParameters
    customers: int
    horizon_weeks: float
    predicted_repeat: float
    actual_repeat: int
    rmse: float
    correlation: float
    top20_share_by_prediction: float
    top20_share_by_past_spend: float


def evaluate(transactions: Sequence[Transaction], cutoff: date, end: date) -> Evaluation:
    """Calibrate on days <= cutoff, judge on cutoff < day <= end (calibration customers only)."""
    calibration = [t for t in transactions if t.day <= cutoff]
    profiles = profiles_of(calibration)
    ids = [p.profile_id for p in profiles]
    facts = FactColumns.of([f for p in profiles if (f := facts_of(p)) is not None])
    as_of = midnight(cutoff)
    parameters = fit_parameters(
        facts, as_of, 1, FitPolicy(min_customers=2, min_repeat_customers=1), as_of
    )
    horizon = (end - cutoff).days / 7.0
    estimates = BgNbdGammaGammaModel(parameters, horizon_periods=horizon).estimate(facts, as_of)
    assert estimates.expected_purchases is not None
    index = {pid: i for i, pid in enumerate(ids)}
    holdout_days: dict[str, set[date]] = defaultdict(set)
    revenue = np.zeros(len(ids))
    for t in transactions:
        i = index.get(t.customer_id)
        if i is not None and cutoff < t.day <= end:
            holdout_days[t.customer_id].add(t.day)
            revenue[i] += float(t.amount)
    actual = np.array([len(holdout_days.get(pid, ())) for pid in ids], dtype=np.float64)
    predicted = estimates.expected_purchases
    top = max(1, math.ceil(0.2 * len(ids)))

    def captured(ranking: np.ndarray) -> float:
        chosen = np.argsort(-ranking, kind="stable")[:top]
        total = revenue.sum()
        return float(revenue[chosen].sum() / total) if total > 0 else 0.0

    return Evaluation(
        parameters=parameters,
        customers=len(ids),
        horizon_weeks=horizon,
        predicted_repeat=float(predicted.sum()),
        actual_repeat=int(actual.sum()),
        rmse=float(np.sqrt(np.mean((predicted - actual) ** 2))),
        correlation=float(np.corrcoef(predicted, actual)[0, 1]),
        top20_share_by_prediction=captured(estimates.predicted_value),
        top20_share_by_past_spend=captured(facts.total_spend),
    )


def report(evaluation: Evaluation) -> dict[str, float | int | str]:
    """Return the flat JSON object written by --output."""
    p = evaluation.parameters
    return {
        "customers": evaluation.customers,
        "horizon_weeks": round(evaluation.horizon_weeks, 3),
        "predicted_repeat_transactions": round(evaluation.predicted_repeat, 2),
        "actual_repeat_transactions": evaluation.actual_repeat,
        "rmse_transactions_per_customer": round(evaluation.rmse, 4),
        "correlation_per_customer": round(evaluation.correlation, 4),
        "top20_revenue_share_by_predicted_value": round(evaluation.top20_share_by_prediction, 4),
        "top20_revenue_share_by_past_spend": round(evaluation.top20_share_by_past_spend, 4),
        "bgnbd_r": round(p.bgnbd.r, 4),
        "bgnbd_alpha": round(p.bgnbd.alpha, 4),
        "bgnbd_a": round(p.bgnbd.a, 4),
        "bgnbd_b": round(p.bgnbd.b, 4),
        "bgnbd_log_likelihood": round(p.bgnbd_log_likelihood, 2),
        "gamma_gamma_p": round(p.gamma_gamma.p, 4),
        "gamma_gamma_q": round(p.gamma_gamma.q, 4),
        "gamma_gamma_gamma": round(p.gamma_gamma.gamma, 4),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Evaluate on CDNOW or on a CSV and print a table; write JSON with --output."""
    parser = argparse.ArgumentParser(prog="clientela.scoring.evaluate", description=__doc__)
    parser.add_argument("--data", type=Path, help="CSV of customer_id,date,amount")
    parser.add_argument("--cutoff", type=date.fromisoformat, help="last calibration day")
    parser.add_argument("--end", type=date.fromisoformat, help="last holdout day")
    parser.add_argument("--output", type=Path, help="write the figures as one JSON object")
    args = parser.parse_args(argv)
    if args.data is not None:
        if args.cutoff is None or args.end is None:
            parser.error("--data needs --cutoff and --end")
        transactions = read_csv(args.data)
        source = str(args.data)
    else:
        transactions = read_cdnow(cdnow_sample_path())
        source = "CDNOW sample (lifetimes)"
    cutoff = args.cutoff or CDNOW_CUTOFF
    end = args.end or CDNOW_END
    if end <= cutoff:
        parser.error("--end must come after --cutoff")
    figures = report(evaluate(transactions, cutoff, end))
    figures = {"data": source, "cutoff": cutoff.isoformat(), "end": end.isoformat(), **figures}
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"  {key:<{width}}  {value}")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(figures, indent=2) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
