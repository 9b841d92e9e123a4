"""Deep-clustering BLSTM (paper §3.1; Hershey et al. 2016, Isik et al. 2016).

Log-magnitude frames ``(B, T, F)`` are normalised per frequency (with ``input_norm:
utterance``, less each utterance's own mean too: a gain or a fixed equaliser on the recording
then changes nothing), run through a stack of bidirectional LSTMs, and a dense ``tanh`` layer
maps each frame to ``F`` embeddings of dimension ``D``, each scaled to unit norm.  The paper's
network is 4 BLSTM layers with 300 units per direction and ``D = 15`` (:func:`paper_config`).
Weights come from :func:`init_model`, which depends on its seed only, so every model in an
experiment can share "the same random initialization" (§3.3).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from bootsep.config import INPUT_NORMS
from bootsep.errors import BootsepError
from bootsep.pipeline.padding import frames_valid


@dataclass(frozen=True)
class ModelConfig:
    """Size of the network (from the validated ``model`` params, or a model file checked by
    :func:`bootsep.train.saved_model.load_model`).

    Attributes:
        num_freq: Frequency bins ``F`` (129 for a 32 ms window at 8 kHz, paper §3.2).
        hidden: LSTM units per direction.
        num_layers: Number of stacked BLSTM layers.
        embedding_dim: Embedding dimension ``D`` per T-F bin.
        dropout: Dropout between BLSTM layers (the paper gives none).
        input_norm: ``global``: the training set's per-frequency mean and std
            (:class:`FeatureNormalizer`); ``utterance``: then less each utterance's mean over
            its valid frames (:func:`remove_utterance_mean`).
        frame_stride: The network runs on every ``frame_stride``-th frame of the STFT: it is
            trained on one phase of each example (:func:`frame_phase`) and embeds a whole
            spectrogram as its ``frame_stride`` phases, interleaved (:func:`embed_phases`).
            With the paper's 32 ms window and 8 ms hop, stride 2 gives the BLSTM frames 16 ms
            apart at half the cost per utterance; the masks stay on the 8 ms grid.
    """

    num_freq: int = 129
    hidden: int = 300
    num_layers: int = 4
    embedding_dim: int = 15
    dropout: float = 0.0
    input_norm: str = "global"
    frame_stride: int = 1

    def __post_init__(self):
        if self.input_norm not in INPUT_NORMS:
            raise BootsepError(f"input_norm is {self.input_norm!r}; expected one of "
                               f"{', '.join(INPUT_NORMS)}")
        if not (isinstance(self.frame_stride, int) and self.frame_stride >= 1):
            raise BootsepError(f"frame_stride is {self.frame_stride!r}; expected an integer >= 1")

    def to_dict(self) -> dict:
        """Plain dict (JSON/YAML-safe), the inverse of :meth:`from_dict`."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """The inverse of :meth:`to_dict` (a checked dict: see ``saved_model.load_model``)."""
        return cls(**data)


def paper_config() -> ModelConfig:
    """The paper's network (§3.1): 4 BLSTM layers x 300 units per direction, D = 15, F = 129."""
    return ModelConfig(num_freq=129, hidden=300, num_layers=4, embedding_dim=15, dropout=0.0)


