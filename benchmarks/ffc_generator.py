"""A random-weight model with Big-LaMa's architecture and size, for GPU benchmarks without its weights.

Why: the GPU benchmark must measure a model of the real cost (about 51 M parameters, FFT convolutions
at every resolution) without downloading ``big-lama.pt``. Written from the published architecture
(LaMa's "Fast Fourier Convolution" ResNet generator as configured for Big-LaMa): a 7x7 stem, three
stride-2 downsamplings (64 -> 128 -> 256 -> 512 channels), 18 residual blocks of fast Fourier
convolutions that keep three quarters of their channels on the global (spectral) branch, three
transposed-convolution upsamplings and a 7x7 head with a sigmoid. No local Fourier unit, no gating.

:class:`InpaintWrapper` gives it the ``big-lama.pt`` contract of ``lama_cleaner/models/lama.py``:
``forward(image[1,3,H,W] in 0..1, mask[1,1,H,W] in {0,1}) -> [1,3,H,W] in 0..1``, the masked part from
the generator and the rest from the image. :func:`traced_big_lama` returns it as TorchScript, which
``LAMA_MODEL_URL=<path>`` then loads like the real file.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn


def _split(channels: int, ratio: float) -> tuple[int, int]:
    """(local, global) channel counts for a global ratio, as the FFC paper splits them."""
    global_channels = int(channels * ratio)
    return channels - global_channels, global_channels


class FourierUnit(nn.Module):
    """A 1x1 convolution, batch norm and ReLU applied to the real and imaginary parts of the 2-D FFT."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels * 2, out_channels * 2, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels * 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        spectrum = torch.fft.rfftn(x.float(), dim=(-2, -1), norm="ortho")
        parts = torch.stack((spectrum.real, spectrum.imag), dim=2)  # (b, c, 2, h, w//2+1)
        parts = parts.reshape(batch, -1, height, spectrum.shape[-1])
        parts = self.relu(self.bn(self.conv(parts)))
        parts = parts.reshape(batch, -1, 2, height, spectrum.shape[-1])
        spectrum = torch.complex(parts[:, :, 0], parts[:, :, 1])
        return torch.fft.irfftn(spectrum, s=(height, width), dim=(-2, -1), norm="ortho")


class SpectralTransform(nn.Module):
    """The global branch: (downsample), 1x1 reduce, Fourier unit with a residual, 1x1 expand."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        half = out_channels // 2
        self.downsample = nn.AvgPool2d(kernel_size=2, stride=2) if stride == 2 else nn.Identity()
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, half, kernel_size=1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True)
        )
        self.fourier = FourierUnit(half, half)
        self.expand = nn.Conv2d(half, out_channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(self.downsample(x))
        return self.expand(x + self.fourier(x))


class FFCBlock(nn.Module):
    """A fast Fourier convolution with batch norm and ReLU on (local, global) channel groups.

    Four paths: local->local, global->local and local->global are ordinary convolutions; global->global
    is the :class:`SpectralTransform`. A path whose input or output group is empty does not exist."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        ratio_in: float,
        ratio_out: float,
        stride: int = 1,
        padding: int = 0,
        padding_mode: str = "reflect",
    ) -> None:
        super().__init__()
        in_l, in_g = _split(in_channels, ratio_in)
        out_l, out_g = _split(out_channels, ratio_out)
        self.in_g = in_g
        self.out_l, self.out_g = out_l, out_g

        def conv(cin: int, cout: int) -> nn.Module | None:
            if cin == 0 or cout == 0:
                return None
            return nn.Conv2d(cin, cout, kernel_size, stride, padding, bias=False, padding_mode=padding_mode)

        self.l2l, self.l2g, self.g2l = conv(in_l, out_l), conv(in_l, out_g), conv(in_g, out_l)
        self.g2g = SpectralTransform(in_g, out_g, stride) if in_g and out_g else None
        self.bn_l = nn.BatchNorm2d(out_l) if out_l else nn.Identity()
        self.bn_g = nn.BatchNorm2d(out_g) if out_g else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x_l: torch.Tensor, x_g: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        out_l: torch.Tensor | None = None
        out_g: torch.Tensor | None = None
        if self.out_l:
            out_l = self.l2l(x_l) if self.l2l is not None else None
            if self.g2l is not None and x_g is not None:
                out_l = self.g2l(x_g) if out_l is None else out_l + self.g2l(x_g)
            out_l = self.act(self.bn_l(out_l))
        if self.out_g:
            out_g = self.l2g(x_l) if self.l2g is not None else None
            if self.g2g is not None and x_g is not None:
                out_g = self.g2g(x_g) if out_g is None else out_g + self.g2g(x_g)
            out_g = self.act(self.bn_g(out_g))
        assert out_l is not None
        return out_l, out_g


