#!/usr/bin/env python3
"""Renders the benchmark reports as Markdown tables.

    scripts/bench-table.py [target/isnad-roundtrip.json] [target/isnad-soak.json]

The round-trip report (`cargo bench -p isnad-node --bench roundtrip`) becomes
one table: every row with its ratio to the crypto bound and to the raw-QUIC
bound at the same number of requests in flight, both measured in the same
run. The soak report (`ISNAD_LONG=1 cargo test --release --test soak`)
becomes a summary. Missing files are skipped with a note.
"""
import json
import os
import sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
args = sys.argv[1:]
roundtrip = args[0] if len(args) > 0 else os.path.join(root, "target", "isnad-roundtrip.json")
soak = args[1] if len(args) > 1 else os.path.join(root, "target", "isnad-soak.json")


def ms(x):
    return f"{x:.2f} ms" if x < 10 else f"{x:.1f} ms"


def cpu(x):
    c = x.get("cpu_us_per_trip")
    return f"{c:,.0f} µs" if c else "–"


def pct(a, b):
    return f"{100 * a / b:.0f} %" if b else "–"


if os.path.exists(roundtrip):
    r = json.load(open(roundtrip, encoding="utf-8"))
    rows = r["rows"]
    crypto = next(x for x in rows if x["what"].startswith("crypto"))
    quic = {x["in_flight"]: x for x in rows if x["what"].startswith("raw QUIC")}
    print(f"Round trips ({r['machine']}; {r['seconds_per_measurement']:g} s per row):\n")
    print("| measurement | in flight | round trips/s | p50 | p99 | of crypto bound | of raw QUIC | CPU per round trip |")
    print("|---|---|---|---|---|---|---|---|")
    for x in rows:
        q = quic.get(x["in_flight"])
        of_crypto = "–" if x["what"].startswith("durable") else pct(x["per_sec"], crypto["per_sec"])
        of_quic = pct(x["per_sec"], q["per_sec"]) if q and not x["what"].startswith(("raw", "crypto", "durable")) else "–"
        print(
            f"| {x['what']} | {x['in_flight']} | {x['per_sec']:,.0f} | {ms(x['p50_ms'])} | "
            f"{ms(x['p99_ms'])} | {of_crypto} | {of_quic} | {cpu(x)} |"
        )
    print()
    # What the CPU figures imply: a node round trip costs at least the
    # crypto row's CPU plus the raw-QUIC row's; with both CPUs busy the
    # nodes cannot beat crypto / (crypto + transport) of the crypto bound.
    c, q = crypto.get("cpu_us_per_trip"), (quic.get(128) or {}).get("cpu_us_per_trip")
    sync = next((x for x in rows if x["what"].startswith("durable")), {}).get("cpu_us_per_trip")
    if c and q:
        print(
            f"CPU budget: crypto {c:.0f} µs + raw QUIC {q:.0f} µs per round trip; with nothing else "
            f"a node pair could reach at most {100 * c / (c + q):.0f} % of the crypto bound; "
            f"90 % leaves {c / 0.9 - c:.0f} µs per round trip for everything but public-key work."
            + (f" One durable sync costs {sync:.0f} µs of CPU." if sync else "")
            + "\n"
        )
else:
    print(f"(no round-trip report at {roundtrip}: run `cargo bench -p isnad-node --bench roundtrip`)\n")

if os.path.exists(soak):
    s = json.load(open(soak, encoding="utf-8"))
    lat = s["latency_ms"]
    print(
        f"Soak: {s['messages']} messages at {s['rate_per_sec']:g}/s over {s['total_secs']:.0f} s, "
        f"throughput {s['throughput_per_sec']:.1f}/s, latency p50 {lat['p50']} ms, p99 {lat['p99']} ms, "
        f"max {lat['max']} ms; queue depth max {s['queue_depth']['max']} (bound {s['queue_depth']['bound']}).\n"
    )
    print("| node | RSS after warm-up | RSS at end | growth per message | growth per minute |")
    print("|---|---|---|---|---|")
    for n in s["rss"]:
        print(
            f"| {n['node']} | {n['after_warm_up_first_kib'] / 1024:.1f} MiB | {n['last_kib'] / 1024:.1f} MiB | "
            f"{n['kib_per_message']:+.2f} KiB | {n['kib_per_minute']:+.0f} KiB |"
        )
else:
    print(f"(no soak report at {soak}: run `ISNAD_LONG=1 cargo test --release --test soak -- --nocapture`)")
