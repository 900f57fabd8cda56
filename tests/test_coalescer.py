"""The coalescer: when deltas become frames (BUFFER_SIZE characters or FLUSH_INTERVAL_MS), and
that no text is lost, doubled or reordered on the way."""

from hypothesis import given
from hypothesis import strategies as st

from chat.engine.coalescer import Coalescer


def stream(coalescer: Coalescer, arrivals: list[tuple[float, list[str]]]) -> list[str]:
    """The frames of a reply loop like ReplyStream's: each arrival is a time and the deltas
    waiting then; the first is taken, and once the buffer is full the rest join its frame.
    Between arrivals the loop wakes at `flush_at`; the end flushes what is left."""
    sent = []
    for now, deltas in arrivals:
        if (flush_at := coalescer.flush_at) is not None and flush_at <= now:
            assert coalescer.due(flush_at)
            sent.append(coalescer.flush())
        waiting = list(deltas)
        while waiting:
            if coalescer.add(waiting.pop(0), now):
                for delta in waiting:
                    coalescer.add(delta, now)
                waiting = []
                sent.append(coalescer.flush())
    sent.append(coalescer.flush())
    return [text for text in sent if text]


def test_a_quiet_stream_sends_one_frame_per_buffer_size_characters():
    coalescer = Coalescer(buffer_size=5, window_s=10)
    arrivals = [(i * 0.001, [letter]) for i, letter in enumerate("abcdefghijkl")]
    assert stream(coalescer, arrivals) == ["abcde", "fghij", "kl"]


def test_a_delta_that_fills_the_buffer_is_sent_at_once_whole():
    coalescer = Coalescer(buffer_size=5, window_s=10)
    assert not coalescer.add("ab", now=0)
    assert coalescer.add("cdefgh", now=0.001), "full: past buffer_size characters"
    assert coalescer.flush() == "abcdefgh"


def test_a_partial_buffer_is_due_once_its_window_after_its_first_delta_has_passed():
    coalescer = Coalescer(buffer_size=100, window_s=0.03)
    assert coalescer.flush_at is None and not coalescer.due(now=5)
    coalescer.add("Hel", now=1.0)
    coalescer.add("lo", now=1.02)  # a later delta does not push the window back
    assert coalescer.flush_at == 1.03
    assert not coalescer.due(now=1.029)
    assert coalescer.due(now=1.03)
    assert coalescer.flush() == "Hello"
    assert coalescer.flush_at is None, "the next window starts with the next delta"
    coalescer.add("!", now=2.0)
    assert coalescer.flush_at == 2.03


def test_a_slow_stream_sends_each_delta_in_its_own_frame_by_the_window():
    coalescer = Coalescer(buffer_size=100, window_s=0.03)
    arrivals = [(i * 0.1, [f"w{i} "]) for i in range(5)]
    assert stream(coalescer, arrivals) == ["w0 ", "w1 ", "w2 ", "w3 ", "w4 "]


def test_a_burst_that_queued_up_joins_one_frame_instead_of_many():
    coalescer = Coalescer(buffer_size=5, window_s=0.03)
    burst = ["ab", "cd", "ef", "gh", "ij", "kl", "mn"]
    assert stream(coalescer, [(0.0, burst)]) == ["abcdefghijklmn"]


def test_the_end_flushes_what_is_left_and_then_nothing():
    coalescer = Coalescer(buffer_size=5, window_s=0.03)
    coalescer.add("ab", now=0)
    assert coalescer.pending == "ab"
    assert coalescer.flush() == "ab"
    assert coalescer.flush() == "" and coalescer.pending == ""


deltas = st.text(alphabet="ab c\né✓", max_size=12)
arrivals = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=0.1, allow_nan=False),  # the gap before it
        st.lists(deltas, min_size=1, max_size=6),
    ),
    max_size=40,
)


@given(
    arrivals=arrivals,
    buffer_size=st.integers(min_value=1, max_value=40),
    window_s=st.floats(min_value=0.001, max_value=0.2),
)
def test_frames_carry_every_delta_once_and_in_order(arrivals, buffer_size, window_s):
    timed, now = [], 0.0
    for gap, batch in arrivals:
        now += gap
        timed.append((now, batch))
    sent = stream(Coalescer(buffer_size, window_s), timed)
    assert "".join(sent) == "".join(delta for _, batch in timed for delta in batch)
    assert all(sent), "no empty frame"