class FFCResidual(nn.Module):
    """Two 3x3 FFC blocks with an identity shortcut on both channel groups."""

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__()
        self.first = FFCBlock(channels, channels, 3, ratio_in=ratio, ratio_out=ratio, padding=1)
        self.second = FFCBlock(channels, channels, 3, ratio_in=ratio, ratio_out=ratio, padding=1)

    def forward(self, x_l: torch.Tensor, x_g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y_l, y_g = self.first(x_l, x_g)
        y_l, y_g = self.second(y_l, y_g)
        assert y_g is not None
        return x_l + y_l, x_g + y_g


class FFCResNetGenerator(nn.Module):
    """Big-LaMa's generator: 4 input channels (masked RGB + mask), 3 output channels in 0..1."""

    def __init__(
        self, input_nc: int = 4, output_nc: int = 3, ngf: int = 64, n_downsampling: int = 3, n_blocks: int = 18
    ) -> None:
        super().__init__()
        ratio = 0.75
        self.stem = FFCBlock(input_nc, ngf, 7, ratio_in=0.0, ratio_out=0.0, padding=3)
        self.down = nn.ModuleList()
        channels = ngf
        for i in range(n_downsampling):
            last = i == n_downsampling - 1
            self.down.append(
                FFCBlock(channels, channels * 2, 3, ratio_in=0.0, ratio_out=ratio if last else 0.0, stride=2, padding=1)
            )
            channels *= 2
        self.blocks = nn.ModuleList(FFCResidual(channels, ratio) for _ in range(n_blocks))
        up: list[nn.Module] = []
        for _ in range(n_downsampling):
            up += [
                nn.ConvTranspose2d(channels, channels // 2, 3, stride=2, padding=1, output_padding=1),
                nn.BatchNorm2d(channels // 2),
                nn.ReLU(inplace=True),
            ]
            channels //= 2
        self.up = nn.Sequential(*up)
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_l, x_g = self.stem(x, None)
        for block in self.down:
            x_l, x_g = block(x_l, x_g)
        assert x_g is not None
        for residual in self.blocks:
            x_l, x_g = residual(x_l, x_g)
        return self.head(self.up(torch.cat([x_l, x_g], dim=1)))


class InpaintWrapper(nn.Module):
    """``big-lama.pt``'s contract: the generator's output inside the mask, the image outside."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        predicted = self.generator(torch.cat([image * (1 - mask), mask], dim=1))
        return mask * predicted + (1 - mask) * image


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def traced_big_lama(
    size: int = 512, device: str = "cpu", seed: int = 0, **generator_kwargs: int
) -> torch.jit.ScriptModule:
    """The wrapped generator with random weights, in eval mode, traced at ``size`` x ``size`` (it runs at
    any multiple of 8 afterwards: nothing in it depends on the traced shape)."""
    torch.manual_seed(seed)
    model = InpaintWrapper(FFCResNetGenerator(**generator_kwargs)).eval().to(device)
    image = torch.rand(1, 3, size, size, device=device)
    mask = (torch.rand(1, 1, size, size, device=device) > 0.9).float()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is big-lama.pt's format
        return torch.jit.trace(model, (image, mask), check_trace=False)
