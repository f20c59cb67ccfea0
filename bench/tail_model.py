#!/usr/bin/env python3
"""tail_model.py -- how the gateway workload's Retry-After waits bound a run's end.

The benchmark's mock gateway answers each charge attempt with 2 ms latency and
draws one fault per POST: 10 % 503, 5 % 429 (Retry-After: 1), 5 % lost (the
charge is recorded, the answer never comes), else success. Both systems honour
Retry-After, back off with full jitter (base 10 ms, cap 200 ms, 8 attempts),
and after a 503 or a lost answer ask GET /charges/{key} first (no faults on
GETs): a lost answer's charge is found there, so a lost answer ends the chain
after one more backoff.

Two figures, for N orders:
  1. exactly, the distribution of the most 429s any one order draws: each is a
     second that order waits whatever the client's speed, so it is a floor
     under the run's end (the mock's /_ledger reports it as max_throttled);
  2. by simulation, the end of a run for a client that makes first attempts at
     a steady R orders/s (spread evenly over N/R seconds) and then waits out
     each order's chain: end = max over orders of (first attempt + chain).
     Queueing of retries behind the backlog is left out, so this is a lower
     bound for a client of that speed.

  3. with --queue-rate, by simulation, the end of a run for one worker seen as
     a single server that makes R attempts/s (a status GET costs half an
     attempt): N orders queued at once, and each failed attempt's retry
     queued again when due -- behind everything queued (as faka's promoter
     appends it to the stream) or ahead of the orders not yet tried ("retries
     first"). Retries first never ends sooner: which work comes first does
     not move the end, only less work per order does.

Usage: bench/tail_model.py [--orders N ...] [--rate R ...] [--runs K] [--seed S]
                           [--queue-rate R ...]
Only the Python standard library. docs/BENCHMARKS.md quotes its output.
"""

import argparse
import collections
import heapq
import math
import random
import statistics

P_OK, P_429, P_503, P_LOST = 0.80, 0.05, 0.10, 0.05
ATTEMPTS, BASE_S, CAP_S, RETRY_AFTER_S = 8, 0.010, 0.200, 1.0


def throttle_dist():
    """{k: P(an order draws exactly k 429s)} over its at most ATTEMPTS POSTs."""
    # state: attempts left -> distribution of 429s still to come
    dist = {0: {0: 1.0}}
    for left in range(1, ATTEMPTS + 1):
        d = {0: P_OK + P_LOST}            # the chain ends (a lost charge is found by GET)
        for k, v in dist[left - 1].items():
            d[k] = d.get(k, 0.0) + P_503 * v
            d[k + 1] = d.get(k + 1, 0.0) + P_429 * v
        dist[left] = d
    return dist[ATTEMPTS]


def chain_s(rng):
    """Seconds one order waits between its first attempt and its last."""
    t = 0.0
    for n in range(ATTEMPTS):
        u = rng.random()
        if u < P_OK:
            return t
        backoff = rng.uniform(0.0, min(CAP_S, BASE_S * 2 ** n))
        if u < P_OK + P_LOST:
            return t + backoff            # the GET finds the recorded charge
        t += max(backoff, RETRY_AFTER_S) if u < P_OK + P_LOST + P_429 else backoff
    return t


def queue_end(n, rate, retries_first, rng):
    """End of a run, in s, for the single server of item 3 of the docstring."""
    new = collections.deque((1.0, i, 0) for i in range(n))   # (cost, order, attempt)
    due_q = collections.deque()       # retries that are due, when they go first
    waiting = []                      # (due time, order, cost, attempt)
    t = end = 0.0
    while new or due_q or waiting:
        while waiting and waiting[0][0] <= t:
            _, i, cost, k = heapq.heappop(waiting)
            (due_q if retries_first else new).append((cost, i, k))
        if due_q:
            cost, i, k = due_q.popleft()
        elif new:
            cost, i, k = new.popleft()
        else:
            t = waiting[0][0]
            continue
        t += cost / rate
        if k < 0:                     # the GET that finds a lost answer's charge
            end = max(end, t)
            continue
        u = rng.random()
        if u < P_OK or k + 1 >= ATTEMPTS:
            end = max(end, t)
            continue
        backoff = rng.uniform(0.0, min(CAP_S, BASE_S * 2 ** k))
        if u < P_OK + P_LOST:
            heapq.heappush(waiting, (t + backoff, i, 0.5, -1))
        elif u < P_OK + P_LOST + P_429:
            heapq.heappush(waiting, (t + max(backoff, RETRY_AFTER_S), i, 1.0, k + 1))
        else:                         # 503: ask first, then charge again
            heapq.heappush(waiting, (t + backoff, i, 1.5, k + 1))
    return end


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--orders", type=int, nargs="+", default=[20000, 100000])
    ap.add_argument("--rate", type=float, nargs="+", default=[11000, 13000, 16000, 1e12],
                    help="first attempts per second of the modelled client (1e12: no time)")
    ap.add_argument("--runs", type=int, default=20, help="simulated runs per cell")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--queue-rate", type=float, nargs="+", default=[],
                    help="attempts per second of the single server of item 3")
    a = ap.parse_args()
    if (any(n < 1 for n in a.orders) or a.runs < 1 or
            any(not (math.isfinite(r) and r > 0) for r in a.rate + a.queue_rate)):
        ap.error("orders, rate, queue-rate and runs must be positive "
                 "(rate, queue-rate: finite numbers)")
    rng = random.Random(a.seed)
    d = throttle_dist()
    tail = lambda k: sum(v for kk, v in d.items() if kk >= k)
    print("P(the most 429s one order draws >= k), i.e. a floor of k s under the run's end:")
    for n in a.orders:
        print("  N = %7d: " % n + "  ".join(
            "k=%d %5.1f %%" % (k, 100 * (1 - (1 - tail(k)) ** n)) for k in range(2, 6)))
    print("Modelled end of a run (s; median and 10th-90th percentile of %d runs):" % a.runs)
    for n in a.orders:
        for r in a.rate:
            ends = sorted(max(rng.uniform(0.0, n / r) + chain_s(rng) for _ in range(n))
                          for _ in range(a.runs))
            lo, hi = ends[len(ends) // 10], ends[(len(ends) * 9) // 10]
            rate = "no time" if r >= 1e9 else "%.0f/s" % r
            print("  N = %7d, first attempts at %-8s end %6.2f  (%.2f-%.2f)" %
                  (n, rate, statistics.median(ends), lo, hi))
    if a.queue_rate:
        print("Queued end of a run, one server (s; median of %d runs):" % a.runs)
    for n in a.orders:
        for r in a.queue_rate:
            back = [queue_end(n, r, False, rng) for _ in range(a.runs)]
            first = [queue_end(n, r, True, rng) for _ in range(a.runs)]
            print("  N = %7d, %8.0f attempts/s: retries behind the backlog %6.2f, "
                  "retries first %6.2f" % (n, r, statistics.median(back),
                                          statistics.median(first)))


if __name__ == "__main__":
    main()
