"""``lifpga``: the command line of the host driver.

::

    lifpga info --port URL
    lifpga classify --port URL FILE...            # PNG, PGM or NPY images
    lifpga classify --port URL --digits N         # the first N test digits, with metrics

``URL`` is anything pyserial opens: ``/dev/ttyUSB0``, ``socket://127.0.0.1:PORT`` (the
reference board, ``python -m sim.refboard``, or the virtual board, ``make board``),
``loop://``. On connecting, the driver sends RESET, so that nothing an earlier client left
running on the device reaches this one; ``--no-reset`` skips it, for firmware that predates
RESET. ``--timeout`` is the deadline per request in seconds; when it expires, the message
says how long the request was expected to take (long ``--steps`` in rate mode take seconds
on the virtual board, see docs/PROTOCOL.md, Timing).

Image files:

- ``.npy``: integer pixels of shape (M,) or (side, side) for one image, or (B, M) for B.
- ``.png`` / ``.pgm``: a grayscale image of side x side pixels (colour is averaged to gray),
  scaled linearly to integers 0 .. pixel_max and rounded to nearest, dark = 0 and light =
  pixel_max; ``--invert`` makes dark = pixel_max (for dark ink on light paper, since the
  digits data set has the stroke high on a zero background).

``--digits N`` prints the accuracy, per-class precision, recall and F1 and the confusion
matrix (rows: true class, columns: predicted); ``--confusion-png PATH`` also draws it.
``--json`` prints the results as JSON on stdout instead of text.

``--encoding`` chooses how images go out: ``auto`` (the default) sends each as CLASSIFY_SPARSE
(zero runs skipped) when the device's protocol version has it and the frame is shorter, else as
CLASSIFY; ``dense`` always CLASSIFY; ``sparse`` always CLASSIFY_SPARSE (a usage error for a
device whose version lacks it). The answers are the same.

``--golden DIR`` checks every answer against the golden model of the network image in ``DIR``
(whose hash must equal the one the device reports): the label, every class score and the
spike count must be equal. It prints how many were, and exits 1 if any was not: a board that
differs from its simulation cannot go unnoticed.

Exit status: 0 on success, 2 for a usage error or an unreadable or unusable input file, 1 for
a device or link error. Input files and ``--golden`` are read before the port is opened (their
fit to the network, which INFO reports, is checked after). Errors print one line on stderr,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from firmware.driver import (
    DEFAULT_BAUD,
    DEFAULT_TIMEOUT_S,
    MODES,
    Lifpga,
    LifpgaError,
    LinkTimeout,
    ParameterError,
    PortError,
    check_port_url,
)
from golden import metrics, protocol
from golden.constants import STEPS_BITS
from golden.protocol import MAX_WINDOW

EXIT_DEVICE = 1
EXIT_USAGE = 2
#: Largest ``--steps`` (the STEPS field is 16 bits).
MAX_STEPS = (1 << STEPS_BITS) - 1
#: The first bytes of every ``.npy`` file (``numpy.lib.format.MAGIC_PREFIX``).
NPY_MAGIC = b"\x93NUMPY"


class InputError(Exception):
    """An input file that cannot be read or used (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse that prints one line, not the usage block, and exits 2."""

    def error(self, message: str):  # noqa: D102 -- argparse's hook
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``lifpga`` argument parser."""
    parser = _Parser(prog="lifpga", description="Talk to a lifpga board.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def link_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--port", required=True,
                       help="pyserial URL or device: /dev/ttyUSB0, socket://HOST:PORT, loop://")
        p.add_argument("--baud", type=int, default=DEFAULT_BAUD,
                       help=f"UART baud rate (default {DEFAULT_BAUD})")
        p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                       help=f"seconds per request (default {DEFAULT_TIMEOUT_S:g})")
        p.add_argument("--json", action="store_true", help="print JSON on stdout")
        p.add_argument("--no-reset", action="store_true",
                       help="do not send RESET on connecting (for firmware that predates it; "
                            "an earlier client's late answers may then get in the way)")

    link_options(sub.add_parser("info", help="what the board runs"))
    classify = sub.add_parser("classify", help="classify image files or the test digits")
    link_options(classify)
    classify.add_argument("files", nargs="*", metavar="FILE", help="PNG, PGM or NPY images")
    classify.add_argument("--digits", type=int, metavar="N",
                          help="classify the first N digits of the standard test split")
    classify.add_argument("--steps", type=int, default=0,
                          help="time steps (default: the network image's)")
    classify.add_argument("--mode", choices=list(MODES), default="default",
                          help="encoder mode (default: the network image's)")
    classify.add_argument("--invert", action="store_true",
                          help="PNG/PGM: dark pixels are high (dark ink on light paper)")
    classify.add_argument("--window", type=int, default=protocol.MAX_IN_FLIGHT,
                          help="requests in flight (a board holds %(default)s)")
    classify.add_argument("--confusion-png", type=Path, metavar="PATH",
                          help="with --digits: write the confusion matrix as a PNG")
    classify.add_argument("--encoding", choices=list(protocol.ENCODINGS), default="auto",
                          help="CLASSIFY (dense), CLASSIFY_SPARSE (sparse) or the shorter the "
                               "device serves (auto, the default)")
    classify.add_argument("--golden", type=Path, metavar="DIR",
                          help="compare every answer with the golden model of this network "
                               "image (exit 1 on any difference)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``lifpga``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        _check_options(args)
        files = [read_image_file(Path(f)) for f in getattr(args, "files", [])]
        args.golden_image = _load_golden(args.golden) if getattr(args, "golden", None) else None
    except (InputError, PortError) as exc:  # before the port is opened
        print(f"lifpga: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with Lifpga(args.port, baud=args.baud, timeout=args.timeout,
                    reset=not args.no_reset,
                    encoding=getattr(args, "encoding", "auto")) as board:
            if args.command == "info":
                return _info(board, args)
            return _classify(board, args, files)
    except (InputError, ParameterError) as exc:  # ParameterError: raised before sending
        print(f"lifpga: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LinkTimeout as exc:
        print(f"lifpga: error: {exc.advice('--timeout {}')}", file=sys.stderr)
        return EXIT_DEVICE
    except LifpgaError as exc:
        print(f"lifpga: error: {exc}", file=sys.stderr)
        return EXIT_DEVICE
    except KeyboardInterrupt:
        print("lifpga: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout went away (``lifpga ... | head -1``)
        # Python would report the pipe again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_DEVICE


def _check_options(args: argparse.Namespace) -> None:
    """Usage errors the argument parser cannot see, as :class:`InputError`; a malformed
    ``socket://`` URL as :class:`PortError`."""
    problem = None
    if not 0 < args.timeout < float("inf"):
        problem = f"--timeout must be a positive number of seconds, got {args.timeout}"
    elif args.baud < 1:
        problem = f"--baud must be positive, got {args.baud}"
    elif args.command == "classify":
        problem = _classify_problem(args)
    if problem:
        raise InputError(problem)
    check_port_url(args.port)


def _classify_problem(args: argparse.Namespace) -> str | None:
    if (args.digits is None) == (not args.files):
        return "classify needs FILE... or --digits N (not both)"
    if args.digits is not None and args.digits < 1:
        return "--digits must be at least 1"
    if args.confusion_png and args.digits is None:
        return "--confusion-png needs --digits"
    if args.invert and args.digits is not None:
        return "--invert applies to PNG and PGM files, not to --digits"
    if not 0 <= args.steps <= MAX_STEPS:
        return f"--steps must lie in 0 .. {MAX_STEPS}, got {args.steps}"
    if not 1 <= args.window <= MAX_WINDOW:
        return f"--window must lie in 1 .. {MAX_WINDOW}, got {args.window}"
    return None


def _info(board: Lifpga, args: argparse.Namespace) -> int:
    info = board.info()
    fields = info._asdict()
    fields["image_hash"] = "sha256:" + info.image_hash.hex()
    fields["default_mode"] = _mode_name(info.default_mode)
    if args.json:
        print(json.dumps(fields, indent=2))
    else:
        for key, value in fields.items():
            print(f"{key:14} {value}")
    return 0


def _mode_name(mode: int) -> str:
    return {v: k for k, v in MODES.items()}.get(mode, str(mode))


def _classify(board: Lifpga, args: argparse.Namespace, files: list[RawImage]) -> int:
    info = board.info()
    mode = MODES[args.mode]
    if args.digits is not None:
        return _classify_digits(board, info, args, mode)
    named: list[tuple[str, np.ndarray]] = []
    for raw in files:
        named += fit_images(raw, info.inputs, info.pixel_max, invert=args.invert)
    golden = _golden_net(args.golden_image, info) if args.golden_image else None
    images = [x for _, x in named]
    results = _run(board, images, args.steps, mode, args.window)
    rows = [{"file": name, "label": r.label, "spike_count": r.spike_count, "cycles": r.cycles,
             "scores": list(r.scores)} for (name, _), r in zip(named, results, strict=True)]
    equal = _compare_golden(golden, info, images, results, args.steps, mode) if golden else None
    if args.json:
        print(json.dumps(rows if equal is None else {"results": rows, "golden_equal": equal},
                         indent=2))
    else:
        for row in rows:
            print(f"{row['file']}: {row['label']}")
    return _golden_verdict(equal, len(images), quiet=args.json)


def _load_golden(directory: Path) -> tuple[Path, Any, dict]:
    """The network image of ``--golden`` as ``(directory, net, manifest)``, loaded before the
    port is opened."""
    from golden import image

    try:
        net, manifest = image.load_layers(directory)
    except (image.NetworkImageError, OSError) as exc:
        raise InputError(f"--golden: {exc}") from exc
    return directory, net, manifest


def _golden_net(golden_image: tuple[Path, Any, dict], info: protocol.Info):
    """The golden network of ``--golden``, checked to be the one the device runs."""
    directory, net, manifest = golden_image
    if manifest["hash"] != "sha256:" + info.image_hash.hex():
        raise InputError(f"--golden: {directory} is image {manifest['hash'][:19]}..., the "
                         f"device runs sha256:{info.image_hash.hex()[:12]}...")
    return net


def _compare_golden(net, info: protocol.Info, images: list[np.ndarray],
                    results: list[protocol.Classification], steps: int, mode: int) -> list[bool]:
    """Per image: the device's label, scores and spike count equal golden's
    (:func:`golden.device.agreement`)."""
    from golden import layers
    from golden.device import agreement

    steps = steps or info.default_steps
    mode = info.default_mode if mode == protocol.MODE_DEFAULT else mode
    ref = layers.run(np.asarray(images, dtype=np.int64).reshape(len(images), -1), net, steps,
                     mode)
    equal = agreement([r.label for r in results], [r.scores for r in results],
                      [r.spike_count for r in results], ref)
    return [bool(e) for e in equal]


def _golden_verdict(equal: list[bool] | None, count: int, *, quiet: bool) -> int:
    if equal is None:
        return 0
    same = sum(equal)
    if not quiet:
        print(f"golden: {same}/{count} answers equal the golden model bit for bit")
    if same != count:
        print(f"lifpga: error: {count - same} answer(s) differ from the golden model, the "
              f"first for image {equal.index(False)}", file=sys.stderr)
        return EXIT_DEVICE
    return 0


def _run(board: Lifpga, images: list[np.ndarray], steps: int, mode: int,
         window: int) -> list[protocol.Classification]:
    from tqdm import tqdm

    bar = tqdm(total=len(images), unit="img", disable=None, file=sys.stderr, leave=False)
    results = []
    with bar:
        for result in board.classify_many(images, steps, mode, window):
            results.append(result)
            bar.update()
    return results


def _classify_digits(board: Lifpga, info: protocol.Info, args: argparse.Namespace,
                     mode: int) -> int:
    from golden.data import load_split

    split = load_split()
    if args.digits > len(split.x_test):
        raise InputError(f"--digits {args.digits} is more than the {len(split.x_test)} "
                         "images of the test split")
    x, y = split.x_test[:args.digits], split.y_test[:args.digits]
    golden = _golden_net(args.golden_image, info) if args.golden_image else None
    start = time.monotonic()
    results = _run(board, list(x), args.steps, mode, args.window)
    wall = time.monotonic() - start
    predicted = np.array([r.label for r in results])
    figures = metrics.class_report(y, predicted, info.classes)
    if args.confusion_png:
        title = f"{len(y)} test digits, accuracy {100 * figures.accuracy:.2f} %"
        try:
            metrics.write_confusion_png(figures.confusion, args.confusion_png, title)
        except OSError as exc:
            raise InputError(f"cannot write {args.confusion_png}: {exc}") from exc
    report: dict[str, Any] = {
        "images": len(y), "accuracy": figures.accuracy,
        "steps": args.steps or info.default_steps,
        "mode": _mode_name(info.default_mode if mode == protocol.MODE_DEFAULT else mode),
        "wall_s": wall, "images_per_s": len(y) / wall if wall > 0 else None,
        **figures.as_json(),
        "labels": y.tolist(), "predicted": predicted.tolist(),
        "spike_count": [r.spike_count for r in results], "cycles": [r.cycles for r in results],
    }
    equal = _compare_golden(golden, info, list(x), results, args.steps, mode) if golden else None
    if equal is not None:
        report["golden_equal"] = equal
    if args.json:
        print(json.dumps(report, indent=2))
        return _golden_verdict(equal, len(y), quiet=True)
    print(f"{len(y)} test digits, {report['steps']} steps, {report['mode']} mode: "
          f"accuracy {100 * figures.accuracy:.2f} % ({report['images_per_s']:.0f} images/s)")
    print()
    print(metrics.format_class_report(figures))
    return _golden_verdict(equal, len(y), quiet=False)


class RawImage(NamedTuple):
    """An image file as read, before it is fitted to a network (:func:`fit_images`).

    ``pixels`` holds integers (``.npy``) or gray levels 0 .. ``maxval`` (PNG, PGM).
    """

    name: str
    pixels: np.ndarray
    maxval: float | None  # None: integer pixels taken as they are (.npy)


def read_image_file(path: Path) -> RawImage:
    """Read an image file without knowing the network, so that it is checked before the port
    is opened.

    Raises
    ------
    InputError : the file is missing, unreadable, empty, not of its suffix's format, or a
        ``.npy`` holding no pixels (such as shape (0, M)).
    """
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".png", ".pgm"):
        raise InputError(f"{path}: unknown image type {suffix!r} (use .npy, .png or .pgm)")
    try:
        if not path.is_file():
            raise InputError(f"cannot read {path}: "
                             f"{'it is a directory' if path.is_dir() else 'no such file'}")
        if path.stat().st_size == 0:
            raise InputError(f"cannot read {path}: the file is empty")
        if suffix == ".npy":
            return RawImage(str(path), _read_npy(path), None)
        if suffix == ".png":
            from matplotlib.image import imread

            gray = imread(path)
            # matplotlib gives floats in 0 .. 1 for PNG (integers for some other formats).
            kind = np.asarray(gray).dtype
            return RawImage(str(path), _gray(gray), 1.0 if kind.kind == "f"
                            else float(np.iinfo(kind).max))
        gray, maxval = read_pgm(path)
        return RawImage(str(path), gray.astype(np.float64), float(maxval))
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


def _read_npy(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        magic = f.read(len(NPY_MAGIC))
    if magic != NPY_MAGIC:
        raise InputError(f"cannot read {path}: not a NumPy .npy file (it does not start "
                         "with the .npy magic bytes; write one with numpy.save)")
    x = np.load(path, allow_pickle=False)
    if x.dtype.kind not in "iu":
        raise InputError(f"{path}: pixels must be integers, got dtype {x.dtype}")
    if x.size == 0:  # refused here, before connecting sends RESET for nothing
        raise InputError(f"{path}: shape {x.shape} holds no images")
    return x


def _gray(image: np.ndarray) -> np.ndarray:
    """A grayscale or colour image as gray levels: alpha dropped, colours averaged."""
    g = np.asarray(image, dtype=np.float64)
    if g.ndim == 3:
        g = g[..., :3].mean(axis=2)
    return g


def fit_images(raw: RawImage, inputs: int, pixel_max: int,
               invert: bool = False) -> list[tuple[str, np.ndarray]]:
    """The images of a file as ``(name, pixels)`` pairs of flat integer arrays.

    Parameters
    ----------
    raw : the file as :func:`read_image_file` read it.
    inputs, pixel_max : the network's input count and largest pixel value.
    invert : PNG/PGM: dark = pixel_max.

    Raises
    ------
    InputError : the file does not hold images the network takes.
    """
    path = raw.name
    x = raw.pixels if raw.maxval is None else _to_pixels(raw.pixels, raw.maxval, pixel_max,
                                                          invert)
    if x.ndim == 2 and x.shape[0] == x.shape[1] and x.size == inputs:
        images = [(path, x.reshape(-1))]
    elif x.ndim == 1 and x.shape == (inputs,):
        images = [(path, x)]
    elif x.ndim == 2 and x.shape[1] == inputs:
        images = [(f"{path}[{i}]", row) for i, row in enumerate(x)]
    else:
        raise InputError(f"{path}: shape {x.shape} is not an image of {inputs} pixels "
                         f"((M,), (side, side) or (B, M))")
    if not images:
        raise InputError(f"{path}: shape {x.shape} holds no images")
    for name, pixels in images:
        if pixels.min() < 0 or pixels.max() > pixel_max:
            raise InputError(f"{name}: pixels must lie in 0 .. {pixel_max}, "
                             f"got {pixels.min()} .. {pixels.max()}")
    return images


def load_images(path: Path, inputs: int, pixel_max: int,
                invert: bool = False) -> list[tuple[str, np.ndarray]]:
    """Images in a file as ``(name, pixels)`` pairs of flat integer arrays
    (:func:`read_image_file`, then :func:`fit_images`).

    Parameters
    ----------
    path : ``.npy`` (integer pixels; (M,), (side, side) or (B, M)), ``.png`` or ``.pgm``
        (grayscale scaled to 0 .. pixel_max, see the module docstring).
    inputs, pixel_max : the network's input count and largest pixel value.
    invert : PNG/PGM: dark = pixel_max.

    Raises
    ------
    InputError : the file cannot be read or does not hold images the network takes.
    """
    return fit_images(read_image_file(Path(path)), inputs, pixel_max, invert)


def _to_pixels(gray: np.ndarray, maxval: float, pixel_max: int, invert: bool) -> np.ndarray:
    """Gray levels 0 .. maxval scaled to integers 0 .. pixel_max, rounded to nearest."""
    g = np.asarray(gray, dtype=np.float64) / maxval
    if invert:
        g = 1.0 - g
    return np.rint(np.clip(g, 0.0, 1.0) * pixel_max).astype(np.int64)


def read_pgm(path: Path) -> tuple[np.ndarray, int]:
    """A binary (P5) or ASCII (P2) PGM file as ``(pixels, maxval)``."""
    data = path.read_bytes()
    tokens: list[bytes] = []
    pos = 0
    while len(tokens) < 4:
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.find(b"\n", pos) + 1 or len(data)
            continue
        end = pos
        while end < len(data) and not data[end:end + 1].isspace() and data[end:end + 1] != b"#":
            end += 1
        if end == pos:
            raise ValueError("truncated PGM header")
        tokens.append(data[pos:end])
        pos = end
    magic, width, height, maxval = tokens[0], int(tokens[1]), int(tokens[2]), int(tokens[3])
    if not 1 <= maxval <= 65535:
        raise ValueError(f"PGM maxval must lie in 1 .. 65535, got {maxval}")
    if magic == b"P5":
        dtype = ">u2" if maxval > 255 else "u1"
        count = width * height
        raw = np.frombuffer(data, dtype=dtype, count=count, offset=pos + 1)
        return raw.reshape(height, width).astype(np.int64), maxval
    if magic == b"P2":
        values = np.array(data[pos:].split(), dtype=np.int64)
        if values.size < width * height:
            raise ValueError("truncated PGM pixel data")
        return values[:width * height].reshape(height, width), maxval
    raise ValueError(f"not a PGM file (magic {magic!r}, expected P2 or P5)")


if __name__ == "__main__":
    sys.exit(main())
