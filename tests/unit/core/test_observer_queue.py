"""``ObserverQueue``: a consumer that handled items lingers instead of being woken per item; one that found
nothing for a whole linger sleeps and is woken by the next put; urgent items always wake it; nothing is lost
or reordered, with real threads."""

from __future__ import annotations

import threading

from lama_cleaner.observer_queue import ObserverQueue
from tests.support.waiting import wait_for


def _consume(q: ObserverQueue, got: list, batches: list) -> threading.Thread:
    def run() -> None:
        while items := q.take():
            batches.append(len(items))
            got.extend(items)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_every_item_arrives_once_in_order_from_a_fast_producer() -> None:
    q = ObserverQueue(maxsize=1_000_000, linger_s=0.005)
    got: list[int] = []
    batches: list[int] = []
    consumer = _consume(q, got, batches)
    for i in range(200_000):
        assert q.put(i)
    q.close()
    consumer.join(30)
    assert not consumer.is_alive()
    assert got == list(range(200_000))
    assert len(batches) < 200_000 / 10, "items were taken in batches, not one wake-up each"


def test_a_sleeping_consumer_is_woken_at_once_and_an_urgent_item_wakes_a_lingering_one() -> None:
    q = ObserverQueue(maxsize=10, linger_s=30.0)  # a linger far longer than the test's deadlines
    got: list[object] = []
    consumer = _consume(q, got, [])
    # Fresh consumer: its first look lingers (30 s). An urgent item must not wait for it.
    done = threading.Event()
    assert q.put(done.set, urgent=True)
    wait_for(lambda: got == [done.set], 10, "the urgent item to be taken long before the 30 s linger ends")
    q.close()
    consumer.join(10)
    assert not consumer.is_alive()


def test_after_a_quiet_linger_the_consumer_sleeps_and_a_plain_put_wakes_it() -> None:
    q = ObserverQueue(maxsize=10, linger_s=0.02)
    got: list[object] = []
    consumer = _consume(q, got, [])
    wait_for(lambda: q._sleeping, 10, "a consumer with nothing to do to go to sleep")  # noqa: SLF001
    assert q.put("event")  # not urgent: only the sleeping flag makes it wake the consumer
    wait_for(lambda: got == ["event"], 10, "the sleeping consumer to be woken by a plain put")
    q.close()
    consumer.join(10)


def test_a_full_queue_refuses_and_close_delivers_what_is_left() -> None:
    q = ObserverQueue(maxsize=3, linger_s=0.01)
    assert [q.put(i) for i in range(5)] == [True, True, True, False, False]
    got: list[int] = []
    q.close()
    consumer = _consume(q, got, [])
    consumer.join(10)
    assert got == [0, 1, 2] and not consumer.is_alive()


def test_without_a_linger_every_put_wakes_the_consumer() -> None:
    q = ObserverQueue(maxsize=10, linger_s=0.0)
    assert q.linger_s == 0.0
    got: list[object] = []
    consumer = _consume(q, got, [])
    wait_for(lambda: q._sleeping, 10, "the consumer to sleep at once")  # noqa: SLF001
    for i in range(3):
        assert q.put(i)
        wait_for(lambda i=i: got == list(range(i + 1)), 10, f"item {i} taken at once")
    q.close()
    consumer.join(10)
