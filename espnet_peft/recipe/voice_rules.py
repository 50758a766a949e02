"""Which espeak-ng voice variants sound like an ordinary adult, decided from the variant file alone.

The source domain of the synthetic corpus is "ordinary adult voices"; its train, dev and test speakers must all come
from that one population, or a test voice far outside what training covered (a third formant at 9% of its normal
frequency, a first formant halved) turns the source test set into a second, unintended domain shift. The rules read
the variant file's own settings, never a decoding result, so the selection cannot be tuned on the test set.

A variant file (``espeak-ng-data/voices/!v/NAME``) holds lines such as ``formant 2 110 70 150`` (formant number,
frequency %, height %, width %), ``pitch 82 118`` (base and range, Hz), ``echo 130 15`` (delay ms, amplitude %),
``flutter 20`` and ``voicing 17`` (% of the default voiced amplitude).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: F1-F3 frequency scale, % of espeak's default (a male vocal tract); adult women sit about 15-25% higher
FORMANT_FREQUENCY_PERCENT = (80, 135)
PITCH_BASE_HZ = (60, 210)  # espeak's pitch base: below is a growl, above a child or a cartoon
MAX_ECHO_AMPLITUDE = 50  # the robotic variants use echo amplitudes of 600-10000
MAX_FLUTTER = 19  # croak, grandpa, grandma and whisper use 20
MIN_VOICING = 25  # whisper (17), whisperf (20) and caleb (0) are unvoiced


@dataclass
class VariantSettings:
    formant_frequency: dict[int, int] = field(default_factory=dict)  # formant number -> frequency %
    pitch_base: int | None = None
    echo_amplitude: int = 0
    flutter: int = 0
    voicing: int = 100


def read_variant(path: Path) -> VariantSettings:
    settings = VariantSettings()
    for raw in path.read_text(errors="replace").splitlines():
        words = raw.split("//")[0].split("#")[0].split()
        if len(words) < 2 or not all(w.lstrip("-").isdigit() for w in words[1:]):
            continue
        key, numbers = words[0], [int(w) for w in words[1:]]
        if key == "formant" and len(numbers) >= 2:
            settings.formant_frequency[numbers[0]] = numbers[1]
        elif key == "pitch":
            settings.pitch_base = numbers[0]
        elif key == "echo" and len(numbers) >= 2:
            settings.echo_amplitude = numbers[1]
        elif key == "flutter":
            settings.flutter = numbers[0]
        elif key == "voicing":
            settings.voicing = numbers[0]
    return settings


def unordinary_reasons(path: Path) -> list[str]:
    """Why the variant at ``path`` is not an ordinary adult voice; empty when it is."""
    s = read_variant(path)
    low, high = FORMANT_FREQUENCY_PERCENT
    reasons = [f"F{n} at {s.formant_frequency[n]}% (allowed {low}-{high}%)"
               for n in (1, 2, 3) if n in s.formant_frequency and not low <= s.formant_frequency[n] <= high]
    if s.pitch_base is not None and not PITCH_BASE_HZ[0] <= s.pitch_base <= PITCH_BASE_HZ[1]:
        reasons.append(f"pitch base {s.pitch_base} Hz (allowed {PITCH_BASE_HZ[0]}-{PITCH_BASE_HZ[1]})")
    if s.echo_amplitude > MAX_ECHO_AMPLITUDE:
        reasons.append(f"echo amplitude {s.echo_amplitude} (robotic; allowed <= {MAX_ECHO_AMPLITUDE})")
    if s.flutter > MAX_FLUTTER:
        reasons.append(f"flutter {s.flutter} (croaky; allowed <= {MAX_FLUTTER})")
    if s.voicing < MIN_VOICING:
        reasons.append(f"voicing {s.voicing} (whispered; allowed >= {MIN_VOICING})")
    return reasons
