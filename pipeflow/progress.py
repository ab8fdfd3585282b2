"""A small progress bar for loops over batches (stderr; one final line when not a terminal)."""
import sys
import time


class Progress:
    def __init__(self, total, desc="", stream=None, width=28, min_interval=0.1):
        self.total, self.desc, self.width = total, desc, width
        self.stream = sys.stderr if stream is None else stream
        self.interactive = getattr(self.stream, "isatty", lambda: False)()
        self.count, self.postfix, self.start = 0, "", time.perf_counter()
        self.min_interval, self._last = min_interval, 0.0

    def update(self, n=1, **postfix):
        self.count += n
        if postfix:
            self.postfix = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                    for k, v in postfix.items())
        now = time.perf_counter()
        if self.interactive and (now - self._last >= self.min_interval or self.count == self.total):
            self._last = now
            self.stream.write("\r" + self._line(now))
            self.stream.flush()

    def _line(self, now):
        frac = self.count / self.total if self.total else 1.0
        filled = int(self.width * frac)
        elapsed = now - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        return (f"{self.desc} |{'#' * filled}{'.' * (self.width - filled)}| "
                f"{self.count}/{self.total} [{elapsed:.1f}s, {rate:.1f} it/s] {self.postfix}")

    def close(self):
        line = self._line(time.perf_counter())
        self.stream.write(("\r" if self.interactive else "") + line + "\n")
        self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
