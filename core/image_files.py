"""Reading image and mask files: every pixel decoded, or one UserError naming the file; writing PNGs.

No file is silently misread: a truncated file is an error (libjpeg and OpenCV fill the missing part with
grey and only print a warning), TIFFs are read with tifffile (OpenCV 5 returns the red channel three
times for RGB frames whose header claims one grey channel, as the original CVC-ClinicDB TIFFs do), and a
mask that would read as empty or that is colour-coded is refused instead of training on all-background.

A mask drawn on a transparent layer (RGB all zero, the drawing only in its alpha channel, as some
annotation tools save it) is read from its alpha channel: whenever the colour channels are all zero and the
alpha channel is not constant. Any other mask is read from its grey or RGB values, alpha ignored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image, ImageFile, ImageOps

from core.environment import positive_number

TIFF_SUFFIXES = (".tif", ".tiff")
# EXIF orientations 5-8 turn the picture by 90 degrees (cv2.imread and exif_transpose apply them).
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
_EXIF_ORIENTATION = 0x0112


# Pixels a file may hold before it is decoded (its header says how many): a small file can declare a huge
# picture (a tiled 40000x40000 TIFF of 1.7 MB decodes to 4.5 GiB). Set in megapixels.
MAX_MEGAPIXELS_ENV = "POLYP_KD_TUNE_MAX_MEGAPIXELS"
DEFAULT_MAX_MEGAPIXELS = 50.0


class ImageFileError(ValueError):
    """A file that cannot be decoded completely; core.data turns it into a UserError."""


class ImageTooLargeError(ImageFileError):
    """A file whose header declares more pixels than the limit: refused before anything is decoded."""


def max_pixels() -> int:
    """The pixel limit: $POLYP_KD_TUNE_MAX_MEGAPIXELS megapixels (default 50); a value that is not a number
    > 0 is a UserError (a setting's mistake, not one file's)."""
    return int(positive_number(MAX_MEGAPIXELS_ENV, DEFAULT_MAX_MEGAPIXELS, "megapixels") * 1_000_000)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as read_image returns it, from the file's header only: cheap enough for every
    file at each run's start. A damaged body is found only by decoding (read_image, `core.data check`)."""
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                return int(page.imagewidth), int(page.imagelength)
        with _header_only(), Image.open(path) as image:
            width, height = image.size
            if _orientation(image) in _SWAPPING_ORIENTATIONS:
                return height, width
            return width, height
    except Exception as err:  # noqa: BLE001 - every decoder has its own exception types; all mean "not readable"
        raise ImageFileError(_reason(err)) from None


def _orientation(image: Image.Image) -> int | None:
    """The EXIF orientation, from what precedes the pixels: Pillow's getexif() on a PNG decodes every pixel
    to look for an eXIf chunk after them, so a PNG's is read only where it comes first."""
    if image.format != "PNG":
        return image.getexif().get(_EXIF_ORIENTATION)
    raw = image.info.get("exif")
    if not raw:
        return None
    exif = Image.Exif()
    exif.load(raw)
    return exif.get(_EXIF_ORIENTATION)


