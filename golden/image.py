"""Network images: the integer arrays the hardware's ROMs hold, plus a manifest.

An image is a directory::

    manifest.json   format, sizes, weight width, arithmetic parameters, provenance, hash
    w_in.npy        (N, M)  signed w_bits      input weights (w_bits: the manifest's, 2 .. 8)
    w_shift.npy     (N,)    signed W_SHIFT_BITS  (-16 .. 15: left if >= 0, floor right if < 0)
    bias.npy        (N,)    signed B_BITS
    v_th.npy        (N,)    unsigned V_TH_BITS (>= 1)
    dec.npy         (C, N)  signed D_BITS      decoder weights
    dec_bias.npy    (C,)    signed SCORE_BITS

``.npy`` files are used (not ``.npz``) because they are byte-for-byte reproducible and
readable from any language. The *content hash* is SHA-256 over the arrays and the arithmetic
parameters in a canonical form (see :func:`content_hash`): what the hardware computes with,
and nothing else, so two images with the same hash classify identically for the same number of
steps and encoder mode. ``timesteps`` and ``encoder_mode`` in the manifest are run defaults
(a classify request may override both), ``pixel_max`` only bounds the accepted input and
``w_bits`` only the stored weights (the hardware's weight memory is that wide; the integers and
so every result are the same at any width that holds them), so they are validated but not
hashed.

Versions: 2 (this code writes it) has ``w_bits``, a signed 5-bit ``w_shift`` and a 32-bit bias.
Version 1 (unsigned 4-bit ``w_shift``, left shifts only; 20-bit bias; no ``w_bits``) still
loads, as the same network with ``w_bits = 8``: its values are a subset of version 2's, and its
content hash is unchanged.

:func:`load` validates everything and raises :class:`NetworkImageError` with a message that
names the file or field at fault.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from . import constants as c
from .model import Network

FORMAT = "lifpga-network-image"
FORMAT_VERSION = 2
#: Versions :func:`load` reads.
READABLE_VERSIONS = (1, 2)

#: Array name -> (shape in terms of N, M, C; signed; bits). Bits come from golden.constants;
#: ``w_in``'s are the widest, an image declares its own ``w_bits`` (:func:`declared_arrays`).
ARRAYS: dict[str, tuple[tuple[str, ...], bool, int]] = {
    "w_in": (("neurons", "inputs"), True, c.W_BITS),
    "w_shift": (("neurons",), True, c.W_SHIFT_BITS),
    "bias": (("neurons",), True, c.B_BITS),
    "v_th": (("neurons",), False, c.V_TH_BITS),
    "dec": (("classes", "neurons"), True, c.D_BITS),
    "dec_bias": (("classes",), True, c.SCORE_BITS),
}

#: Arithmetic parameters -> inclusive range of allowed values.
PARAMETERS: dict[str, tuple[int, int]] = {
    # leak_shift 15 could never raise v (|I - v| < 2**15); psc_shift 0 would let psc reach
    # PSC_ONE and psc_shift > PSC_BITS could never move it from rest.
    "leak_shift": (0, c.V_BITS - 2),
    "psc_shift": (1, c.PSC_BITS),
    "ref_steps": (0, (1 << c.REF_BITS) - 1),
    "rate_bits": (1, c.RATE_BITS_MAX),
    "lfsr_seed": (1, (1 << c.LFSR_WIDTH) - 1),
}

#: The formats an image declares; they must equal the constants this code was built with.
FORMATS = {
    "W_BITS": c.W_BITS, "W_SHIFT_BITS": c.W_SHIFT_BITS, "B_BITS": c.B_BITS,
    "V_FRAC": c.V_FRAC, "I_BITS": c.I_BITS, "V_BITS": c.V_BITS, "REF_BITS": c.REF_BITS,
    "PSC_BITS": c.PSC_BITS, "D_BITS": c.D_BITS, "SCORE_BITS": c.SCORE_BITS,
    "LFSR_WIDTH": c.LFSR_WIDTH, "LFSR_TAPS": c.LFSR_TAPS,
}
#: Version 1's formats and array declarations, where they differ from version 2's.
V1_W_SHIFT_BITS, V1_B_BITS = 4, 20
FORMATS_V1 = {**FORMATS, "W_SHIFT_BITS": V1_W_SHIFT_BITS, "B_BITS": V1_B_BITS}


def declared_arrays(version: int, w_bits: int) -> dict[str, tuple[tuple[str, ...], bool, int]]:
    """:data:`ARRAYS` as an image of ``version`` with weights ``w_bits`` wide declares them."""
    arrays = dict(ARRAYS, w_in=(ARRAYS["w_in"][0], True, w_bits))
    if version == 1:
        arrays.update(w_shift=(("neurons",), False, V1_W_SHIFT_BITS),
                      bias=(("neurons",), True, V1_B_BITS))
    return arrays


def _stored_dtype(signed: bool, bits: int) -> str:
    """Smallest little-endian NumPy integer type that holds the declared width."""
    size = next(n for n in (1, 2, 4, 8) if bits <= 8 * n)
    return f"<{'i' if signed else 'u'}{size}"


class NetworkImageError(ValueError):
    """A network image is missing, malformed, inconsistent or corrupt."""


def _canonical(arrays: dict[str, np.ndarray], params: dict[str, int]) -> bytes:
    parts = [json.dumps({k: int(params[k]) for k in sorted(PARAMETERS)}, sort_keys=True).encode()]
    for name in ARRAYS:
        a = np.ascontiguousarray(arrays[name], dtype="<i8")
        parts.append(f"{name}:{list(a.shape)}:".encode() + a.tobytes())
    return b"\n".join(parts)


def content_hash(net: Network) -> str:
    """``sha256:<hex>`` of the arithmetic parameters and every array, as int64 little-endian."""
    arrays = {name: getattr(net, name) for name in ARRAYS}
    params = {name: getattr(net, name) for name in PARAMETERS}
    return "sha256:" + hashlib.sha256(_canonical(arrays, params)).hexdigest()


def save(path: str | Path, net: Network, timesteps: int, encoder_mode: int, pixel_max: int,
         metadata: dict[str, Any]) -> dict[str, Any]:
    """Write ``net`` as an image directory at ``path``; returns the manifest.

    ``metadata`` holds provenance (data set, split, seed, training settings, accuracies); it is
    stored but not hashed. The image is validated before anything is written.
    """
    declared = declared_arrays(FORMAT_VERSION, int(net.w_bits))
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "neurons": net.neurons,
        "inputs": net.inputs,
        "classes": net.classes,
        "pixel_max": int(pixel_max),
        "w_bits": int(net.w_bits),
        "timesteps": int(timesteps),
        "encoder_mode": c.MODE_NAMES[encoder_mode],
        "parameters": {name: int(getattr(net, name)) for name in PARAMETERS},
        "formats": dict(FORMATS),
        "arrays": {
            name: {"file": f"{name}.npy", "shape": list(getattr(net, name).shape),
                   "signed": signed, "bits": bits}
            for name, (_, signed, bits) in declared.items()
        },
        "metadata": metadata,
        "hash": content_hash(net),
    }
    _validate(manifest, {name: getattr(net, name) for name in ARRAYS}, where="network")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for name, (_, signed, bits) in declared.items():
        stored = np.asarray(getattr(net, name)).astype(_stored_dtype(signed, bits))
        np.save(path / f"{name}.npy", stored)
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load(path: str | Path) -> tuple[Network, dict[str, Any]]:
    """Load and validate an image directory; returns ``(network, manifest)``."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not path.is_dir():
        raise NetworkImageError(f"{path}: no such network image directory")
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise NetworkImageError(f"{manifest_path}: missing") from None
    except OSError as e:
        raise NetworkImageError(f"{manifest_path}: cannot be read ({e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NetworkImageError(f"{manifest_path}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise NetworkImageError(f"{manifest_path}: must hold a JSON object")
    arrays_decl = manifest.get("arrays")
    if not isinstance(arrays_decl, dict):
        raise NetworkImageError(f"{manifest_path}: 'arrays' is missing or not an object")
    arrays = {}
    for name in ARRAYS:
        decl = arrays_decl.get(name)
        if not isinstance(decl, dict) or not isinstance(decl.get("file"), str):
            raise NetworkImageError(f"{manifest_path}: arrays.{name} is missing or has no 'file'")
        file = path / decl["file"]
        if Path(decl["file"]).name != decl["file"]:
            raise NetworkImageError(f"{manifest_path}: arrays.{name}.file must be a plain name")
        try:
            a = np.load(file, allow_pickle=False)
        except FileNotFoundError:
            raise NetworkImageError(f"{file}: missing") from None
        except (ValueError, OSError, EOFError) as e:
            raise NetworkImageError(f"{file}: not a readable .npy array ({e})") from None
        if a.dtype.kind not in "iu" or a.dtype.itemsize > 8:
            raise NetworkImageError(f"{file}: dtype {a.dtype} is not an integer type")
        if a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
            raise NetworkImageError(f"{file}: value {a.max()} is beyond any declared width")
        arrays[name] = a.astype(np.int64)
    w_bits = _validate(manifest, arrays, where=str(path))
    params = manifest["parameters"]
    net = Network(**arrays, **{k: int(params[k]) for k in PARAMETERS}, w_bits=w_bits)
    actual = content_hash(net)
    if actual != manifest["hash"]:
        raise NetworkImageError(
            f"{path}: content hash mismatch: manifest says {manifest['hash']}, "
            f"contents hash to {actual} (an array or parameter was changed)")
    return net, manifest


def _validate(manifest: dict[str, Any], arrays: dict[str, np.ndarray], where: str) -> int:
    """Check the manifest and the arrays; returns the image's weight width ``w_bits``."""
    def fail(msg: str):
        raise NetworkImageError(f"{where}: {msg}")

    if manifest.get("format") != FORMAT:
        fail(f"format is {manifest.get('format')!r}, expected {FORMAT!r}")
    version = manifest.get("format_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        fail(f"format_version {version!r} is not supported "
             f"(this code reads versions {', '.join(map(str, READABLE_VERSIONS))})")
    if version == 1:
        if "w_bits" in manifest:
            fail("w_bits is not a field of format version 1 (its weights are 8 bits)")
        w_bits = c.W_BITS
    else:
        w_bits = manifest.get("w_bits")
        if (not isinstance(w_bits, int) or isinstance(w_bits, bool)
                or not c.W_BITS_MIN <= w_bits <= c.W_BITS):
            fail(f"w_bits must be an integer in {c.W_BITS_MIN} .. {c.W_BITS}, got {w_bits!r}")
    expected_formats = FORMATS_V1 if version == 1 else FORMATS
    sizes = {}
    for key in ("neurons", "inputs", "classes", "pixel_max", "timesteps"):
        v = manifest.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            fail(f"{key} must be a positive integer, got {v!r}")
        sizes[key] = v
    if sizes["classes"] < 2:
        fail(f"classes must be at least 2, got {sizes['classes']}")
    if sizes["pixel_max"] > (1 << c.PIXEL_BITS_MAX) - 1:
        fail(f"pixel_max {sizes['pixel_max']} needs more than {c.PIXEL_BITS_MAX} bits")
    if manifest.get("encoder_mode") not in c.MODE_NAMES.values():
        fail(f"encoder_mode must be one of {sorted(c.MODE_NAMES.values())}, "
             f"got {manifest.get('encoder_mode')!r}")
    formats = manifest.get("formats")
    if formats != expected_formats:
        if not isinstance(formats, dict):
            fail("formats is missing")
        diff = {k: (formats.get(k), v) for k, v in expected_formats.items()
                if formats.get(k) != v}
        fail("formats differ from this build's constants (image, expected): "
             + ", ".join(f"{k}={a!r} vs {b!r}" for k, (a, b) in diff.items()))
    params = manifest.get("parameters")
    if not isinstance(params, dict):
        fail("parameters is missing")
    for name, (lowest, highest) in PARAMETERS.items():
        v = params.get(name)
        if not isinstance(v, int) or isinstance(v, bool) or not lowest <= v <= highest:
            fail(f"parameters.{name} must be an integer in {lowest} .. {highest}, got {v!r}")
    if not isinstance(manifest.get("hash"), str) or not manifest["hash"].startswith("sha256:"):
        fail("hash is missing or not of the form 'sha256:<hex>'")
    for name, (dims, signed, bits) in declared_arrays(version, w_bits).items():
        a = arrays[name]
        expected = tuple(sizes[d] for d in dims)
        if a.shape != expected:
            fail(f"{name}: shape {a.shape} does not match "
                 f"({', '.join(dims)}) = {expected}")
        lo, hi = c.signed_range(bits) if signed else c.unsigned_range(bits)
        if a.size and (a.min() < lo or a.max() > hi):
            bad = a[(a < lo) | (a > hi)].flat[0]
            fail(f"{name}: value {bad} is outside the {bits}-bit "
                 f"{'signed' if signed else 'unsigned'} range {lo} .. {hi}")
        declared = manifest["arrays"].get(name, {})
        if (declared.get("shape") != list(expected) or declared.get("signed") is not signed
                or declared.get("bits") != bits):
            fail(f"arrays.{name} declares shape {declared.get('shape')}, signed "
                 f"{declared.get('signed')}, bits {declared.get('bits')}; expected "
                 f"{list(expected)}, {signed}, {bits}")
    if arrays["v_th"].min() < 1:
        fail("v_th: a threshold of 0 would make the neuron fire on every step it may")
    # Bounds that make the fixed widths safe for this image's sizes.
    if (1 << params["rate_bits"]) < sizes["pixel_max"]:
        fail(f"parameters.rate_bits={params['rate_bits']} cannot encode pixel_max "
             f"{sizes['pixel_max']} (a spike is worth 2**rate_bits)")
    # |W.x| <= inputs * 2**(w_bits-1) * x_max, x_max = 2**rate_bits >= pixel_max (checked
    # above); with the bias, W.x + b then fits B_BITS + 1 bits (docs/ARITHMETIC.md).
    x_max = 1 << params["rate_bits"]
    acc_bound = sizes["inputs"] * (1 << (w_bits - 1)) * x_max
    if acc_bound >= 1 << c.ACC_BOUND_BITS:
        fail(f"inputs x weights x pixels can reach {acc_bound}, "
             f"beyond {c.ACC_BOUND_BITS} bits")
    score_bound = (sizes["neurons"] * (1 << (c.D_BITS - 1)) * (c.PSC_ONE - 1)
                   + int(np.abs(arrays["dec_bias"]).max()))
    if score_bound > c.SCORE_MAX:
        fail(f"a class score can reach {score_bound}, beyond the {c.SCORE_BITS}-bit score")
    return w_bits
