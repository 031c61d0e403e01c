"""stages.run_ahead: the bounded queue between tag's stages."""

from __future__ import annotations

import threading
import time

import pytest

from hashtagger.tagging.stages import run_ahead


def test_items_come_in_order_from_another_thread():
    makers = []

    def items():
        for i in range(50):
            makers.append(threading.current_thread().name)
            yield i

    assert list(run_ahead(items(), depth=3, name="maker")) == list(range(50))
    assert set(makers) == {"maker"}


def test_the_producer_stays_within_depth_of_the_consumer():
    made = []

    def items():
        for i in range(100):
            made.append(i)
            yield i

    consumed = 0
    for _ in run_ahead(items(), depth=2):
        consumed += 1
        time.sleep(0.005)  # a slow consumer: the producer must wait for it, not run to the end
        # in the queue (2), in the producer's hand waiting to go in (1), and the one just handed over
        assert len(made) <= consumed + 3
    assert consumed == 100


def test_a_producer_error_is_raised_in_the_consumer_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise ValueError("bad post")

    got = []
    with pytest.raises(ValueError, match="bad post"):
        for item in run_ahead(items()):
            got.append(item)
    assert got == [1, 2]


def test_a_consumer_that_stops_early_stops_the_producer_and_its_clean_up_runs():
    cleaned = threading.Event()
    made = []

    def items():
        try:
            for i in range(10_000):
                made.append(i)
                yield i
        finally:
            cleaned.set()

    stream = run_ahead(items(), depth=1)
    assert next(stream) == 0
    stream.close()  # what a `break`, an exception or Ctrl-C in the consumer does
    assert cleaned.is_set()  # closed before close() returned: the producer's thread has ended
    assert len(made) <= 3
    assert not any(t.name == "stage" and t.is_alive() for t in threading.enumerate())
