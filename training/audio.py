"""Audio files read as one mono signal at the rate a transcriber wants.

WAV files are read with the standard library (16-, 24- and 32-bit integer PCM), so plain
recordings need nothing more; FLAC, Ogg, MP3, AIFF and float WAV are read with soundfile
(libsndfile), which the ``audio`` extra brings. Channels are averaged, and the signal is
resampled with the FFT, chunk by chunk so that an hour-long recording needs no more memory
than a minute's worth beside the signal itself.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np

WAV_SUFFIXES = {".wav", ".wave"}
# What soundfile's libsndfile reads (MP3 since libsndfile 1.1).
SOUNDFILE_SUFFIXES = {".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc"}
AUDIO_SUFFIXES = WAV_SUFFIXES | SOUNDFILE_SUFFIXES
RESAMPLE_CHUNK_S = 20.0
RESAMPLE_PAD_S = 0.5  # context either side of a chunk, cut off after resampling


class AudioError(ValueError):
    """An audio file that cannot be read; the message says why, in one line."""


def read_audio(path: Path, rate_hz: int) -> np.ndarray:
    """The file's signal, mono float32 in [-1, 1], at ``rate_hz``.

    Raises:
        AudioError: an unknown suffix, or a file its reader refuses.
        ModuleNotFoundError: a format that needs soundfile (the ``audio`` extra), without it.
    """
    suffix = path.suffix.lower()
    if suffix not in AUDIO_SUFFIXES:
        raise AudioError(f"not an audio file of a known kind ({', '.join(sorted(AUDIO_SUFFIXES))})")
    signal, file_rate_hz = None, 0
    if suffix in WAV_SUFFIXES:
        try:
            signal, file_rate_hz = _read_wav(path)
        except _UnsupportedWav:
            signal = None  # float or compressed WAV: soundfile reads those
    if signal is None:
        signal, file_rate_hz = _read_with_soundfile(path)
    if len(signal) == 0:
        raise AudioError("no audio in it (zero samples)")
    return resample(signal, file_rate_hz, rate_hz)


class _UnsupportedWav(Exception):
    pass


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate_hz = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            data = wav.readframes(wav.getnframes())
    except wave.Error as err:
        if "unknown format" in str(err):
            raise _UnsupportedWav from err
        raise AudioError(f"not a readable WAV file ({err})") from err
    except (OSError, EOFError) as err:
        raise AudioError(f"not a readable WAV file ({err or type(err).__name__})") from err
    if width == 3:  # 24-bit: widen each sample to 32 bits, little-endian
        raw = np.frombuffer(data[: len(data) // 3 * 3], np.uint8).reshape(-1, 3)
        padded = np.zeros((len(raw), 4), np.uint8)
        padded[:, 1:] = raw
        samples = padded.view("<i4").ravel().astype(np.float32) / 2.0**31
    elif width in (2, 4):
        dtype = "<i2" if width == 2 else "<i4"
        usable = len(data) // width * width
        samples = np.frombuffer(data[:usable], dtype).astype(np.float32) / 2.0 ** (8 * width - 1)
    elif width == 1:  # 8-bit WAV is unsigned
        samples = (np.frombuffer(data, np.uint8).astype(np.float32) - 128.0) / 128.0
    else:
        raise _UnsupportedWav
    frames = len(samples) // channels
    return samples[: frames * channels].reshape(frames, channels).mean(axis=1), rate_hz


def _read_with_soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile

    try:
        data, rate_hz = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as err:
        reason = str(err).strip().splitlines()
        raise AudioError(f"not a readable audio file ({reason[-1] if reason else err})") from err
    return data.mean(axis=1), int(rate_hz)


def resample(signal: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """``signal`` resampled from ``from_hz`` to ``to_hz`` with the FFT (band-limited), in
    chunks whose lengths are whole periods of the two rates, so the chunks join exactly."""
    signal = np.asarray(signal, np.float32)
    if from_hz == to_hz:
        return signal
    if from_hz <= 0 or to_hz <= 0:
        raise AudioError(f"impossible sample rate {from_hz} Hz")
    common = math.gcd(from_hz, to_hz)
    step_in, step_out = from_hz // common, to_hz // common
    chunk = max(1, round(RESAMPLE_CHUNK_S * from_hz / step_in)) * step_in
    pad = max(1, round(RESAMPLE_PAD_S * from_hz / step_in)) * step_in
    out_length = math.ceil(len(signal) * to_hz / from_hz)
    padded = np.concatenate([np.zeros(pad, np.float32), signal, np.zeros(pad + chunk, np.float32)])
    pieces = []
    for start in range(0, len(signal), chunk):
        piece = padded[start : start + chunk + 2 * pad]
        resampled = _fft_resample(piece, len(piece) // step_in * step_out)
        cut = pad // step_in * step_out
        pieces.append(resampled[cut : cut + chunk // step_in * step_out])
    out = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return out[:out_length].astype(np.float32)


def _fft_resample(piece: np.ndarray, length: int) -> np.ndarray:
    spectrum = np.fft.rfft(piece)
    bins = length // 2 + 1
    kept = np.zeros(bins, np.complex128)
    count = min(bins, len(spectrum))
    kept[:count] = spectrum[:count]
    if length < len(piece) and length % 2 == 0:
        kept[-1] = kept[-1].real  # the new Nyquist bin of a real signal is real
    return np.fft.irfft(kept, n=length) * (length / len(piece))
