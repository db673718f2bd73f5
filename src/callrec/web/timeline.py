"""Who was on the call when: eventHistory laid out as lanes of bars for an SVG picture.

Pure geometry in SVG user units; ``templates/timeline.html`` draws it. Each participant is a
lane; a ``Joined`` opens a bar, a ``Left`` closes it (a ``Left`` without a ``Joined`` starts at
the beginning of the call, a ``Joined`` without a ``Left`` lasts to the end), and any other
event is a tick mark on its participant's lane.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from callrec.store import Document
from callrec.web.views import Contact, contact_of, duration, instant_ms, text, when

WIDTH = 1000
LABEL_WIDTH = 250
PLOT_LEFT = LABEL_WIDTH + 10
PLOT_RIGHT = WIDTH - 36
ROW_HEIGHT = 44
BAR_HEIGHT = 20
TOP = 8
AXIS_HEIGHT = 44
MAX_LABEL = 24
MIN_BAR = 3.0
TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200)


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    width: float
    title: str
    ongoing: bool


@dataclass(frozen=True, slots=True)
class Mark:
    x: float
    title: str


@dataclass(slots=True)
class Lane:
    contact: Contact
    y: float = 0.0
    bars: list[Bar] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)

    @property
    def label(self) -> str:
        name = self.contact.name
        return name if len(name) <= MAX_LABEL else name[: MAX_LABEL - 1] + "…"

    @property
    def css(self) -> str:
        """A class naming the participant's type (``kind-agent``), for the bar colour."""
        kind = "".join(c for c in self.contact.kind.lower() if c.isascii() and c.isalnum())
        return f"kind-{kind or 'other'}"


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Timeline:
    width: int
    height: float
    lanes: list[Lane]
    ticks: list[Tick]
    axis_y: float
    origin: str
    summary: str
    plot_left: int = PLOT_LEFT
    plot_right: int = PLOT_RIGHT
    bar_height: int = BAR_HEIGHT


@dataclass(frozen=True, slots=True)
class _Event:
    ms: int
    name: str
    contact: Contact


def _events(doc: Document) -> list[_Event]:
    found = []
    history = doc.get("eventHistory")
    for event in history if isinstance(history, list) else []:
        contact = contact_of(event)
        ms = instant_ms(event.get("occurredAt")) if isinstance(event, dict) else None
        if contact is not None and ms is not None:
            found.append(_Event(ms, text(event.get("event")).strip(), contact))
    found.sort(key=lambda e: e.ms)  # stable: simultaneous events keep their order
    return found


def _tick_step(span_ms: int) -> int:
    """At most six steps over the span, however long: a recording may say its call lasted
    centuries (times are whatever the recorder sent), and a tick each 12 hours of them would
    be millions."""
    for step in TICK_STEPS_S:
        if span_ms / (step * 1000) <= 6:
            return step * 1000
    return -(-span_ms // (6 * 86_400_000)) * 86_400_000  # whole days


def build_timeline(doc: Document) -> Timeline | None:
    """The picture of ``doc``'s eventHistory, or None when no event names a participant."""
    events = _events(doc)
    if not events:
        return None
    start, stop = instant_ms(doc.get("startTime")), instant_ms(doc.get("stopTime"))
    times = [e.ms for e in events]
    lo = min(times if start is None else [start, *times])
    hi = max(times if stop is None else [stop, *times])
    hi = max(hi, lo + 1000)
    scale = (PLOT_RIGHT - PLOT_LEFT) / (hi - lo)

    def x_of(ms: int) -> float:
        return round(PLOT_LEFT + (ms - lo) * scale, 1)

    def bar(lane: Lane, begin: int, end: int, ongoing: bool) -> Bar:
        left, right = x_of(begin), x_of(end)
        until = "still on the call" if ongoing else f"left at {duration(end - lo)}"
        title = (
            f"{lane.contact.name}: joined at {duration(begin - lo)}, {until} "
            f"({when(begin)[11:]} to {when(end)[11:]} UTC)"
        )
        return Bar(left, max(MIN_BAR, round(right - left, 1)), title, ongoing)

    lanes: dict[str, Lane] = {}
    joined: dict[str, int] = {}
    for event in events:
        lane = lanes.setdefault(event.contact.key, Lane(event.contact))
        key = event.contact.key
        if event.name == "Joined":
            joined.setdefault(key, event.ms)
        elif event.name == "Left":
            lane.bars.append(bar(lane, joined.pop(key, lo), event.ms, False))
        else:
            label = event.name or "Event"
            mark_title = f"{lane.contact.name}: {label} at {duration(event.ms - lo)}"
            lane.marks.append(Mark(x_of(event.ms), mark_title))
    for key, begin in joined.items():
        lanes[key].bars.append(bar(lanes[key], begin, hi, stop is None))
    for row, lane in enumerate(lanes.values()):
        lane.y = TOP + row * ROW_HEIGHT
    step = _tick_step(hi - lo)
    ticks = [Tick(x_of(lo + ms), duration(ms)) for ms in range(0, hi - lo + 1, step)]
    axis_y = TOP + len(lanes) * ROW_HEIGHT
    people = len(lanes)
    return Timeline(
        width=WIDTH,
        height=axis_y + AXIS_HEIGHT,
        lanes=list(lanes.values()),
        ticks=ticks,
        axis_y=axis_y,
        origin=when(lo),
        summary=f"{people} participant{'s' if people != 1 else ''} over {duration(hi - lo)}",
    )
