"""Training the VQ-VAE codec on beat-aligned renders: multi-resolution STFT distance + waveform L1 +
the codebook's commitment loss; codebook usage and dead codes to TensorBoard; validation by STFT
distance (for `best`) and SNR on whole validation renders."""

from __future__ import annotations

import math

import numpy as np
import torch

from comagen.bundle.audio import audio_card
from comagen.model import VQVAE, ModelConfig, build_model
from comagen.model.vqvae import stft_loss
from comagen.training.audio_run import AudioRun
from comagen.training.beat_data import Crops, beat_files, load_stream
from comagen.training.config import TrainConfig

EVAL_BEATS = 64  # beats scored per validation render


def snr_db(recon: torch.Tensor, target: torch.Tensor) -> float:
    """Signal-to-noise ratio of a reconstruction, dB."""
    noise = (recon - target).pow(2).sum().clamp(min=1e-12)
    return float(10 * torch.log10(target.pow(2).sum().clamp(min=1e-12) / noise))


def reconstruct(codec: VQVAE, wave: torch.Tensor, chunk_beats: int = 16) -> torch.Tensor:
    """Encode and decode a long waveform a chunk of whole beats at a time (bounded memory)."""
    step = chunk_beats * codec.cfg.samples_per_beat
    return torch.cat([codec.decode(codec.encode(wave[None, i:i + step]))[0] for i in range(0, len(wave), step)])


def codebook_figures(counts: torch.Tensor, codec: VQVAE) -> dict[str, float]:
    """Share of codes used in the window, perplexity of their use, and codes the EMA counts as dead."""
    probs = counts / counts.sum().clamp(min=1)
    perplexity = math.exp(-float((probs[probs > 0] * probs[probs > 0].log()).sum()))
    book = codec.quantizer._codebook  # the library's EMA counts: under its threshold a code is re-seeded
    dead = int((book.cluster_size < book.threshold_ema_dead_code).sum())
    return {"used_share": float((counts > 0).float().mean()), "perplexity": perplexity, "dead_codes": dead}


class VQVAERun(AudioRun):
    measure = "stft_distance"
    trained = "codec"

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig) -> None:
        super().__init__(model_cfg, cfg)
        self.counts = torch.zeros(model_cfg.codebook_size)

    def _load(self) -> None:
        cfg, spb = self.cfg, self.model_cfg.samples_per_beat
        train = [load_stream(f, spb) for f in beat_files(cfg.data, "train", cfg.train_files)]
        self.crops = Crops(train, cfg.seq_len * spb, cfg.seed, unit=spb)
        files = beat_files(cfg.data, "validation")
        picks = np.linspace(0, len(files) - 1, min(cfg.eval_files, len(files))).astype(int)
        self.validation = [torch.from_numpy(load_stream(files[i], spb)[: EVAL_BEATS * spb]) for i in picks]
        self.model = build_model(self.model_cfg)

    def _loss(self, batch: torch.Tensor) -> torch.Tensor:
        recon, codes, commit = self.model(batch)
        self.counts += torch.bincount(codes.flatten().cpu(), minlength=len(self.counts))
        return stft_loss(recon, batch) + (recon - batch).abs().mean() + commit

    def _log_extra(self) -> None:
        for key, value in codebook_figures(self.counts, self.model).items():
            self.writer.add_scalar(f"codebook/{key}", value, self.step)
        self.counts.zero_()

    def _evaluate(self) -> dict[str, float]:
        recons = [reconstruct(self.model, w.to(self.device)) for w in self.validation]
        return {"stft_distance": float(np.mean([float(stft_loss(r[None], w[None]))
                                                for r, w in zip(recons, self.validation, strict=True)])),
                "snr_db": float(np.mean([snr_db(r, w) for r, w in zip(recons, self.validation, strict=True)]))}

    def models(self) -> dict[str, torch.nn.Module]:
        return {"codec": self.model}

    def card(self) -> str:
        return audio_card(self.out.name, self.summary(), self.models())