class FeatureNormalizer(nn.Module):
    """Per-frequency standardisation ``(x - mean) / std`` with the statistics kept as buffers.

    The buffers live in the state dict, so a saved model carries the training-set statistics
    it was trained with.  Until :meth:`set_stats` is called it is the identity.

    Shape:
        - input: :math:`(..., F)`; output: same.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, num_freq: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_freq))
        self.register_buffer("std", torch.ones(num_freq))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor, min_std: float = 1e-5) -> None:
        """Store training-set statistics, each ``(F,)``; ``std`` is floored at ``min_std``."""
        num_freq = self.mean.shape[0]
        mean = torch.as_tensor(mean, dtype=torch.float64).detach().cpu()
        std = torch.as_tensor(std, dtype=torch.float64).detach().cpu()
        if mean.shape != (num_freq,) or std.shape != (num_freq,):
            raise BootsepError(
                f"feature statistics must have shape ({num_freq},), "
                f"got mean {tuple(mean.shape)} and std {tuple(std.shape)}"
            )
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
            raise BootsepError("feature statistics contain NaN or infinite values")
        if (std < 0).any():
            raise BootsepError("feature standard deviations must be non-negative")
        with torch.no_grad():
            self.mean.copy_(mean)
            self.std.copy_(std.clamp(min=min_std))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std


class FeatureStats:
    """Running per-frequency mean and std over the valid frames of padded batches.

    Accumulates in float64; feed it the training set (one pass) and hand
    :meth:`mean_std` to :meth:`FeatureNormalizer.set_stats`.
    """

    def __init__(self, num_freq: int):
        self.count = 0
        self._sum = torch.zeros(num_freq, dtype=torch.float64)
        self._sumsq = torch.zeros(num_freq, dtype=torch.float64)

    def update(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> None:
        """Add a batch ``features (B, T, F)`` whose valid frames are ``[:lengths[b]]``."""
        if features.dim() != 3 or features.shape[-1] != self._sum.shape[0]:
            raise BootsepError(
                f"expected features (B, T, {self._sum.shape[0]}), got {tuple(features.shape)}"
            )
        x = features.detach().to("cpu", torch.float64)
        if lengths is not None:
            lengths = _check_lengths(lengths, x.shape[0], x.shape[1])
            valid = frames_mask(lengths, x.shape[1])
            x = x[valid]  # (sum(lengths), F)
        else:
            x = x.reshape(-1, x.shape[-1])
        self.count += x.shape[0]
        self._sum += x.sum(dim=0)
        self._sumsq += x.pow(2).sum(dim=0)

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean (F,), std (F,))`` in float32 (population std)."""
        if self.count == 0:
            raise BootsepError("no frames seen: cannot compute feature statistics")
        mean = self._sum / self.count
        var = (self._sumsq / self.count - mean.pow(2)).clamp(min=0.0)
        return mean.float(), var.sqrt().float()


