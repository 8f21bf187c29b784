"""The scheduling queue, on a virtual clock: what is due when, and no change is lost."""

from __future__ import annotations

from canaryd.runtime.queue import DueQueue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_rollout_is_due_when_new_then_when_it_asked() -> None:
    clock = Clock()
    q = DueQueue(clock)
    assert q.take(["a", "b"]) == ["a", "b"], "never scheduled: due"
    assert q.take(["a", "b"]) == [], "being reconciled"
    q.done("a", 5.0)
    q.done("b", 1.0)
    assert q.soonest(default=30.0) == 1.0
    clock.now += 1.0
    assert q.take(["a", "b"]) == ["b"]
    clock.now += 4.0
    assert q.take(["a"]) == ["a"]


def test_a_change_during_a_reconcile_is_not_pushed_back_by_it() -> None:
    clock = Clock()
    q = DueQueue(clock)
    assert q.take(["a"]) == ["a"]
    q.touch("a")  # the watch saw an edit while the round was working on the old object
    q.done("a", 10.0)  # that round's own "next time"
    assert q.take(["a"]) == ["a"], "due at once, not in 10 s"
    q.done("a", 10.0)
    assert q.take(["a"]) == [], "and only once"
    q.touch("a")
    assert q.take(["a"]) == ["a"]


def test_a_forgotten_rollout_is_due_again_if_it_comes_back() -> None:
    clock = Clock()
    q = DueQueue(clock)
    q.take(["a"])
    q.done("a", 60.0)
    q.forget("a")
    assert q.take(["a"]) == ["a"] and q.busy("a")
