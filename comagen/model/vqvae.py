"""The beat-aligned audio codec: a strided 1-D conv encoder over the waveform, one vector-quantised
codebook (lucidrains' vector-quantize-pytorch: EMA updates, k-means init, dead codes re-seeded), and a
mirrored transposed-conv decoder. Every beat is `samples_per_beat / prod(codec_strides)` codes, so the
melformer's sequence steps are whole fractions of a beat.

Waveform, not spectrogram (bench/melformer.py --section input): a spectrogram codec needs its phase back;
Griffin-Lim gives it in about 7 ms a beat on one thread, as cheap as this decoder, and on the true magnitudes
reaches an STFT distance of 0.55. Cost did not decide: the waveform codec needs no second stage and has no
phase ceiling. At the 18-minute CPU run it reaches 2.0, so a magnitude codec + Griffin-Lim is the first
thing to try against it (docs/results.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from comagen.model.config import ModelConfig

MAX_CHANNELS = 128
# Renders sit near 0.05 RMS: at that scale the convs' biases swamp the signal and every frame took one code
# (a first run: 1,019 of 1,024 validation codes the same); x16 brings them to about unit scale.
GAIN = 16.0


class ResUnit(nn.Module):
    """Dilated conv, ELU, 1x1 conv, added back: widens the receptive field at one rate."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mix(F.elu(self.conv(F.elu(x))))


def _widths(cfg: ModelConfig) -> list[int]:
    """Channels at the input rate and after each stride."""
    return [min(MAX_CHANNELS, cfg.codec_channels * 2 ** i) for i in range(len(cfg.codec_strides) + 1)]


def _down(c_in: int, c_out: int, stride: int) -> nn.Module:
    """Kernel 2s, padding ceil(s/2): exactly length / s out for a length divisible by s."""
    return nn.Sequential(ResUnit(c_in, 1), ResUnit(c_in, 3), nn.ELU(),
                         nn.Conv1d(c_in, c_out, 2 * stride, stride=stride, padding=(stride + 1) // 2))


def _up(c_in: int, c_out: int, stride: int) -> nn.Module:
    """The transpose of `_down` (output_padding s % 2 makes odd strides exact too)."""
    pad = (stride + 1) // 2
    return nn.Sequential(nn.ELU(), nn.ConvTranspose1d(c_in, c_out, 2 * stride, stride=stride, padding=pad,
                                                      output_padding=2 * pad - stride),
                         ResUnit(c_out, 1), ResUnit(c_out, 3))


class VQVAE(nn.Module):
    """Waveform [B, T] (T a whole number of beats at `samples_per_beat`) <-> codes [B, beats * codes_per_beat]."""

    def __init__(self, cfg: ModelConfig) -> None:
        from loguru import logger  # here, not at the top: the library (einx) costs 1.2 s to import, and
        from vector_quantize_pytorch import VectorQuantize  # every `import comagen.model` would pay it

        logger.disable("vector_quantize_pytorch")  # its k-means note on a small first batch reaches every terminal
        super().__init__()
        self.cfg = cfg
        widths, strides = _widths(cfg), cfg.codec_strides
        self.encoder = nn.Sequential(
            nn.Conv1d(1, widths[0], 7, padding=3),
            *(_down(widths[i], widths[i + 1], s) for i, s in enumerate(strides)),
            nn.ELU(), nn.Conv1d(widths[-1], cfg.dim, 3, padding=1))
        self.quantizer = VectorQuantize(dim=cfg.dim, codebook_size=cfg.codebook_size, decay=0.95,
                                        commitment_weight=0.25, kmeans_init=True, kmeans_iters=10,
                                        threshold_ema_dead_code=2)
        self.decoder = nn.Sequential(
            nn.Conv1d(cfg.dim, widths[-1], 7, padding=3),
            *(_up(widths[i + 1], widths[i], s) for i, s in reversed(list(enumerate(strides)))),
            nn.ELU(), nn.Conv1d(widths[0], 1, 7, padding=3))

    @property
    def hop(self) -> int:
        return math.prod(self.cfg.codec_strides)

    @property
    def codes_per_beat(self) -> int:
        return self.cfg.samples_per_beat // self.hop

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, wave: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction [B, T], codes [B, T / hop], the codebook's commitment loss)."""
        z = self.encoder(GAIN * wave[:, None]).transpose(1, 2)
        quantized, codes, commit = self.quantizer(z)
        return self.decoder(quantized.transpose(1, 2))[:, 0] / GAIN, codes, commit

    @torch.inference_mode()
    def encode(self, wave: Tensor) -> Tensor:
        """Codes [B, T / hop]; T must be a multiple of the hop (a whole number of beats is)."""
        z = self.encoder(GAIN * wave[:, None]).transpose(1, 2)
        return self.quantizer(z)[1]

    @torch.inference_mode()
    def decode(self, codes: Tensor) -> Tensor:
        """Waveform [B, codes * hop] from codes [B, N]."""
        quantized = self.quantizer.get_output_from_indices(codes)
        return self.decoder(quantized.transpose(1, 2))[:, 0] / GAIN


def stft_loss(recon: Tensor, target: Tensor, ffts: tuple[int, ...] = (256, 512, 1024)) -> Tensor:
    """Multi-resolution STFT distance: spectral convergence plus log-magnitude L1, averaged over resolutions.
    Phase-blind, so the codec spends its few bits on what is heard rather than on sample-exact waveforms."""
    total = recon.new_zeros(())
    for n in ffts:
        window = torch.hann_window(n, device=recon.device)
        mags = [torch.stft(x, n, n // 4, window=window, return_complex=True).abs().clamp(min=1e-5)
                for x in (recon, target)]
        convergence = torch.linalg.norm(mags[1] - mags[0]) / torch.linalg.norm(mags[1]).clamp(min=1e-5)
        total = total + convergence + F.l1_loss(mags[0].log(), mags[1].log())
    return total / len(ffts)


def mel_filters(rate: int, n_fft: int, bands: int) -> Tensor:
    """Triangular mel filters (HTK scale) from 0 Hz to Nyquist, [bands, n_fft // 2 + 1]: built here, as no
    audio library is a runtime dependency."""
    edges = torch.linspace(0.0, 2595.0 * math.log10(1.0 + rate / 2 / 700.0), bands + 2)
    hz = 700.0 * (10 ** (edges / 2595.0) - 1.0)
    freqs = torch.linspace(0.0, rate / 2, n_fft // 2 + 1)
    lower, centre, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    rise = (freqs - lower) / (centre - lower)
    fall = (upper - freqs) / (upper - centre)
    return torch.clamp(torch.minimum(rise, fall), min=0.0)


def mel_distance(recon: Tensor, target: Tensor, rate: int, n_fft: int = 1024, bands: int = 80) -> float:
    """Mean |log10 mel magnitude| difference (80 bands to Nyquist, 1,024-point FFT, hop 256): the spectral
    envelope a listener hears, without the STFT distance's fine frequency detail; 0 is the same."""
    window, filters = torch.hann_window(n_fft), mel_filters(rate, n_fft, bands)
    mels = [(filters @ torch.stft(x, n_fft, n_fft // 4, window=window, return_complex=True).abs()).clamp(min=1e-5)
            for x in (recon, target)]
    return float((mels[0].log10() - mels[1].log10()).abs().mean())
