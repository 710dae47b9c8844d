"""The front end's other model names, registered so ``/model`` and ``/model_downloaded`` know them.

They cannot run here: the diffusion family needs the diffusers backend, and ldm / zits / mat / fcf /
manga need network code this server does not ship. Each reports why through ``is_available`` and a
switch to one fails with ``ModelNotSupported`` carrying the same sentence, leaving the current model
in place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ModelNotSupported
from . import download
from .base import InpaintModel

if TYPE_CHECKING:
    from ..config import Config

_GH = "https://github.com/Sanster/models/releases/download"


class UnsupportedModel(InpaintModel):
    """A known name without an implementation; ``reason`` completes "<name> is not supported ..."."""

    reason: str = "it is not implemented here"
    weights: tuple[download.WeightFile, ...] = ()

    @classmethod
    def message(cls) -> str:
        return f"{cls.name} is not supported by this server yet ({cls.reason})"

    @classmethod
    def is_available(cls, config: Config) -> tuple[bool, str]:
        return False, cls.message()

    @classmethod
    def is_downloaded(cls, config: Config) -> bool:
        # Diffusion weights come from the HF cache, which upstream always reports as True.
        return all(download.is_downloaded(w) for w in cls.weights)

    def __init__(self, device: str, config: Config) -> None:
        raise ModelNotSupported(self.message())


_ERASE_REASON = "its network code is not bundled; use lama or cv2"


class _Erase(UnsupportedModel):
    """The erase models: small weights, acceptable on a CPU (upstream runs them there too)."""

    runs_on_cpu = True


_DIFFUSION_REASON = "diffusion models need the diffusers backend"


def _w(prefix: str, path: str, md5: str) -> download.WeightFile:
    return download.WeightFile(prefix, f"{_GH}/{path}", md5)


class LDM(_Erase):
    name, memory_mb, pad_mod, reason = "ldm", 3000, 32, _ERASE_REASON
    weights = (
        _w("LDM_ENCODE_MODEL", "add_ldm/cond_stage_model_encode.pt", "23239fc9081956a3e70de56472b3f296"),
        _w("LDM_DECODE_MODEL", "add_ldm/cond_stage_model_decode.pt", "fe419cd15a750d37a4733589d0d3585c"),
        _w("LDM_DIFFUSION_MODEL", "add_ldm/diffusion.pt", "b0afda12bf790c03aba2a7431f11d22d"),
    )


class ZITS(_Erase):
    name, memory_mb, pad_mod, min_size, pad_to_square, reason = "zits", 3000, 32, 256, True, _ERASE_REASON
    weights = (
        _w("ZITS_INPAINT_MODEL", "add_zits/zits-inpaint-0717.pt", "9978cc7157dc29699e42308d675b2154"),
        _w("ZITS_EDGE_LINE_MODEL", "add_zits/zits-edge-line-0717.pt", "55e31af21ba96bbf0c80603c76ea8c5f"),
        _w(
            "ZITS_STRUCTURE_UPSAMPLE_MODEL",
            "add_zits/zits-structure-upsample-0717.pt",
            "3d88a07211bd41b2ec8cc0d999f29927",
        ),
        _w("ZITS_WIRE_FRAME_MODEL", "add_zits/zits-wireframe-0717.pt", "a9727c63a8b48b65c905d351b21ce46b"),
    )


class MAT(_Erase):
    name, memory_mb, pad_mod, min_size, pad_to_square, reason = "mat", 3000, 512, 512, True, _ERASE_REASON
    weights = (_w("MAT_MODEL", "add_mat/Places_512_FullData_G.pth", "8ca927835fa3f5e21d65ffcb165377ed"),)


class FcF(_Erase):
    name, memory_mb, pad_mod, min_size, pad_to_square, reason = "fcf", 2000, 512, 512, True, _ERASE_REASON
    supports_hd = False
    weights = (_w("FCF_MODEL", "add_fcf/places_512_G.pth", "3323152bc01bf1c56fd8aba74435a211"),)


class Manga(_Erase):
    name, memory_mb, pad_mod, reason = "manga", 1500, 16, _ERASE_REASON
    weights = (
        _w("MANGA_INPAINTOR_MODEL", "manga/manga_inpaintor.jit", "7d8b269c4613b6b3768af714610da86c"),
        _w("MANGA_LINE_MODEL", "manga/erika.jit", "0c926d5a4af8450b0d00bc5b9a095644"),
    )


class _Diffusion(UnsupportedModel):
    pad_mod, min_size, supports_hd, reason, memory_mb = 8, 512, False, _DIFFUSION_REASON, 6000


class SD15(_Diffusion):
    name, reports_steps = "sd1.5", True


class Anything4(_Diffusion):
    name, reports_steps = "anything4", True


class RealisticVision14(_Diffusion):
    name, reports_steps = "realisticVision1.4", True


class SD2(_Diffusion):
    name, reports_steps = "sd2", True


class PaintByExample(_Diffusion):
    name, memory_mb = "paint_by_example", 8000


class InstructPix2Pix(_Diffusion):
    name = "instruct_pix2pix"


UNSUPPORTED_MODELS: tuple[type[UnsupportedModel], ...] = (
    LDM,
    ZITS,
    MAT,
    FcF,
    Manga,
    SD15,
    Anything4,
    RealisticVision14,
    SD2,
    PaintByExample,
    InstructPix2Pix,
)
