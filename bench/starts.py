"""A burst of begins on the SQLite thread: each start's commit alone, or committed together.

    .venv/bin/python -m bench.starts [--starts 80] [--rounds 5]

What a start waits for on SQLite is its turn on the one database thread (chat/dbthread.py).
This measures that queue with no provider, socket or event loop work beside it: `--starts`
begins (the engine's own commit: `reply_open`, the history, on `--starts` threads of one
user) queued at once, either each its own trip (`off_loop`, as before group commit) or through
`dbthread.together` (group commit), alternating, `--rounds` times each. For each: the database
thread's CPU per start (time.thread_time on that thread: waits for the GIL left out), and the
wall time from the burst's send to each begin's answer (p50 and the last). Runs on a fresh
SQLite file in a temporary folder (its own CHAT_VAR_DIR); prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--group-max", type=int, help="dbthread.GROUP_MAX (8)")
    args = parser.parse_args()
    os.environ["CHAT_VAR_DIR"] = tempfile.mkdtemp(prefix="bench-starts-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if args.group_max:
        from chat import dbthread

        dbthread.GROUP_MAX = args.group_max
    results = asyncio.run(_sitting(args.starts, args.rounds))
    print(f"{args.starts} begins at once, {args.rounds} rounds each (medians)")
    print("| how | db-thread CPU ms / start | answer p50 ms | last answer ms |")
    print("|---|---|---|---|")
    for how, rounds in results.items():
        cpu = statistics.median(r[0] for r in rounds)
        p50 = statistics.median(r[1] for r in rounds)
        last = statistics.median(r[2] for r in rounds)
        print(f"| {how} | {cpu:.2f} | {p50:.0f} | {last:.0f} |")


async def _sitting(starts: int, rounds: int) -> dict[str, list[tuple[float, float, float]]]:
    from django.contrib.auth import get_user_model

    from chat import dbthread, selectors, services
    from chat.models import Thread

    user = await dbthread.off_loop(
        lambda: get_user_model().objects.create_user("bench-starts", password="unused-pw")
    )()

    def begins() -> list:
        threads = [Thread.objects.create(owner=user, title="t") for _ in range(starts)]

        def begin(thread_id: uuid.UUID):
            def attempt():  # generation._commit's, for a new message
                reply_id = uuid.uuid4()
                ask = services.Ask(client_id=uuid.uuid4(), text="a burst of starts")
                begun = services.reply_open(
                    ask=ask,
                    thread_id=thread_id,
                    reply_id=reply_id,
                    model="stub",
                    held_tokens=0,
                    vision=False,
                )
                selectors.thread_history(
                    thread_id=thread_id, exclude_id=reply_id, max_chars=100_000
                )
                return begun

            return attempt

        return [begin(thread.id) for thread in threads]

    def thread_cpu() -> float:
        return time.thread_time()

    results: dict[str, list[tuple[float, float, float]]] = {"alone": [], "together": []}
    for number in range(rounds * 2):
        how = ("alone", "together")[(number + number // 2) % 2]
        calls = await dbthread.off_loop(begins)()
        cpu_before = await dbthread.off_loop(thread_cpu)()
        sent = time.perf_counter()
        answered: list[float] = []

        async def one(call, how: str, sent: float, answered: list[float]) -> None:
            if how == "alone":
                await dbthread.off_loop(call)()
            else:
                await dbthread.together(call)
            answered.append(time.perf_counter() - sent)

        await asyncio.gather(*(one(call, how, sent, answered) for call in calls))
        cpu = await dbthread.off_loop(thread_cpu)() - cpu_before
        answered.sort()
        results[how].append(
            (1000 * cpu / starts, 1000 * statistics.median(answered), 1000 * answered[-1])
        )
        print(f"  {how:8s} {results[how][-1]}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
