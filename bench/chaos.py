"""`make chaos`: every fault in turn against a fresh private deployment, as a table.

Each fault runs `--users` browser-like clients sending `--replies` messages each over two daphne
processes (scripts/faults.py), then checks every reply against the stub's script and the
database. Exits non-zero if any reply was lost, duplicated, corrupted or stuck.
"""

import argparse
import asyncio
import sys

from scripts.faults import FAULTS, NO_FAULT, Tally, run_scenario


def parse_faults(value: str) -> tuple[str, ...]:
    """`all`, or a comma-separated list of fault names (`none` is the no-fault sanity run)."""
    if value == "all":
        return FAULTS
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in (*FAULTS, NO_FAULT)]
    if unknown or not names:
        choices = ", ".join((*FAULTS, NO_FAULT))
        raise argparse.ArgumentTypeError(f"unknown fault(s) {unknown}; choose from {choices}")
    return names


def main(argv: list[str] | None = None) -> None:
    """Run the scenarios, print the table and the failure details, exit 1 on any failure."""
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--replies", type=int, default=5, help="messages per user, in turn")
    parser.add_argument("--tokens", type=int, default=60, help="tokens per reply")
    parser.add_argument("--delay-ms", type=float, default=40, help="between tokens")
    parser.add_argument("--down-seconds", type=float, default=3, help="outage length")
    parser.add_argument("--deadline-seconds", type=float, default=90, help="per reply")
    parser.add_argument("--faults", type=parse_faults, default=FAULTS, help="all, or a,b,c")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the daphne processes (repeatable)",
    )
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)

    tallies: list[Tally] = []
    failures: list[str] = []
    for fault in args.faults:
        try:
            tally = asyncio.run(
                run_scenario(
                    fault,
                    users=args.users,
                    replies=args.replies,
                    tokens=args.tokens,
                    delay_ms=args.delay_ms,
                    down_seconds=args.down_seconds,
                    env=env,
                    deadline_seconds=args.deadline_seconds,
                )
            )
        except Exception as exc:  # one broken scenario must not hide the others' figures
            failures.append(f"{fault}: the run failed: {exc!r}")
            print(f"chaos[{fault}]: the run failed: {exc!r}", flush=True)
            continue
        tallies.append(tally)
        print(tally.header() + "\n" + tally.row(), flush=True)

    print(
        f"\n## chaos: {args.users} users x {args.replies} replies, {args.tokens} tokens"
        f" every {args.delay_ms:g} ms, outages {args.down_seconds:g} s\n"
    )
    print(Tally.header())
    for tally in tallies:
        print(tally.row())
    for tally in tallies:
        print(f"\n### {tally.fault}" + ("" if tally.ok() else f" (logs: {tally.workdir})"))
        for line in tally.notes:
            print(f"- note: {line}")
        for line in tally.details:
            print(f"- {line}")
        if tally.frame_delay_p50 is not None:
            print(
                f"- reply frames reached the clients {tally.frame_delay_p50:.2f} s late (p50),"
                f" {tally.frame_delay_p99:.2f} s (p99), {tally.frame_delay_max:.2f} s (max)"
            )
        counters = ", ".join(f"{k}={v}" for k, v in sorted(tally.counters.items()) if v)
        print(f"- client counters: {counters or 'none'}")
    for line in failures:
        print(f"\n{line}")
    bad = failures or [t for t in tallies if not t.ok()]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
