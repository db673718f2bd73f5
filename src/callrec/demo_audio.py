"""Playable demo audio: a ring-back, a few DTMF digits and a soft chime tune, as WAV.

Deterministic by seed, standard library only; used by ``callrec serve --demo``, the tests and
the benchmarks through ``callrec.demo``.
"""

from __future__ import annotations

import io
import math
import random
import sys
import wave
from array import array
from functools import lru_cache

_AUDIO_CAP_S = 30.0
_WAV_HEADER = 44  # RIFF + fmt + data chunk headers, as the wave module writes for PCM
_AMPLITUDE = 0.28 * 32767  # soft: well below full scale, no clipping when partials add up
_PENTATONIC = (523.25, 587.33, 659.26, 783.99, 880.00, 1046.50)  # C5 D5 E5 G5 A5 C6
_DTMF = {"1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "4": (770, 1209),
         "5": (770, 1336), "6": (770, 1477), "7": (852, 1209), "8": (852, 1336),
         "9": (852, 1477), "0": (941, 1336)}  # fmt: skip


def _frame_count(seconds: float, sample_rate: int) -> int:
    """Frames demo_audio writes for ``seconds`` (capped to keep demo media small)."""
    return round(min(max(seconds, 0.0), _AUDIO_CAP_S) * sample_rate)


def wav_size(seconds: float, sample_rate: int = 8000) -> int:
    """Byte size of ``demo_audio(seconds, sample_rate=sample_rate)``: header + 16-bit frames."""
    return _WAV_HEADER + 2 * _frame_count(seconds, sample_rate)


def _pcm(samples: list[float]) -> bytes:
    """Float samples in [-1, 1] as little-endian signed 16-bit PCM (WAV's byte order)."""
    pcm = array("h", (int(s * _AMPLITUDE) for s in samples))
    if sys.byteorder == "big":
        pcm.byteswap()
    return pcm.tobytes()


def _fade(samples: list[float], rate: int, fade_s: float = 0.01) -> list[float]:
    """Linear fade in and out, so segments start and end at zero (no clicks)."""
    n = min(len(samples) // 2, max(1, int(rate * fade_s)))
    for j in range(n):
        g = j / n
        samples[j] *= g
        samples[-1 - j] *= g
    return samples


@lru_cache(maxsize=64)
def _chime(note: int, rate: int) -> bytes:
    """One 0.35 s bell-like note: soft attack, exponential decay, two quiet overtones."""
    f = _PENTATONIC[note]
    partials = [(m, a) for m, a in ((1, 1.0), (2, 0.25), (3, 0.08)) if f * m < 0.45 * rate]
    w = 2 * math.pi / rate
    n = int(0.35 * rate)
    samples = [
        math.exp(-j / (0.12 * rate)) * sum(a * math.sin(w * f * m * j) for m, a in partials) / 1.33
        for j in range(n)
    ]
    return _pcm(_fade(samples, rate, 0.005))


@lru_cache(maxsize=64)
def _dual(low: float, high: float, seconds: float, rate: int) -> bytes:
    """A dual tone (ring-back, DTMF) at equal levels, faded at both ends."""
    w = 2 * math.pi / rate
    samples = [
        0.45 * (math.sin(w * low * j) + math.sin(w * high * j)) for j in range(int(seconds * rate))
    ]
    return _pcm(_fade(samples, rate))


def demo_audio(seconds: float, *, seed: int = 0, sample_rate: int = 8000) -> bytes:
    """A playable mono 16-bit PCM WAV of ``seconds`` (capped at 30 s), deterministic by seed.

    It sounds like a call: a ring-back burst (440 + 480 Hz), three DTMF digits (the caller
    picking a menu option), then a soft chime melody on the C-major pentatonic scale with
    rests. The seed picks the digits and the tune. Its length in bytes is exactly
    ``44 + 2 * round(min(seconds, 30) * sample_rate)``; zero or negative ``seconds`` give a
    valid, empty WAV. Raises ValueError for non-finite ``seconds`` or a ``sample_rate`` below
    4000 Hz (the DTMF tones would alias).
    """
    if not math.isfinite(seconds):
        raise ValueError("seconds must be finite")
    if sample_rate < 4000:
        raise ValueError("sample_rate must be at least 4000 Hz")
    rate = sample_rate
    frames = _frame_count(seconds, rate)
    rng = random.Random(seed)
    gap = bytes(2 * int(0.08 * rate))
    parts = [_dual(440.0, 480.0, 0.8, rate), bytes(2 * int(0.4 * rate))]
    for _ in range(3):
        low, high = _DTMF[rng.choice("1234567890")]
        parts += [_dual(float(low), float(high), 0.12, rate), gap]
    parts.append(bytes(2 * int(0.3 * rate)))
    size, target = sum(map(len, parts)), 2 * frames
    note, played = rng.randrange(len(_PENTATONIC)), 0
    rest = bytes(2 * int(0.35 * rate))
    while size < target:
        if played % 8 == 7:
            part = rest + rest  # a phrase ends: breathe
        elif rng.random() < 0.15:
            part = rest
        else:
            note = min(max(note + rng.choice((-2, -1, -1, 1, 1, 2)), 0), len(_PENTATONIC) - 1)
            part = _chime(note, rate)
        parts.append(part)
        size += len(part)
        played += 1
    pcm = b"".join(parts)[:target]
    # The clip usually ends mid-note: fade the last 20 ms out so it does not end on a click.
    n_tail = min(frames, int(0.02 * rate))
    if n_tail:
        tail = array("h", pcm[-2 * n_tail :])
        if sys.byteorder == "big":
            tail.byteswap()
        for j in range(n_tail):
            tail[j] = int(tail[j] * (n_tail - j) / n_tail)
        if sys.byteorder == "big":
            tail.byteswap()
        pcm = pcm[: -2 * n_tail] + tail.tobytes()

    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buf.getvalue()
