"""A bounded queue between two stages of a pipeline: an iterator run in its own thread, ahead of its consumer.

`tag` runs its stages this way (decode in a thread pool -> region extractor and tokeniser in one thread ->
LXMERT in the caller's thread): ONNX Runtime and Pillow release the GIL, so the stages overlap on the cores,
and the queue's bound keeps memory flat however many posts there are. No torch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_END = object()
_POLL_S = 0.1  # how often a blocked producer checks whether its consumer has gone


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def run_ahead(items: Iterable[T], depth: int = 1, name: str = "stage") -> Iterator[T]:
    """The items of `items`, in order, produced in a thread up to `depth` items ahead of the consumer.

    An exception in the producer is raised in the consumer at the point it happened. A consumer that stops early
    (break, an exception, Ctrl-C: the generator is closed) stops the producer after the item it is making."""
    slots: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                if not offer(item):
                    return
        except BaseException as e:  # handed to the consumer, which raises it
            offer(_Failed(e))
            return
        finally:
            close = getattr(source, "close", None)  # a generator's own clean-up runs in the thread that ran it
            if close is not None:
                close()
        offer(_END)

    worker = threading.Thread(target=produce, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()
