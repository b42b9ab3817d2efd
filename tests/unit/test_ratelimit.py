"""SendRate on a simulated clock: the bot's window, the per-chat interval and the 429 pause."""

from __future__ import annotations

from bisect import bisect_right

from intake.ratelimit import SendRate


class SimulatedTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def limiter(t: SimulatedTime, **kwargs) -> SendRate:
    return SendRate(monotonic=t.monotonic, sleep=t.sleep, **kwargs)


async def send(rate: SendRate, t: SimulatedTime, chat: str | None, latency: float = 0.005) -> float:
    async with rate.slot(chat):
        started = t.now
        t.now += latency
    return started + latency / 2  # when the receiver sees it


def most_in_a_second(times: list[float]) -> int:
    times = sorted(times)
    return max(bisect_right(times, start + 1.0 - 1e-9) - i for i, start in enumerate(times))


async def test_never_more_than_thirty_in_any_second_yet_close_to_it():
    t = SimulatedTime()
    rate = limiter(t, per_second=30, chat_interval=1.0)
    seen = [await send(rate, t, f"chat{n}") for n in range(600)]
    assert most_in_a_second(seen) <= 30
    assert 600 / (seen[-1] - seen[0]) >= 0.95 * 30


async def test_slow_answers_do_not_let_a_window_overflow():
    t = SimulatedTime()
    rate = limiter(t, per_second=30, chat_interval=0)
    seen = []
    for n in range(200):
        latency = 0.9 if n % 30 == 0 else 0.001  # some requests hang almost a second
        seen.append(await send(rate, t, None, latency))
    assert most_in_a_second(seen) <= 30


async def test_one_chat_gets_one_message_a_second():
    t = SimulatedTime()
    rate = limiter(t, per_second=30, chat_interval=1.0)
    seen = [await send(rate, t, "same") for _ in range(5)]
    assert min(b - a for a, b in zip(seen, seen[1:])) >= 1.0


async def test_retry_after_pauses_everyone():
    t = SimulatedTime()
    rate = limiter(t, per_second=30, chat_interval=1.0)
    await send(rate, t, "a")
    rate.pause(5)
    assert rate.paused_for() == 5
    before = t.now
    await send(rate, t, "b")
    assert t.now - before >= 5


async def test_shares_of_the_limit_never_add_up_to_more():
    for share, workers in ((15, 2), (7.5, 4)):
        t = SimulatedTime()
        rate = limiter(t, per_second=share, chat_interval=0)
        seen = [await send(rate, t, None) for _ in range(100)]
        assert most_in_a_second(seen) * workers <= 30
        assert 100 / (seen[-1] - seen[0]) >= 0.9 * int(share)


def test_nonsense_limits_are_refused():
    import pytest

    with pytest.raises(ValueError):
        SendRate(per_second=0)
    with pytest.raises(ValueError):
        SendRate(chat_interval=-1)
