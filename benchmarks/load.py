"""Drive the served page from many concurrent gradio_client clients; print throughput and latency.

    python benchmarks/load.py                      # starts its own server on loopback
    python benchmarks/load.py --url http://127.0.0.1:7860/ --clients 20 --seconds 30

Each client loops over a mix of good images (held-out demo images) and bad files (from the
test corpus), for a bounded time, on loopback only. A good request must come back with
neighbours; a bad one with its one-sentence answer; anything else counts as a server error.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass
class Results:
    """Outcomes of a load run; latencies in milliseconds."""

    good_ms: list[float] = field(default_factory=list)
    bad_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def requests(self) -> int:
        return len(self.good_ms) + len(self.bad_ms) + len(self.errors)

    def summary(self) -> str:
        lat = sorted(self.good_ms)
        pct = {p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else 0.0
               for p in (50, 95, 99)}  # fmt: skip
        return (
            f"requests {self.requests} in {self.seconds:.1f} s "
            f"({self.requests / max(self.seconds, 1e-9):.1f}/s): good {len(self.good_ms)}, "
            f"bad answered {len(self.bad_ms)}, server errors {len(self.errors)}\n"
            f"good latency ms: p50 {pct[50]:.0f}  p95 {pct[95]:.0f}  p99 {pct[99]:.0f}  "
            f"mean {statistics.fmean(lat) if lat else 0:.0f}"
        )


def corpus(folder: Path) -> list[tuple[Path, str | None]]:
    """Files to send: (path, expected sentence words or None for a good image)."""
    from ingest.demo import item
    from tests.badfiles import CASES

    folder.mkdir(parents=True, exist_ok=True)
    files: list[tuple[Path, str | None]] = []
    for i in range(6):
        demo = item(300_000 + i)
        path = folder / demo.name
        path.write_bytes(demo.image)
        files.append((path, None))
    quick_bad = [c for c in CASES if c.words and c.name not in ("real-bomb.png", "line.png")]
    for case in quick_bad[:6]:
        path = folder / case.name
        path.write_bytes(case.make())
        files.append((path, case.words))
    return files


def drive(url: str, files, clients: int = 20, seconds: float = 30.0) -> Results:
    """Run `clients` threads, each with its own gradio_client, for about `seconds`."""
    from gradio_client import Client, handle_file

    results = Results()
    stop_at = time.time() + seconds

    def worker(n: int) -> None:
        client = Client(url, verbose=False)
        i = n
        while time.time() < stop_at:
            path, words = files[i % len(files)]
            i += 1
            start = time.perf_counter()
            try:
                out = client.predict(handle_file(str(path)), 3, api_name="/caption")
                ms = (time.perf_counter() - start) * 1000
                ok = words is None and len(out[0]) == 3 and out[2]
                with results.lock:
                    (results.good_ms.append(ms) if ok else
                     results.errors.append(f"{path.name}: unexpected answer"))  # fmt: skip
            except Exception as exc:  # the client raises for error answers; sort them
                ms = (time.perf_counter() - start) * 1000
                expected = words is not None and words in str(exc)
                with results.lock:
                    (results.bad_ms.append(ms) if expected else
                     results.errors.append(f"{path.name}: {str(exc)[:120]}"))  # fmt: skip
        client.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 120)
    results.seconds = time.perf_counter() - start
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an already running app (default: start one)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    import logging
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        with contextlib.ExitStack() as stack:
            url = args.url
            if not url:
                from tests.serving import demo_runtime, served

                data = Path(tmp) / "data"
                data.mkdir()
                url = stack.enter_context(served(demo_runtime(data, count=120)))
            files = corpus(Path(tmp) / "files")
            results = drive(url, files, args.clients, args.seconds)
        print(f"{args.clients} clients, {args.seconds:.0f} s, {len(files)} files "
              "(half good, half bad), loopback")  # fmt: skip
        print(results.summary())
        for err in results.errors[:10]:
            print("  error:", err)


if __name__ == "__main__":
    main()
