"""A transparent acoustic estimate of valence and arousal (the ``features`` backend).

Five features per clip (librosa, pyloudnorm), each mapped linearly onto [-1, 1] over a documented
range and combined with fixed weights that follow the music-emotion literature (Gabrielsson &
Lindström 2010; Eerola, Friberg & Bresin 2013): arousal rises with tempo, onset density, loudness
and brightness; valence rises with major mode and, less, with tempo and brightness. The weights are
design choices, not fitted: the estimate is meant to be inspectable, not state of the art. The
formulas are written out in ``docs/evaluation.md``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from musicmed_stream.chain import integrated_loudness
from musicmed_stream.emotion.point import VA

# Krumhansl & Kessler (1982) probe-tone key profiles, C major and C minor.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

# Feature -> [-1, 1]: (centre, half-range). Values outside the range saturate.
SCALES = {
    "tempo_bpm": (90.0, 40.0),  # 50 .. 130 BPM
    "onset_rate": (2.5, 2.5),  # 0 .. 5 onsets per second
    "loudness_lufs": (-25.0, 10.0),  # -35 .. -15 LUFS
    "centroid_octaves": (0.0, 1.5),  # log2(centroid / 1500 Hz): 530 Hz .. 4.2 kHz
    "mode": (0.0, 0.3),  # best major minus best minor key score
}
AROUSAL_WEIGHTS = {"tempo_bpm": 0.3, "onset_rate": 0.3, "loudness_lufs": 0.2, "centroid_octaves": 0.2}
VALENCE_WEIGHTS = {"mode": 0.6, "tempo_bpm": 0.2, "centroid_octaves": 0.2}
CENTROID_REFERENCE_HZ = 1500.0
# librosa's log-normal tempo prior: centre and spread in octaves. Its default (120 BPM, 1 octave)
# doubles the tempo of slow, sparse music, which is most of what music medicine plays; a lower,
# wider prior reads it right without halving fast music (see docs/evaluation.md).
TEMPO_PRIOR_BPM = 80.0
TEMPO_PRIOR_OCTAVES = 2.0
ANALYSIS_RATE = 22050
# Tonic evidence from the bass: a key's score is its profile correlation plus this weight times the
# share of the bass chroma (C1..B3, 33-247 Hz) on its tonic. The bass most often sits on the tonic,
# which is what tells a minor key from its relative major (same pitch classes, different tonic).
BASS_TONIC_WEIGHT = 2.0
BASS_FMIN_HZ = 32.70  # C1
BASS_OCTAVES = 3


@dataclass(frozen=True)
class AcousticFeatures:
    """Features of one clip.

    Attributes
    ----------
    tempo_bpm : float
        Global tempo estimate (``librosa.feature.tempo``, prior 80 BPM, 2 octaves).
    onset_rate : float
        Detected onsets per second.
    loudness_lufs : float
        Integrated loudness (BS.1770); -70 for silence.
    centroid_hz : float
        Mean spectral centroid.
    major_r, minor_r : float
        Best major / minor key score (:func:`key_correlations`): correlation of the mean chroma
        with the 12 rotations of the Krumhansl-Kessler major / minor profile, plus the bass's
        share on the key's tonic; ``key_clarity`` is the larger of the two and ``key`` the best
        key's name.
    """

    tempo_bpm: float
    onset_rate: float
    loudness_lufs: float
    centroid_hz: float
    major_r: float
    minor_r: float
    key: str

    @property
    def mode(self) -> float:
        return self.major_r - self.minor_r

    @property
    def key_clarity(self) -> float:
        return max(self.major_r, self.minor_r)

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self) | {"mode": self.mode, "key_clarity": self.key_clarity}


def key_correlations(
    chroma_mean: np.ndarray, bass_chroma: np.ndarray | None = None
) -> tuple[float, float, str]:
    """Best major and minor key scores of a 12-bin mean chroma, and the best key.

    Parameters
    ----------
    chroma_mean : np.ndarray
        Mean chroma of the clip, 12 bins from C.
    bass_chroma : np.ndarray, optional
        Mean chroma of the bass register, 12 bins from C. Without it a key's score is its
        Pearson correlation with the Krumhansl-Kessler profile; with it the score adds
        :data:`BASS_TONIC_WEIGHT` times the bass's share on the key's tonic, so that a minor key
        and its relative major (the same pitch classes) are told apart by the bass note.

    Returns
    -------
    major, minor : float
        Best major and best minor key score.
    key : str
        Name of the best key (``""`` for a flat chroma).
    """
    names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    if np.ptp(chroma_mean) <= 1e-12:
        return 0.0, 0.0, ""
    major = np.array([np.corrcoef(chroma_mean, np.roll(KK_MAJOR, k))[0, 1] for k in range(12)])
    minor = np.array([np.corrcoef(chroma_mean, np.roll(KK_MINOR, k))[0, 1] for k in range(12)])
    if bass_chroma is not None and np.sum(bass_chroma) > 1e-12:
        # Key k (major or minor) has its tonic on pitch class k.
        tonic_share = BASS_TONIC_WEIGHT * np.asarray(bass_chroma, dtype=float) / np.sum(bass_chroma)
        major, minor = major + tonic_share, minor + tonic_share
    best_major, best_minor = int(np.argmax(major)), int(np.argmax(minor))
    key = (
        f"{names[best_major]} major"
        if major[best_major] >= minor[best_minor]
        else f"{names[best_minor]} minor"
    )
    return float(major[best_major]), float(minor[best_minor]), key


def extract_features(audio: np.ndarray, sample_rate: int) -> AcousticFeatures:
    """Compute :class:`AcousticFeatures` of a clip (mono mix, analysed at 22.05 kHz)."""
    import librosa

    audio = np.asarray(audio, dtype=np.float32)
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    loudness = integrated_loudness(audio, sample_rate)
    if sample_rate != ANALYSIS_RATE:
        import soxr

        mono = soxr.resample(mono, sample_rate, ANALYSIS_RATE)
    sr = ANALYSIS_RATE
    duration = mono.size / sr
    if not np.any(mono):
        return AcousticFeatures(0.0, 0.0, -70.0, 0.0, 0.0, 0.0, "")
    envelope = librosa.onset.onset_strength(y=mono, sr=sr)
    tempo = float(
        np.atleast_1d(
            librosa.feature.tempo(
                onset_envelope=envelope, sr=sr, start_bpm=TEMPO_PRIOR_BPM, std_bpm=TEMPO_PRIOR_OCTAVES
            )
        )[0]
    )
    onsets = librosa.onset.onset_detect(onset_envelope=envelope, sr=sr, units="time")
    centroid = float(np.mean(librosa.feature.spectral_centroid(y=mono, sr=sr)))
    chroma = librosa.feature.chroma_stft(y=mono, sr=sr).mean(axis=1)
    # Unnormalized (norm=None) so that loud bass notes count more than quiet ones.
    bass = librosa.feature.chroma_cqt(
        y=mono, sr=sr, fmin=BASS_FMIN_HZ, n_octaves=BASS_OCTAVES, bins_per_octave=36, norm=None
    ).mean(axis=1)
    major_r, minor_r, key = key_correlations(chroma, bass)
    return AcousticFeatures(
        tempo_bpm=tempo,
        onset_rate=float(len(onsets) / duration) if duration > 0 else 0.0,
        loudness_lufs=float(loudness) if np.isfinite(loudness) else -70.0,
        centroid_hz=centroid,
        major_r=major_r,
        minor_r=minor_r,
        key=key,
    )


def scaled_features(features: AcousticFeatures) -> dict[str, float]:
    """Each feature mapped onto [-1, 1] with :data:`SCALES`."""
    raw = {
        "tempo_bpm": features.tempo_bpm,
        "onset_rate": features.onset_rate,
        "loudness_lufs": features.loudness_lufs,
        "centroid_octaves": np.log2(max(features.centroid_hz, 1.0) / CENTROID_REFERENCE_HZ),
        "mode": features.mode,
    }
    return {name: float(np.clip((raw[name] - c) / h, -1.0, 1.0)) for name, (c, h) in SCALES.items()}


def estimate_va(features: AcousticFeatures) -> VA:
    """Valence and arousal in [-1, 1] as fixed weighted sums of :func:`scaled_features`."""
    scaled = scaled_features(features)
    arousal = sum(w * scaled[k] for k, w in AROUSAL_WEIGHTS.items())
    valence = sum(w * scaled[k] for k, w in VALENCE_WEIGHTS.items())
    return VA(float(np.clip(valence, -1, 1)), float(np.clip(arousal, -1, 1)))
