"""Run the SMTP sink and the HTTP sink for a demo (or a benchmark's subprocess).

    python -m optibridge.sinks --mail-dir ./sink-mail
    python -m optibridge.sinks --no-smtp --http-port 0 --no-record    # what bench/channels.py runs
    python -m optibridge.sinks --smtp-port 0 --no-http --control-port 0   # tests/faults: SMTP faults,
                                                    # stats and a delivery lookup (sinks/control.py)

Prints where each listens, then one JSON line {"smtp_port": ..., "http_port": ...} for scripts,
and runs until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path

from optibridge.core.collector import GC_YOUNG_THRESHOLD, tune_collector
from optibridge.core.event_loop import run_on_event_loop
from optibridge.sinks.control import SinkControl
from optibridge.sinks.http_sink import HttpSink
from optibridge.sinks.smtp_sink import SmtpSink


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m optibridge.sinks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=2525, help="0 picks a free port")
    parser.add_argument("--http-port", type=int, default=8025, help="0 picks a free port")
    parser.add_argument("--mail-dir", type=Path, help="write each received mail there as a .eml file")
    parser.add_argument("--no-smtp", action="store_true", help="run only the HTTP sink")
    parser.add_argument("--no-http", action="store_true", help="run only the SMTP sink")
    parser.add_argument("--no-record", action="store_true", help="count requests and mails, keep none")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="delay every SMTP reply and HTTP response by this (a provider's round trip)",
    )
    parser.add_argument(
        "--gc-young-threshold",
        type=int,
        default=GC_YOUNG_THRESHOLD,
        help="the garbage collector as the service's processes tune it (core/collector.py; 0: Python's)",
    )
    parser.add_argument(
        "--control-port",
        type=int,
        default=None,
        help="serve the SMTP sink's control API and delivery lookup there (0: a free port)",
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    ports: dict[str, int] = {}
    async with contextlib.AsyncExitStack() as stack:
        if not args.no_smtp:
            smtp = SmtpSink(
                args.host, args.smtp_port, mail_dir=args.mail_dir, keep_messages=not args.no_record
            )
            smtp.reply_latency_s = args.latency_ms / 1000
            await stack.enter_async_context(smtp)
            ports["smtp_port"] = smtp.port
            where = f", writing to {args.mail_dir}" if args.mail_dir else ""
            print(f"smtp sink listening on {args.host}:{smtp.port}{where}", flush=True)
            if args.control_port is not None:
                control = SinkControl(smtp, args.host, args.control_port)
                await stack.enter_async_context(control)
                ports["control_port"] = control.port
                print(f"smtp sink control on http://{args.host}:{control.port}", flush=True)
        if not args.no_http:
            http = HttpSink(args.host, args.http_port, record=not args.no_record)
            http.latency(args.latency_ms / 1000)
            await stack.enter_async_context(http)
            ports["http_port"] = http.port
            print(f"http sink listening on {http.base_url}", flush=True)
        print(json.dumps(ports), flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.no_smtp and args.no_http:
        print("nothing to run: both --no-smtp and --no-http", file=sys.stderr)
        return 2
    # As the service's processes run (core/collector.py): at Python's defaults the collector's
    # full passes were a share of every request a sink answers with hundreds in flight.
    tune_collector(args.gc_young_threshold)
    # On the service's event loop too: the sinks stand in for remote providers yet share a
    # benchmark's cores with the workers and PostgreSQL; on uvloop the HTTP sink took 97 µs of
    # CPU per Twilio request instead of 112 (bench/send.py --latency-ms 50).
    run_on_event_loop(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