class DeepClusteringBLSTM(nn.Module):
    """BLSTM stack + dense ``tanh`` layer giving unit-norm embeddings per T-F bin (§3.1).

    Padded frames never influence valid ones, and their embeddings are exactly zero, so an
    utterance's embeddings do not depend on what it is batched with. Two equivalent ways to
    run the BLSTM (same ``nn.LSTM`` weights, same outputs to float rounding, tested):

    - on CUDA, packed sequences (``enforce_sorted=False``; cuDNN's fused kernels);
    - elsewhere, :func:`padded_blstm`: each layer and direction as one fused LSTM call on the
      padded batch, the backward direction on each sequence reversed *within its length*.
      PyTorch's CPU LSTM runs packed batches of unequal lengths step by step; its backward is
      then about 5x slower than this (2 x 128 units, batch 16 x 400 frames).

    Build it with :func:`init_model` for seed-determined weights.

    Args:
        config: Network size (default :func:`paper_config`-sized).
        seed: Seed of the weight initialisation; global RNG state is left untouched.

    Shape:
        - features: :math:`(B, T, F)` log-magnitude spectrogram (eq. 2), un-normalised.
        - lengths: :math:`(B,)` long, valid frames per utterance, ``1 <= lengths <= T``.
        - returns: :math:`(B, T, F, D)`, unit norm on valid frames, zero on padded frames.
    """

    def __init__(self, config: ModelConfig | None = None, *, seed: int = 0):
        super().__init__()
        self.config = config = config if config is not None else ModelConfig()
        with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG
            self.normalizer = FeatureNormalizer(config.num_freq)
            self.blstm = nn.LSTM(
                input_size=config.num_freq,
                hidden_size=config.hidden,
                num_layers=config.num_layers,
                dropout=config.dropout if config.num_layers > 1 else 0.0,
                bidirectional=True,
                batch_first=True,
            )
            self.embed = nn.Linear(2 * config.hidden, config.num_freq * config.embedding_dim)
        self.use_packed: bool | None = None   # None: packed on CUDA, padded_blstm elsewhere
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int) -> None:
        """Re-draw all weights from a private generator seeded with ``seed``.

        Same distributions as PyTorch's defaults: LSTM weights and biases
        ``U(-1/sqrt(hidden), 1/sqrt(hidden))``, dense weights and bias
        ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.  Normaliser statistics are kept.
        """
        gen = torch.Generator().manual_seed(int(seed))
        lstm_bound = 1.0 / math.sqrt(self.config.hidden)
        dense_bound = 1.0 / math.sqrt(self.embed.in_features)
        with torch.no_grad():
            for name, param in self.named_parameters():
                bound = lstm_bound if name.startswith("blstm.") else dense_bound
                draw = torch.empty(param.shape, dtype=torch.float64).uniform_(
                    -bound, bound, generator=gen
                )
                param.copy_(draw)

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Shortcut for ``self.normalizer.set_stats(mean, std)``."""
        self.normalizer.set_stats(mean, std)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if features.dim() != 3 or features.shape[-1] != self.config.num_freq:
            raise BootsepError(
                f"expected features (B, T, {self.config.num_freq}), got {tuple(features.shape)}"
            )
        batch, frames, num_freq = features.shape
        dim = self.config.embedding_dim
        if lengths is None:
            lengths = torch.full((batch,), frames, dtype=torch.int64)
        lengths = _check_lengths(lengths, batch, frames)

        x = self.normalizer(features)
        if self.config.input_norm == "utterance":
            x = remove_utterance_mean(x, lengths)
        if not (self.use_packed if self.use_packed is not None else x.is_cuda):
            valid = frames_mask(lengths, frames).to(x.device)                # (B, T)
            emb = self._embed(padded_blstm(self.blstm, x, lengths))
            return (emb * valid[..., None].to(emb.dtype)).view(batch, frames, num_freq, dim)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        hidden, _ = self.blstm(packed)
        # The dense layer runs on the packed (valid) frames only; re-padding fills zeros.
        emb = PackedSequence(
            self._embed(hidden.data), hidden.batch_sizes, hidden.sorted_indices,
            hidden.unsorted_indices
        )
        out, _ = pad_packed_sequence(emb, batch_first=True, total_length=frames)
        return out.view(batch, frames, num_freq, dim)

    def _embed(self, hidden: torch.Tensor) -> torch.Tensor:
        """Dense ``tanh`` layer and unit norm: ``(..., 2H)`` -> ``(..., F * D)``."""
        emb = torch.tanh(self.embed(hidden))
        emb = emb.view(*hidden.shape[:-1], self.config.num_freq, self.config.embedding_dim)
        return nn.functional.normalize(emb, p=2.0, dim=-1).flatten(-2)


def remove_utterance_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``x (B, T, F)`` less each utterance's per-frequency mean over its first ``lengths[b]``
    frames (cepstral mean normalisation of log-magnitudes: a gain or a fixed per-frequency
    colouration of the recording is a constant offset per frequency, removed).

    After the global standardisation this is ``(X - mean_utt(X)) / std``: the training set's
    per-frequency std still scales it. Padded frames get the same offset (they are masked).
    """
    valid = frames_mask(lengths, x.shape[1]).to(device=x.device, dtype=x.dtype)[..., None]
    count = lengths.to(device=x.device, dtype=x.dtype)[:, None, None]
    return x - (x * valid).sum(dim=1, keepdim=True) / count


def frames_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """``(B, T)`` bool, True on the first ``lengths[b]`` frames (CPU ``lengths``)."""
    return torch.from_numpy(frames_valid(lengths.numpy(), frames))


