"""A deterministic generator of VAD-like synthetic parts: the built-in demo dataset.

A part is a brass disk with a textured surface and a lighter ceramic centre, two solder dots on
the centre, two pins below the disk and two wires joining each solder dot to its pin. Good parts
vary: position jitter, wire shape, texture, lighting. Defects are logical (missing wire, wire off
its solder dot, bent wire, misplaced solder) and structural (crack, burn mark, pollution), small
and large. Some defect types appear only in test (`unseen`), as in VAD's bad_unseen_defects.

The output is the VAD layout (train/good, train/bad, test/good, test/bad, test/bad_unseen_defects)
plus `defects.csv` (image_id, defect_type), `segmentation.png` (one static map of integer labels
for all images, see `SEGMENTS`) and `manifest.json` (the configuration, the file list and each
file's SHA-256; a folder whose manifest matches the configuration and whose files match their
checksums is not written again, a damaged one is written again, `demo_problems`).

Example:
    >>> from segad.ingestion.demo import DemoConfig, write_demo
    >>> write_demo("/tmp/demo", DemoConfig(n_train_good=4, n_train_bad=2, n_test_good=2,
    ...            n_test_bad=2, n_test_unseen=2, image_size=64))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pydantic.dataclasses
from PIL import Image, ImageDraw, ImageFilter
from pydantic import Field

from segad.config import PARAMS
from segad.ingestion.demo_texture import TEXTURE_SEEN, TEXTURE_SEGMENTS, TEXTURE_UNSEEN, render_texture
from segad.logs import progress
from segad.storage.files import check_owned, file_sha256, replace_folder, staging_folder
from segad.versions import jsonable

# Segment labels of the static map, in the style of VAD's 7-segment map.
SEGMENTS = {0: "background", 1: "disk_ring", 2: "ceramic_centre", 3: "solder_dots", 4: "wires", 5: "pins"}
LOGICAL_DEFECTS = ("missing_wire", "wire_off_dot", "bent_wire", "misplaced_solder")
STRUCTURAL_DEFECTS = ("crack", "burn", "pollution")
logger = logging.getLogger(__name__)

FORMAT_VERSION = 2


DefectType = Literal["missing_wire", "wire_off_dot", "bent_wire", "misplaced_solder", "crack", "burn", "pollution"]
Count = Annotated[int, Field(ge=0)]


@pydantic.dataclasses.dataclass(config=PARAMS)
class DemoConfig:
    """Sizes and randomness of the demo (the `demo` params block). Counts are images; image_size
    is pixels (square); defect types are of LOGICAL_DEFECTS + STRUCTURAL_DEFECTS."""

    n_train_good: Count = 200
    n_train_bad: Count = 100
    n_test_good: Count = 100
    n_test_bad: Count = 80
    n_test_unseen: Count = 40
    image_size: Annotated[int, Field(gt=0)] = 256
    seed: int = 0
    seen_defects: tuple[DefectType, ...] = ("missing_wire", "wire_off_dot", "misplaced_solder", "crack", "pollution")
    unseen_defects: tuple[DefectType, ...] = ("bent_wire", "burn")
    jitter_px: Annotated[float, Field(ge=0.0)] = 3.0  # max position jitter of the whole part, in pixels at 256 px
    # unaligned variant (0 = off, the aligned demo): max rotation of the part about its centre in
    # degrees, and max relative scale change (0.2: scale in [0.8, 1.2]); e.g. jitter_px 40,
    # rotation_deg 180, scale_jitter 0.2. A static map no longer fits: no segmentation.png is
    # written (`ships_map`), and the run segments the parts as for any dataset without a map.
    rotation_deg: Annotated[float, Field(ge=0.0, le=180.0)] = 0.0
    scale_jitter: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    # `texture`: the textured-surface variant (segad.ingestion.demo_texture): tall image_size x
    # 2 image_size images of a uniform surface with small defects; seen/unseen_defects are then
    # its own (scratch, pit / stain). It ships no segmentation.png: like a user's surface images,
    # it is segmented automatically.
    surface: Literal["part", "texture"] = "part"


#: The demo of conf/base/parameters_ingestion.yml (an immutable default argument).
DEFAULT_DEMO = DemoConfig()


@dataclass
class _Part:
    """Geometry of one part in pixels (x, y)."""

    centre: np.ndarray
    radius: float
    inner_radius: float
    dots: list[np.ndarray]
    pins: list[np.ndarray]  # top-centre of each pin
    pin_size: tuple[float, float]
    bends: list[np.ndarray] = field(default_factory=list)  # wire control points


def nominal_part(size: int) -> _Part:
    """The part without jitter: also the geometry of the static segmentation map."""
    s = size / 256.0
    centre = np.array([128.0, 112.0]) * s
    return _Part(
        centre=centre,
        radius=80 * s,
        inner_radius=48 * s,
        dots=[centre + np.array([-22.0, 18.0]) * s, centre + np.array([24.0, 22.0]) * s],
        pins=[np.array([98.0, 206.0]) * s, np.array([158.0, 206.0]) * s],
        pin_size=(10 * s, 38 * s),
        bends=[np.array([92.0, 172.0]) * s, np.array([164.0, 172.0]) * s],
    )


def segmentation_map(size: int) -> np.ndarray:
    """Static segment map (size, size) uint8 with labels of `SEGMENTS`, drawn on the nominal part.

    Dots, wires and pins are drawn wider than on the images so the jitter of good parts stays inside.
    """
    part = nominal_part(size)
    s = size / 256.0
    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    _disk(draw, part.centre, part.radius, 1)
    _disk(draw, part.centre, part.inner_radius, 2)
    for dot, pin, bend in zip(part.dots, part.pins, part.bends):
        draw.line(_wire_points(dot, bend, pin), fill=4, width=max(1, int(14 * s)))
    for pin in part.pins:
        _pin(draw, pin, (part.pin_size[0] + 8 * s, part.pin_size[1] + 6 * s), 5)
    for dot in part.dots:
        _disk(draw, dot, 11 * s, 3)
    return np.asarray(image, dtype=np.uint8).copy()


def render_part(
    rng: np.random.Generator,
    size: int,
    defect: str | None = None,
    jitter_px: float = 3.0,
    rotation_deg: float = 0.0,
    scale_jitter: float = 0.0,
) -> Image.Image:
    """One RGB part; `defect` is None (good) or one of LOGICAL_DEFECTS + STRUCTURAL_DEFECTS.

    `jitter_px` shifts the part (pixels at 256 px); `rotation_deg` / `scale_jitter` > 0 then rotate
    and scale the rendered image about the part centre (uniform in +-rotation_deg and
    1 +- scale_jitter; uncovered corners take the background colour). With both 0 no random
    number is drawn for them, so the aligned demo is unchanged.
    """
    s = size / 256.0
    part = nominal_part(size)
    shift = rng.uniform(-jitter_px, jitter_px, 2) * s
    part.centre = part.centre + shift
    part.dots = [d + shift + rng.normal(0, 0.6, 2) * s for d in part.dots]
    part.pins = [p + shift for p in part.pins]
    part.bends = [b + shift + rng.normal(0, 3.0, 2) * s for b in part.bends]
    severity = rng.choice([0.5, 1.0])  # small or large defect

    if defect == "misplaced_solder":
        k = rng.integers(2)
        part.dots[k] = part.dots[k] + _random_direction(rng) * (8 + 6 * severity) * s
    wire_ends = [d.copy() for d in part.dots]
    if defect == "wire_off_dot":
        k = rng.integers(2)
        wire_ends[k] = wire_ends[k] + _random_direction(rng) * (9 + 6 * severity) * s
    if defect == "bent_wire":
        k = rng.integers(2)
        part.bends[k] = part.bends[k] + np.array([(-1) ** k * (16 + 14 * severity), -10]) * s
    missing = int(rng.integers(2)) if defect == "missing_wire" else None

    # Background with a lighting gradient, then the disk with a brass texture.
    gain = rng.uniform(0.9, 1.1)
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, 2 * np.pi)
    light = gain * (1 + 0.08 * (np.cos(angle) * xx + np.sin(angle) * yy - 0.5))
    canvas = np.empty((size, size, 3), np.float32)
    canvas[:] = np.array([55, 58, 62], np.float32)
    noise = rng.normal(0, 1, (size // 4 + 1, size // 4 + 1)).repeat(4, 0).repeat(4, 1)[:size, :size]
    fine = rng.normal(0, 1, (size, size))
    disk = _mask(size, lambda d: _disk(d, part.centre, part.radius, 255))
    centre = _mask(size, lambda d: _disk(d, part.centre, part.inner_radius, 255))
    canvas[disk] = np.array([178, 146, 72], np.float32) + (6 * noise[disk] + 4 * fine[disk])[:, None]
    canvas[centre] = np.array([214, 208, 196], np.float32) + (3 * fine[centre])[:, None]
    canvas *= light[..., None]
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)

    for pin in part.pins:
        _pin(draw, pin, part.pin_size, (170, 172, 178))
    for wire, (end, bend, pin) in enumerate(zip(wire_ends, part.bends, part.pins)):
        if wire != missing:
            colour = (150, 30, 30) if wire == 0 else (30, 30, 30)
            draw.line(_wire_points(end, bend, pin), fill=colour, width=max(1, int(3 * s)))
    for dot in part.dots:
        _disk(draw, dot, 6 * s, (196, 198, 204))

    if defect == "crack":
        start = part.centre + _random_direction(rng) * rng.uniform(0.2, 0.6) * part.radius
        points = [start]
        heading = _random_direction(rng)
        for _ in range(int(6 + 8 * severity)):
            heading = heading + rng.normal(0, 0.5, 2)
            heading /= np.linalg.norm(heading)
            points.append(points[-1] + heading * 4 * s)
        draw.line([tuple(p) for p in points], fill=(40, 32, 24), width=max(1, int(2 * s)))
    if defect == "burn":
        spot = part.centre + _random_direction(rng) * rng.uniform(0, 0.7) * part.radius
        blob = Image.new("L", (size, size), 0)
        _disk(ImageDraw.Draw(blob), spot, (6 + 8 * severity) * s, 255)
        alpha = np.asarray(blob.filter(ImageFilter.GaussianBlur(4 * s)), np.float32)[..., None] / 255 * 0.85
        image = Image.fromarray(
            (np.asarray(image, np.float32) * (1 - alpha) + alpha * np.array([48, 30, 18])).astype(np.uint8)
        )
    if defect == "pollution":
        for _ in range(int(3 + 5 * severity)):
            spot = part.centre + rng.normal(0, 0.6, 2) * part.radius
            spot_colour = tuple(int(c) for c in rng.integers(60, 255, 3))
            _disk(draw, spot, rng.uniform(1.5, 3.5) * s, spot_colour)
    if rotation_deg > 0 or scale_jitter > 0:
        image = _rotate_scale(
            image,
            part.centre,
            rng.uniform(-rotation_deg, rotation_deg),
            rng.uniform(1 - scale_jitter, 1 + scale_jitter),
            gain,
        )
    return image


def _rotate_scale(image: Image.Image, centre: np.ndarray, degrees: float, scale: float, gain: float) -> Image.Image:
    """`image` rotated by `degrees` and scaled by `scale` about `centre` (bilinear)."""
    theta = np.deg2rad(degrees)
    # output (x, y) samples the input at centre + R(-theta) (p - centre) / scale
    cos, sin = np.cos(theta) / scale, np.sin(theta) / scale
    cx, cy = centre
    matrix = (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy)
    fill = tuple(int(round(c * gain)) for c in (55, 58, 62))
    return image.transform(image.size, Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR, fillcolor=fill)


def demo_plan(config: DemoConfig) -> list[tuple[str, str | None]]:
    """(image_id, defect_type or None) of every image the demo writes, in writing order."""
    seen: tuple[str, ...] = config.seen_defects
    unseen: tuple[str, ...] = config.unseen_defects
    if config.surface == "texture":
        seen, unseen = TEXTURE_SEEN, TEXTURE_UNSEEN
    plan = (
        [("train/good", None)] * config.n_train_good
        + [("train/bad", seen[i % len(seen)]) for i in range(config.n_train_bad)]
        + [("test/good", None)] * config.n_test_good
        + [("test/bad", seen[i % len(seen)]) for i in range(config.n_test_bad)]
        + [("test/bad_unseen_defects", unseen[i % len(unseen)]) for i in range(config.n_test_unseen if unseen else 0)]
    )
    counters: dict[str, int] = {}
    images: list[tuple[str, str | None]] = []
    for folder, defect in plan:
        number = counters[folder] = counters.get(folder, -1) + 1
        images.append((f"{folder}/{number:04d}.png", defect))
    return images


#: Largest position jitter (pixels at 256 px) the shipped static map holds the parts within.
MAP_JITTER_PX = 3.0


def ships_map(config: DemoConfig) -> bool:
    """True when the parts are in register, so the demo ships its static ``segmentation.png``: the
    part variant without rotation or scale change and with at most `MAP_JITTER_PX` of jitter."""
    return (
        config.surface == "part"
        and config.rotation_deg == 0
        and config.scale_jitter == 0
        and config.jitter_px <= MAP_JITTER_PX
    )


def demo_files(config: DemoConfig) -> list[str]:
    """Every file the demo writes for `config`, as sorted POSIX paths relative to its root."""
    shipped = ["segmentation.png"] if ships_map(config) else []
    return sorted([image_id for image_id, _ in demo_plan(config)] + ["defects.csv", "manifest.json", *shipped])


def write_demo(root: str | Path, config: DemoConfig = DEFAULT_DEMO) -> Path:
    """Write the demo under `root` (VAD layout + defects.csv + manifest.json, + segmentation.png
    when the parts are in register: `ships_map`).

    Skips the work when `root/manifest.json` already records the same configuration. Writes only
    into a missing or empty folder, or one that holds a demo with its own manifest and no other
    file: anything else raises `NotOwnedError` naming the folder, and nothing is changed. Writes
    into a temporary sibling folder and swaps it into place, so an interrupted run leaves nothing
    half written.
    """
    root = Path(root)
    manifest = {
        "format_version": FORMAT_VERSION,
        "config": jsonable(asdict(config)),
        "segments": TEXTURE_SEGMENTS if config.surface == "texture" else SEGMENTS,
        "files": demo_files(config),
    }
    existing = _manifest(root)
    if (
        existing is not None
        and existing.get("config") == manifest["config"]
        and existing.get("format_version") in (1, FORMAT_VERSION)
    ):
        problems = demo_problems(root, existing)
        if not problems:
            return root
        logger.warning("%s: the demo does not match its manifest (%s): writing it again", root, "; ".join(problems))
    check_owned(root, _owned_files(existing), "the demo generator")
    staging = staging_folder(root)
    try:
        rng = np.random.default_rng(config.seed)
        types = ["image_id,defect_type"]
        for image_id, defect in progress(demo_plan(config), desc="writing demo", unit="img"):
            (staging / image_id).parent.mkdir(parents=True, exist_ok=True)
            image_rng = np.random.default_rng(rng.integers(2**63))
            if config.surface == "texture":
                image = render_texture(image_rng, config.image_size, defect)
            else:
                image = render_part(
                    image_rng, config.image_size, defect, config.jitter_px, config.rotation_deg, config.scale_jitter
                )
            image.save(staging / image_id)
            if defect is not None:
                types.append(f"{image_id},{defect}")
        for folder in ("train/good", "train/bad", "test/good", "test/bad", "test/bad_unseen_defects"):
            (staging / folder).mkdir(parents=True, exist_ok=True)
        (staging / "defects.csv").write_text("\n".join(types) + "\n")
        if ships_map(config):
            Image.fromarray(segmentation_map(config.image_size)).save(staging / "segmentation.png")
        manifest["sha256"] = {
            name: file_sha256(staging / name) for name in manifest["files"] if name != "manifest.json"
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
        replace_folder(staging, root)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return root


def demo_problems(root: str | Path, manifest: dict) -> list[str]:
    """What differs between the demo at `root` and its `manifest`: files missing or changed
    (their SHA-256, ``sha256`` in the manifest); empty when the demo is intact. A manifest without
    checksums (written before they were recorded) cannot be verified and counts as a problem, so
    that demo is written once more."""
    recorded = manifest.get("sha256")
    if not isinstance(recorded, dict):
        return ["no file checksums recorded"]
    root = Path(root)
    missing = sorted(name for name in recorded if not (root / name).is_file())
    changed = sorted(name for name in recorded if name not in missing and file_sha256(root / name) != recorded[name])
    problems = []
    if missing:
        problems.append(f"{len(missing)} file(s) missing, e.g. {missing[:3]}")
    if changed:
        problems.append(f"{len(changed)} file(s) changed, e.g. {changed[:3]}")
    return problems


def _manifest(root: Path) -> dict | None:
    """The demo manifest at `root`, or None when there is none (or it is not the demo's)."""
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict) or not {"format_version", "config", "segments"} <= set(manifest):
        return None
    return manifest


