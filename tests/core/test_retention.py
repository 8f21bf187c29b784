"""core/retention.py: per target, all but the newest N finished rollouts, oldest first."""

from __future__ import annotations

from canaryd.core.retention import Finished, expired


def f(name: str, created: str, target: str = "podinfo", ns: str = "demo") -> Finished:
    return Finished(namespace=ns, name=name, target=target, created=created, uid=name,
                    resource_version="1")


def test_the_newest_n_of_each_target_stay_and_the_rest_go_oldest_first() -> None:
    rollouts = [f("v3", "2026-01-03T00:00:00Z"), f("v1", "2026-01-01T00:00:00Z"),
                f("v4", "2026-01-04T00:00:00Z"), f("v2", "2026-01-02T00:00:00Z"),
                f("o1", "2026-01-01T00:00:00Z", target="other"),
                f("x1", "2025-12-01T00:00:00Z", ns="elsewhere"),
                f("x2", "2025-12-02T00:00:00Z", ns="elsewhere"),
                f("x3", "2025-12-03T00:00:00Z", ns="elsewhere")]
    assert [e.key for e in expired(rollouts, 2)] == ["elsewhere/x1", "demo/v1", "demo/v2"]
    assert [e.key for e in expired(rollouts, 4)] == []
    assert expired(rollouts, 0) == []  # 0: keep every one


def test_a_tie_on_the_creation_second_keeps_the_later_name() -> None:
    same = "2026-01-01T00:00:00Z"
    assert [e.name for e in expired([f("r2", same), f("r1", same), f("r3", same)], 1)] == [
        "r1", "r2"]
