"""Observation encoders shared by every method: the identity for vector observations, a small
DrQ-style conv net for image observations (uint8 pixels + float32 proprioception, see
`ObsSpec`), and the one helper each method calls to turn a batch into network inputs.

Design (the same for every method, so no method has an image branch):
- `make_encoder(obs_spec, config)` gives `encoder.out_dim` features; actor and critic MLPs are
  built on that width. For vector tasks the encoder is the identity (no parameters), so
  vector-task results are unchanged.
- One encoder per method, shared by actor and critic, trained by the critic loss only (DrQ,
  Kostrikov et al. 2020): the actor (and any V or policy head) sees detached features. A target
  copy, updated with the method's tau, encodes next observations for the TD target.
- Pixels stay uint8 until `PixelEncoder.forward`, which shifts them (random-shift augmentation,
  replicate padding, as DrQ), scales to [-0.5, 0.5] and runs the convs.
- Inputs carry the seed dim (K, B, ...) as every network's; the conv encoder holds one seed's
  weights, so image tasks train one seed per process (`make_encoder` refuses K > 1).
Deviation from DrQ: actions at s' are sampled from the target encoder's features (one conv pass
saved per update); DrQ uses the online encoder there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from algorithms.common.networks import orthogonal_


@dataclass
class EncoderConfig:
    """Image-encoder options every method's config inherits; ignored for vector observations."""

    # Ranges live in each field's metadata (harness.schema checks them): a method's own
    # __post_init__ would hide a check here.
    # 3x3 conv widths; first conv stride 2, others 1 (DrQ)
    encoder_channels: tuple[int, ...] = field(default=(32, 32, 32, 32), metadata={"range": (1, 65_536)})
    # conv features -> Linear -> LayerNorm -> tanh, then proprioception appended
    encoder_feature_dim: int = field(default=50, metadata={"range": (1, 65_536)})
    # random-shift augmentation in pixels while training (0: off); below the image's height and width
    augment_pad: int = field(default=4, metadata={"range": (0, None)})


class VectorEncoder(nn.Module):
    """Flat float observations pass through unchanged."""

    def __init__(self, obs_dim: int):
        super().__init__()
        self.out_dim = obs_dim

    def forward(self, obs: torch.Tensor, rng=None) -> torch.Tensor:
        return obs


def split_obs(obs: torch.Tensor, image: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 rows (B, C*H*W + 4*d) -> pixels (B, C, H, W) uint8 and proprioception (B, d) float32."""
    if obs.dtype != torch.uint8:
        raise TypeError(f"image observations must stay uint8 up to the encoder, got {obs.dtype}; "
                        f"keep the dataset's dtype in replay and in Algorithm.act")
    n = math.prod(image)
    pixels = obs[:, :n].reshape(obs.shape[0], *image)
    state = obs[:, n:].contiguous().view(torch.float32)
    return pixels, state


def random_shift(pixels: torch.Tensor, pad: int, rng) -> torch.Tensor:
    """Shift each image by up to +-pad pixels, edges replicated (DrQ's pad + random crop), on uint8;
    the shifts drawn from the (one) seed's stream `rng`."""
    B, C, H, W = pixels.shape
    dev = pixels.device
    dy = rng.randint(-pad, pad + 1, (B, 1), dev)[0]
    dx = rng.randint(-pad, pad + 1, (B, 1), dev)[0]
    rows = (torch.arange(H, device=dev) + dy).clamp(0, H - 1)  # (B, H)
    cols = (torch.arange(W, device=dev) + dx).clamp(0, W - 1)  # (B, W)
    b = torch.arange(B, device=dev)[:, None, None, None]
    c = torch.arange(C, device=dev)[None, :, None, None]
    return pixels[b, c, rows[:, None, :, None], cols[:, None, None, :]]


class PixelEncoder(nn.Module):
    """Conv features of the image, concatenated with the proprioceptive vector."""

    def __init__(self, image: tuple[int, int, int], vector_dim: int, channels: tuple[int, ...],
                 feature_dim: int, augment_pad: int):
        super().__init__()
        self.image, self.augment_pad = tuple(image), augment_pad
        layers: list[nn.Module] = []
        c_in = image[0]
        for i, c_out in enumerate(channels):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2 if i == 0 else 1), nn.ReLU()]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, *image)).numel()
        self.head = nn.Sequential(nn.Linear(flat, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                orthogonal_(m.weight, nn.init.calculate_gain("relu"))
                nn.init.zeros_(m.bias)
        self.out_dim = feature_dim + vector_dim

    def forward(self, obs: torch.Tensor, rng=None) -> torch.Tensor:
        """Features (1, B, out_dim) of one seed's rows (1, B, row); randomly shifted with `rng`."""
        pixels, state = split_obs(obs[0], self.image)
        if rng is not None and self.augment_pad:
            pixels = random_shift(pixels, self.augment_pad, rng)
        x = pixels.float().div_(255.0).sub_(0.5)
        return torch.cat([self.head(self.convs(x).flatten(1)), state], -1).unsqueeze(0)


def make_encoder(obs_spec, config: EncoderConfig, rng) -> nn.Module:
    """The encoder for `obs_spec` (an `ObsSpec`): identity for vectors, conv net for images
    (initialized from the seed's stream of `rng`, a `SeedStreams` of one seed)."""
    if obs_spec.image is None:
        return VectorEncoder(obs_spec.shape[0])
    if len(rng) > 1:
        raise ValueError(f"image observations train one seed per process (the pixel encoder has no seed dim), "
                         f"got {len(rng)} seeds; set seeds_per_process=1")
    return rng.build(lambda: PixelEncoder(obs_spec.image, obs_spec.vector_dim, tuple(config.encoder_channels),
                                          config.encoder_feature_dim, config.augment_pad))[0]


def encode_batch(encoder: nn.Module, encoder_target: nn.Module, batch, rng) -> tuple[torch.Tensor, torch.Tensor]:
    """Network inputs for an update: features of `batch.obs` (gradients reach the encoder; detach
    them for actor / value losses) and of `batch.next_obs` from the target encoder (no gradients).
    Both are augmented (random shifts from `rng`) when the encoder augments."""
    z = encoder(batch.obs, rng)
    with torch.no_grad():
        z_next = encoder_target(batch.next_obs, rng)
    return z, z_next