def reverse_within_lengths(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """``(B, T)`` gather index reversing each sequence's valid frames (padding stays put)."""
    t = torch.arange(frames)[None, :]
    n = lengths[:, None]
    return torch.where(t < n, n - 1 - t, t)


def padded_blstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Run a bidirectional, batch-first ``nn.LSTM`` on padded ``x (B, T, F)`` -> ``(B, T, 2H)``.

    Equal to packing on the valid frames: the forward direction only sees padding after a
    sequence's end, and the backward direction runs on each sequence reversed within its
    length (padding again at the end), its output reversed back. Each layer and direction is
    one fused ``torch.lstm`` call with the module's own weights; inter-layer dropout as
    ``nn.LSTM`` applies it. Outputs on padded frames are meaningless (mask them).
    """
    if not (lstm.bidirectional and lstm.batch_first and lstm.bias and lstm.proj_size == 0):
        raise BootsepError("padded_blstm needs a bidirectional, batch-first LSTM with biases")
    batch, frames, _ = x.shape
    index = reverse_within_lengths(lengths, frames).to(x.device)[..., None]   # (B, T, 1)
    h0 = x.new_zeros(1, batch, lstm.hidden_size)
    for layer in range(lstm.num_layers):
        if layer and lstm.dropout and lstm.training:
            x = nn.functional.dropout(x, lstm.dropout, training=True)
        outs = []
        for suffix in ("", "_reverse"):
            weights = [getattr(lstm, f"{n}_l{layer}{suffix}")
                       for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            inp = x.gather(1, index.expand(-1, -1, x.shape[-1])) if suffix else x
            out = torch.lstm(inp, (h0, h0), weights, True, 1, 0.0, lstm.training, False, True)[0]
            outs.append(out.gather(1, index.expand(-1, -1, out.shape[-1])) if suffix else out)
        x = torch.cat(outs, dim=-1)
    return x


def frame_phase(frames: int, stride: int, phase: int) -> slice:
    """Frames ``phase, phase + stride, ...`` of ``frames``: one phase of a spectrogram for a
    model of ``frame_stride`` ``stride`` (``0 <= phase < min(stride, frames)``)."""
    if not 0 <= phase < min(stride, frames):
        raise BootsepError(f"phase {phase} of stride {stride} is outside an utterance of "
                           f"{frames} frames")
    return slice(phase, None, stride)


def embed_phases(model: DeepClusteringBLSTM, features: torch.Tensor,
                 lengths: torch.Tensor) -> torch.Tensor:
    """Embeddings ``(B, T, F, D)`` of whole spectrograms ``features (B, T, F)`` with ``lengths
    (B,)`` valid frames, for any ``frame_stride`` ``s``: each utterance's phases (frames ``p,
    p + s, ...``, :func:`frame_phase`) are embedded in one batch of ``B · s`` sequences and
    interleaved back, so frame ``t`` gets the embedding of phase ``t mod s``; padded frames are
    zero. ``s = 1``: ``model(features, lengths)``."""
    stride = model.config.frame_stride
    if stride == 1 or features.dim() != 3:   # (the model refuses other shapes in one line)
        return model(features, lengths)
    batch, frames, num_freq = features.shape
    lengths = _check_lengths(lengths, batch, frames)
    sub = -(-frames // stride)
    parts, part_len = [], []
    for p in range(min(stride, frames)):
        part = features[:, frame_phase(frames, stride, p)]
        parts.append(torch.nn.functional.pad(part, (0, 0, 0, sub - part.shape[1])))
        part_len.append(torch.clamp((lengths - p + stride - 1) // stride, min=0))
    counts = torch.cat(part_len)
    used = counts > 0                        # an utterance shorter than the stride lacks phases
    emb = model(torch.cat(parts)[used], counts[used])                  # (n, sub, F, D)
    full = emb.new_zeros((len(parts) * batch, sub, num_freq, model.config.embedding_dim))
    full[used] = emb
    out = emb.new_zeros((batch, sub * stride, num_freq, model.config.embedding_dim))
    for p in range(len(parts)):
        out[:, p::stride] = full[p * batch:(p + 1) * batch]
    return out[:, :frames]


def init_model(config: ModelConfig | None = None, seed: int = 0) -> DeepClusteringBLSTM:
    """A fresh model whose weights depend only on ``seed`` (not on global RNG state)."""
    return DeepClusteringBLSTM(config, seed=seed)


def _check_lengths(lengths: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
    """Validate ``lengths (B,)`` against ``T`` and return it as a CPU int64 tensor."""
    lengths = torch.as_tensor(lengths)
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise BootsepError(f"lengths must be an integer tensor, got {lengths.dtype}")
    lengths = lengths.to("cpu", torch.int64)
    if lengths.shape != (batch,):
        raise BootsepError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
    if batch and (int(lengths.min()) < 1 or int(lengths.max()) > frames):
        raise BootsepError(f"lengths must lie in [1, {frames}], got {lengths.tolist()}")
    return lengths
