"""Progress of long work (training and evaluation epochs, feature conversion
and extraction): tqdm's bar when stderr is a terminal; otherwise (nohup, a
batch scheduler, `2> log`) one plain line every INTERVAL seconds, e.g.

    epoch 3: 1200/3400 batches (35%), 25.1 batches/s, 3213 samples/s, 1 min 28 s left, loss=0.412

BAN_PROGRESS_SECONDS sets the interval (default 30 s; 0 prints a line after
every step).
"""
import functools
import os
import sys
import time

from tqdm import tqdm

INTERVAL_VARIABLE = 'BAN_PROGRESS_SECONDS'
DEFAULT_INTERVAL = 30.0


def interval_seconds():
    """The interval between log lines: BAN_PROGRESS_SECONDS, else DEFAULT_INTERVAL."""
    return _interval(os.environ.get(INTERVAL_VARIABLE, '').strip())


@functools.lru_cache(maxsize=None)  # one warning for a bad value, not one per epoch
def _interval(text):
    if not text:
        return DEFAULT_INTERVAL
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also NaN
        print('warning: %s=%r is not a number of seconds >= 0; using %g' % (INTERVAL_VARIABLE, text, DEFAULT_INTERVAL),
              file=sys.stderr)
        return DEFAULT_INTERVAL
    return seconds


def duration(seconds):
    """'45 s', '3 min 20 s', '2 h 05 min'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return '%d s' % seconds
    if seconds < 3600:
        return '%d min %d s' % divmod(seconds, 60)
    hours, rest = divmod(seconds, 3600)
    return '%d h %02d min' % (hours, rest // 60)


class Progress:
    """Iterate over `iterable` reporting progress to `stream` (default stderr).

    total: the number of steps (default len(iterable) when it has one);
    initial: steps done before (a resumed epoch); unit: what the steps are (plural);
    enabled False: silent (the other ranks under torchrun). `add_samples(n)`
    counts samples for a samples/s figure, `set_postfix(**values)` adds
    values to the bar or line, as tqdm's. `clock` and `interval` are for tests.
    """

    def __init__(self, iterable, desc, total=None, unit='steps', initial=0, enabled=True, stream=None,
                 clock=time.monotonic, interval=None):
        self.iterable = iterable
        self.desc = desc
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, '__len__') else None)
        self.unit = unit
        self.done = initial
        self.stream = stream or sys.stderr
        self.clock = clock
        self.interval = interval_seconds() if interval is None else interval
        self.postfix = {}
        self.samples = 0
        self.bar = None
        self.logging = enabled and not self.stream.isatty()
        if enabled and not self.logging:
            self.bar = tqdm(iterable, desc=desc, total=self.total, initial=initial, unit=unit, leave=False,
                            dynamic_ncols=True, file=self.stream)
        self.started = self.last_line = clock()
        self.initial = initial  # steps done before this run, left out of the rate

    def __iter__(self):
        if self.bar is not None:
            yield from self.bar
            return
        for item in self.iterable:
            yield item
            self.done += 1
            if self.logging and self.clock() - self.last_line >= self.interval:
                self.write_line()

    def add_samples(self, count):
        self.samples += count
        if self.bar is not None:
            self._show_postfix()  # drawn at the bar's next refresh

    def set_postfix(self, **values):
        self.postfix = values
        if self.bar is not None:
            self._show_postfix()

    def _show_postfix(self):
        values = dict(self.postfix)
        if self.samples:
            values['samples_s'] = '%.0f' % (self.samples / max(self.clock() - self.started, 1e-9))
        self.bar.set_postfix(values, refresh=False)

    def line(self):
        """The log line for the progress so far."""
        now = self.clock()
        elapsed = max(now - self.started, 1e-9)
        steps = self.done - self.initial
        rate = steps / elapsed
        parts = ['%d/%d %s (%d%%)' % (self.done, self.total, self.unit, 100 * self.done // max(self.total, 1))
                 if self.total else '%d %s' % (self.done, self.unit),
                 '%.3g %s/s' % (rate, self.unit)]
        if self.samples:
            parts.append('%.0f samples/s' % (self.samples / elapsed))
        if self.total:
            parts.append(duration((self.total - self.done) / rate) + ' left' if rate > 0 else 'time left unknown')
        parts += ['%s=%s' % item for item in self.postfix.items()]
        return '%s: %s' % (self.desc, ', '.join(parts))

    def write_line(self):
        print(self.line(), file=self.stream, flush=True)
        self.last_line = self.clock()

    def close(self):
        if self.bar is not None:
            self.bar.close()