def _owned_files(manifest: dict | None) -> list[str] | None:
    """Files a demo manifest says the demo wrote; format 1 manifests are rebuilt from their config."""
    if manifest is None:
        return None
    if "files" in manifest:
        return list(manifest["files"])
    try:
        return demo_files(DemoConfig(**manifest["config"]))
    except (TypeError, ValueError):
        return None


def _random_direction(rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    return np.array([np.cos(angle), np.sin(angle)])


def _wire_points(start: np.ndarray, bend: np.ndarray, end: np.ndarray, n: int = 24) -> list[tuple[float, float]]:
    """Quadratic Bezier from start over bend to end, as n points."""
    t = np.linspace(0, 1, n)[:, None]
    curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end
    return [tuple(p) for p in curve]


def _disk(draw: ImageDraw.ImageDraw, centre: np.ndarray, radius: float, fill) -> None:
    x, y = centre
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill)


def _pin(draw: ImageDraw.ImageDraw, top: np.ndarray, size: tuple[float, float], fill) -> None:
    x, y = top
    w, h = size
    draw.rectangle([x - w / 2, y - 3, x + w / 2, y + h], fill=fill)


def _mask(size: int, paint) -> np.ndarray:
    image = Image.new("L", (size, size), 0)
    paint(ImageDraw.Draw(image))
    return np.asarray(image) > 0