@contextlib.contextmanager
def _header_only() -> Iterator[None]:
    # Pillow refuses to open a file declaring over 179 MP (a decompression bomb) before telling its size;
    # reading the header allocates nothing, and decode() compares the size with this project's own limit.
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def decode(path: Path) -> np.ndarray:
    """Every pixel of the file: HxW or HxWxC (C = 2, 3 or 4; RGB order), uint8 or uint16."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Some library switched Pillow to filling truncated files with grey: the check below would pass.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True; truncated files would go unnoticed")
    width, height = image_size(path)  # the header only: nothing is allocated for the pixels yet
    if width * height > max_pixels():
        raise ImageTooLargeError(
            f"its header declares {width}x{height} pixels ({width * height / 1e6:.0f} MP), over the "
            f"{max_pixels() / 1e6:g} MP limit; resize it, or raise ${MAX_MEGAPIXELS_ENV}"
        )
    try:
        array = _decode_tiff(path) if path.suffix.lower() in TIFF_SUFFIXES else _decode_pil(path)
    except ImageFileError:
        raise
    except MemoryError:  # this picture only: its caller skips it (predict) or names it (training data)
        raise ImageFileError(
            f"not enough memory to decode its {width}x{height} pixels; resize it, or lower "
            f"${MAX_MEGAPIXELS_ENV} to refuse such files before decoding"
        ) from None
    except Exception as err:  # noqa: BLE001 - as in image_size(): any decoder's error means "not readable"
        raise ImageFileError(_reason(err)) from None
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype.kind == "u" and array.dtype.itemsize in (1, 2):
        array = array.astype(f"u{array.dtype.itemsize}", copy=False)  # native byte order
    else:
        raise ImageFileError(f"{array.dtype} pixels are not supported; save it with 8-bit (or 16-bit) channels")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] > 4):
        raise ImageFileError(f"shape {array.shape} is not one picture; save a single grey or RGB picture")
    return array


def to_rgb8(array: np.ndarray) -> np.ndarray:
    """A decoded picture as RGB uint8 HxWx3 (alpha dropped, grey repeated, 16-bit scaled down)."""
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2)
    if array.shape[2] == 2:  # grey + alpha
        return np.repeat(array[..., :1], 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


def to_binary_mask(array: np.ndarray) -> np.ndarray:
    """A decoded mask as uint8 HxW in {0, 1}. A mask holding only 0 and 1 is binary as it is (many
    public datasets ship masks so); any other is polyp above half intensity (JPEG-safe)."""
    full_scale = np.iinfo(array.dtype).max
    if _drawn_in_alpha(array):
        array = array[..., -1]
    if array.ndim == 3:
        colour = array[..., :3] if array.shape[2] >= 3 else array[..., :1]
        # JPEG moves grey pixels' channels apart by a few levels only; a colour-coded mask by far more.
        if colour.shape[2] == 3 and int(np.ptp(colour, axis=2).max()) > full_scale // 4:
            raise ImageFileError(
                "its red, green and blue channels differ (a colour-coded mask?); save it "
                "as a grey mask, polyp 255 (or 1) on background 0"
            )
        grey = colour[..., 0]
    else:
        grey = array
    peak = int(grey.max())
    mask = grey if peak <= 1 else grey > full_scale // 2
    mask = mask.astype(np.uint8)
    if peak > 0 and not mask.any():
        raise ImageFileError(
            f"no pixel is above half intensity (the brightest is {peak} of {full_scale}), so "
            f"it would read as all background; save polyp pixels as {full_scale} (or 1 with "
            f"background 0)"
        )
    return mask


def _drawn_in_alpha(array: np.ndarray) -> bool:
    """Grey+alpha or RGBA whose colour is all zero and whose alpha varies: the drawing is the alpha."""
    if array.ndim != 3 or array.shape[2] not in (2, 4):
        return False
    alpha = array[..., -1]
    return not array[..., :-1].any() and int(alpha.min()) != int(alpha.max())


def write_png(path: Path, image: np.ndarray) -> None:
    """A grey or BGR uint8 picture as PNG at `path`; a failure to write it raises (cv2.imwrite would
    return False, silently, on a full disk and on some non-ASCII paths)."""
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError(f"OpenCV failed to encode {path.name}")
    path.write_bytes(png.tobytes())


def _decode_pil(path: Path) -> np.ndarray:
    with Image.open(path) as opened:
        opened.load()  # decodes every byte: a truncated file raises OSError here
        image: Image.Image = opened
        if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:  # as cv2.imread did; exif_transpose copies always
            image = ImageOps.exif_transpose(image)
        if image.mode in ("1", "L", "RGB", "RGBA", "LA", "I;16"):
            return np.asarray(image)
        if image.mode == "I":
            values = np.asarray(image)
            if values.min() < 0 or values.max() > 65535:
                raise ImageFileError("32-bit pixel values out of 16-bit range; save it with 8-bit channels")
            return values.astype(np.uint16)
        if image.mode in ("P", "PA"):  # a palette picture: its colours, not its palette indices
            return np.asarray(image.convert("RGBA" if "transparency" in image.info or image.mode == "PA" else "RGB"))
        if image.mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La", "I;16B", "I;16L"):
            return np.asarray(image.convert("RGB" if image.mode not in ("I;16B", "I;16L") else "I;16"))
        raise ImageFileError(f"Pillow mode {image.mode} is not supported; save it as 8-bit grey or RGB")


def _decode_tiff(path: Path) -> np.ndarray:
    # The pixel data is read as stored: the photometric tag decides only how to map it to RGB, so a
    # 3-sample page mislabelled MINISBLACK keeps its three distinct channels.
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        array = page.asarray()
        if page.axes.startswith("S"):  # planar configuration: samples first
            array = np.moveaxis(array, 0, -1)
        photometric = page.photometric
        if photometric == tifffile.PHOTOMETRIC.PALETTE:
            # colormap is 3 x 2**bits of 16-bit values
            if page.colormap is None:
                raise ImageFileError("palette TIFF without a colour map; save it as RGB")
            return (page.colormap.T[array] >> 8).astype(np.uint8)
        if photometric == tifffile.PHOTOMETRIC.MINISWHITE and array.ndim == 2:
            return np.iinfo(array.dtype).max - array if array.dtype != bool else ~array
        if photometric not in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.YCBCR):
            # tifffile keeps a value it has no PHOTOMETRIC member for as a plain int
            name = getattr(photometric, "name", photometric)
            raise ImageFileError(f"TIFF photometric {name} is not supported; save it as RGB")
        return array


def _reason(err: Exception) -> str:
    text = " ".join(str(err).split()) or err.__class__.__name__
    return text if len(text) <= 160 else text[:157] + "..."
