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

Version 3 (:func:`save_layers`, :func:`load_layers`) holds a network of layers
(:class:`golden.layers.LayeredNetwork`): the manifest lists the layers and the readout, the arrays
are ``layer{k}.w`` and the rest per layer plus the decoder (docs/ARITHMETIC.md, "Image format
version 3"). :func:`load` reads a version-3 image only when it is the single-layer network (which
keeps its hash in every version); :func:`load_layers` reads every version.

Versions: 2 (:func:`save` writes it) has ``w_bits``, a signed 5-bit ``w_shift`` and a 32-bit bias.
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
from . import layers
from .model import Network

FORMAT = "lifpga-network-image"
FORMAT_VERSION = 2
#: Versions :func:`load` reads.
READABLE_VERSIONS = (1, 2, 3)

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
    manifest_path, manifest = _read_manifest(path)
    if _is_layered(manifest):
        net, manifest = load_layers(path)
        if not layers.is_classic(net):
            raise NetworkImageError(
                f"{path}: a network of layers {net.sizes} ({', '.join(layers.neuron_models(net))}"
                f") with a {net.readout} readout; only the single-layer LIF network with a PSC "
                "readout runs here (golden.layers.run runs every network)")
        return layers.to_classic(net), manifest
    arrays_decl = manifest["arrays"]
    arrays = {name: _read_array(path, manifest_path, arrays_decl, name) for name in ARRAYS}
    w_bits = _validate(manifest, arrays, where=str(path))
    params = manifest["parameters"]
    net = Network(**arrays, **{k: int(params[k]) for k in PARAMETERS}, w_bits=w_bits)
    _check_hash(manifest, content_hash(net), str(path))
    return net, manifest


def _check_hash(manifest: dict[str, Any], actual: str, where: str) -> None:
    if actual != manifest["hash"]:
        raise NetworkImageError(
            f"{where}: content hash mismatch: manifest says {manifest['hash']}, "
            f"contents hash to {actual} (an array or parameter was changed)")


def _read_manifest(path: Path) -> tuple[Path, dict[str, Any]]:
    """The parsed manifest of the image directory ``path`` (a JSON object)."""
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
    if not isinstance(manifest.get("arrays"), dict):
        raise NetworkImageError(f"{manifest_path}: 'arrays' is missing or not an object")
    return manifest_path, manifest


def _read_array(path: Path, manifest_path: Path, arrays_decl: dict, name: str) -> np.ndarray:
    """Array ``name`` of the image as int64, after checking its declaration and dtype."""
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
    return a.astype(np.int64)


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


# --- format version 3: networks of layers (golden.layers) -----------------------------------

#: The version that holds a :class:`golden.layers.LayeredNetwork`.
LAYERED_VERSION = 3
#: Version 3 declares the formats of the layered neuron models as well.
FORMATS_V3 = {**FORMATS, "BETA_FRAC": c.BETA_FRAC, "ADAPT_BITS": c.ADAPT_BITS}
#: A layer's record in the manifest: key -> type (bool fields are JSON booleans).
LAYER_FIELDS: dict[str, type] = {
    "neurons": int, "w_bits": int, "model": str, "reset": str, "leak_shift": int,
    "ref_steps": int, "adapt_step": int, "adapt_shift": int, "spiking": bool, "recurrent": bool,
}
#: The neuron parameters stored in a layer's record (the rest of NeuronParams are arrays).
NEURON_FIELDS = ("model", "reset", "leak_shift", "ref_steps", "adapt_step", "adapt_shift",
                 "spiking")


def _layer_arrays(k: int, record: dict, fan_in: int) -> dict[str, tuple[tuple, bool, int]]:
    """The arrays of layer ``k`` (name -> shape, signed, bits), from its manifest record."""
    n, w_bits = record["neurons"], record["w_bits"]
    arrays = {f"layer{k}.w": ((n, fan_in), True, w_bits),
              f"layer{k}.w_shift": ((n,), True, c.W_SHIFT_BITS),
              f"layer{k}.bias": ((n,), True, c.B_BITS)}
    if record["spiking"]:
        arrays[f"layer{k}.v_th"] = ((n,), False, c.V_TH_BITS)
    if record["model"] == c.NEURON_LEAKY:
        arrays[f"layer{k}.beta"] = ((n,), False, c.BETA_FRAC)
    if record["recurrent"]:
        arrays[f"layer{k}.w_rec"] = ((n, n), True, w_bits)
    return arrays


def _network_arrays(net: layers.LayeredNetwork) -> dict[str, np.ndarray]:
    """Every array of ``net`` under its version-3 name, in the canonical order."""
    out = {}
    for k, layer in enumerate(net.layers):
        out[f"layer{k}.w"], out[f"layer{k}.w_shift"] = layer.w, layer.w_shift
        out[f"layer{k}.bias"] = layer.bias
        if layer.neuron.spiking:
            out[f"layer{k}.v_th"] = layer.neuron.v_th
        if layer.neuron.model == c.NEURON_LEAKY:
            out[f"layer{k}.beta"] = layer.neuron.beta
        if layer.w_rec is not None:
            out[f"layer{k}.w_rec"] = layer.w_rec
    if net.decoder is not None:
        out["dec"], out["dec_bias"] = net.decoder.dec, net.decoder.dec_bias
    return out


def _layer_record(layer: layers.Layer) -> dict[str, Any]:
    p = layer.neuron
    record = {"neurons": layer.neurons, "w_bits": int(layer.w_bits)}
    record.update({name: getattr(p, name) for name in NEURON_FIELDS})
    record["recurrent"] = layer.w_rec is not None
    # JSON types by field (a NumPy bool or integer is written as the JSON bool or number)
    return {k: LAYER_FIELDS[k](v) for k, v in record.items()}


def _network_parameters(net: layers.LayeredNetwork) -> dict[str, int]:
    params = {"rate_bits": int(net.rate_bits), "lfsr_seed": int(net.lfsr_seed)}
    if net.decoder is not None:
        params["psc_shift"] = int(net.decoder.psc_shift)
    return params


def layered_hash(net: layers.LayeredNetwork) -> str:
    """``sha256:<hex>`` of what ``net`` computes with.

    A single-layer LIF network with a PSC readout (:func:`golden.layers.is_classic`) hashes as
    its :class:`golden.model.Network` does (:func:`content_hash`), so an image keeps its hash
    in every version. Any other network hashes its structure (readout, the parameters and every
    layer's record but ``w_bits``, canonical JSON) and then its arrays as int64 little-endian.
    """
    if layers.is_classic(net):
        return content_hash(layers.to_classic(net))
    structure = {"readout": net.readout, "parameters": _network_parameters(net),
                 "layers": [{k: v for k, v in _layer_record(layer).items() if k != "w_bits"}
                            for layer in net.layers]}
    parts = [b"lifpga-layered", json.dumps(structure, sort_keys=True).encode()]
    for name, a in _network_arrays(net).items():
        a = np.ascontiguousarray(a, dtype="<i8")
        parts.append(f"{name}:{list(a.shape)}:".encode() + a.tobytes())
    return "sha256:" + hashlib.sha256(b"\n".join(parts)).hexdigest()


def _file_name(name: str) -> str:
    return name.replace(".", "_") + ".npy"


def save_layers(path: str | Path, net: layers.LayeredNetwork, timesteps: int,
                encoder_mode: int, pixel_max: int, metadata: dict[str, Any]) -> dict[str, Any]:
    """Write ``net`` as a version-3 image directory at ``path``; returns the manifest.

    The network is validated (:func:`golden.layers.validate`) before anything is written.
    """
    try:
        layers.validate(net, pixel_max)
    except ValueError as e:
        raise NetworkImageError(f"network: {e}") from None
    if encoder_mode not in c.MODE_NAMES:
        raise NetworkImageError(f"network: unknown encoder mode {encoder_mode!r}")
    records = [_layer_record(layer) for layer in net.layers]
    declared = {}
    fan_in = net.inputs
    for k, record in enumerate(records):
        declared.update(_layer_arrays(k, record, fan_in))
        fan_in = record["neurons"]
    if net.decoder is not None:
        declared.update(dec=((net.classes, fan_in), True, c.D_BITS),
                        dec_bias=((net.classes,), True, c.SCORE_BITS))
    arrays = _network_arrays(net)
    manifest = {
        "format": FORMAT, "format_version": LAYERED_VERSION,
        "inputs": net.inputs, "classes": net.classes, "pixel_max": int(pixel_max),
        "timesteps": int(timesteps), "encoder_mode": c.MODE_NAMES[encoder_mode],
        "readout": net.readout, "parameters": _network_parameters(net), "layers": records,
        "formats": dict(FORMATS_V3),
        "arrays": {name: {"file": _file_name(name), "shape": list(shape), "signed": signed,
                          "bits": bits} for name, (shape, signed, bits) in declared.items()},
        "metadata": metadata, "hash": layered_hash(net),
    }
    _check_run_fields(manifest, str(path))
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for name, (_, signed, bits) in declared.items():
        np.save(path / _file_name(name), np.asarray(arrays[name]).astype(
            _stored_dtype(signed, bits)))
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_layers(path: str | Path) -> tuple[layers.LayeredNetwork, dict[str, Any]]:
    """Load and validate an image of any version as a layered network; ``(network, manifest)``.

    Versions 1 and 2 load as their single-layer network (:func:`golden.layers.from_classic`).
    """
    path = Path(path)
    manifest_path, manifest = _read_manifest(path)
    if not _is_layered(manifest):
        net, manifest = load(path)
        return layers.from_classic(net), manifest
    where = str(path)
    records = _check_layered_manifest(manifest, where)
    declared = {}
    fan_in = manifest["inputs"]
    for k, record in enumerate(records):
        declared.update(_layer_arrays(k, record, fan_in))
        fan_in = record["neurons"]
    if manifest["readout"] == c.READOUT_PSC:
        declared.update(dec=((manifest["classes"], fan_in), True, c.D_BITS),
                        dec_bias=((manifest["classes"],), True, c.SCORE_BITS))
    extra = sorted(set(manifest["arrays"]) - set(declared))
    if extra:
        raise NetworkImageError(f"{where}: arrays {', '.join(extra)} belong to no layer")
    arrays = {}
    for name, (shape, signed, bits) in declared.items():
        decl = manifest["arrays"].get(name)
        if isinstance(decl, dict) and (decl.get("shape") != list(shape)
                                       or decl.get("signed") is not signed
                                       or decl.get("bits") != bits):
            raise NetworkImageError(
                f"{where}: arrays.{name} declares shape {decl.get('shape')}, signed "
                f"{decl.get('signed')}, bits {decl.get('bits')}; expected {list(shape)}, "
                f"{signed}, {bits}")
        arrays[name] = _read_array(path, manifest_path, manifest["arrays"], name)
        if arrays[name].shape != shape:
            raise NetworkImageError(f"{where}: {name}: shape {arrays[name].shape} does not "
                                    f"match the manifest's {shape}")
    net = _build_layered(manifest, records, arrays)
    try:
        layers.validate(net, manifest["pixel_max"])
    except ValueError as e:
        raise NetworkImageError(f"{where}: {e}") from None
    if net.classes != manifest["classes"]:
        raise NetworkImageError(f"{where}: classes is {manifest['classes']}, the output layer "
                                f"has {net.classes}")
    _check_hash(manifest, layered_hash(net), where)
    return net, manifest


def _is_layered(manifest: dict) -> bool:
    """Whether the manifest is of format version 3 (the integer 3: not 3.0, not a string)."""
    version = manifest.get("format_version")
    return manifest.get("format") == FORMAT and type(version) is int and version == LAYERED_VERSION


def _build_layered(manifest: dict, records: list[dict], arrays: dict) -> layers.LayeredNetwork:
    built = []
    for k, r in enumerate(records):
        neuron = layers.NeuronParams(
            arrays.get(f"layer{k}.v_th"), r["model"], r["leak_shift"], r["ref_steps"],
            arrays.get(f"layer{k}.beta"), r["reset"], r["adapt_step"], r["adapt_shift"],
            r["spiking"])
        built.append(layers.Layer(arrays[f"layer{k}.w"], arrays[f"layer{k}.w_shift"],
                                  arrays[f"layer{k}.bias"], neuron,
                                  arrays.get(f"layer{k}.w_rec"), r["w_bits"]))
    params = manifest["parameters"]
    decoder = None
    if manifest["readout"] == c.READOUT_PSC:
        decoder = layers.Decoder(arrays["dec"], arrays["dec_bias"], params["psc_shift"])
    return layers.LayeredNetwork(tuple(built), manifest["readout"], params["rate_bits"],
                                 params["lfsr_seed"], decoder)


def _check_run_fields(manifest: dict, where: str) -> None:
    """The fields every version shares: sizes, run defaults, hash."""
    for key in ("inputs", "classes", "pixel_max", "timesteps"):
        v = manifest.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise NetworkImageError(f"{where}: {key} must be a positive integer, got {v!r}")
    if manifest["pixel_max"] > (1 << c.PIXEL_BITS_MAX) - 1:
        raise NetworkImageError(f"{where}: pixel_max {manifest['pixel_max']} needs more than "
                                f"{c.PIXEL_BITS_MAX} bits")
    if manifest.get("encoder_mode") not in c.MODE_NAMES.values():
        raise NetworkImageError(f"{where}: encoder_mode must be one of "
                                f"{sorted(c.MODE_NAMES.values())}, got "
                                f"{manifest.get('encoder_mode')!r}")
    if not isinstance(manifest.get("hash"), str) or not manifest["hash"].startswith("sha256:"):
        raise NetworkImageError(f"{where}: hash is missing or not of the form 'sha256:<hex>'")


def _check_layered_manifest(manifest: dict, where: str) -> list[dict]:
    """Check a version-3 manifest's own fields (types, formats); returns the layer records."""
    def fail(msg: str):
        raise NetworkImageError(f"{where}: {msg}")

    _check_run_fields(manifest, where)
    formats = manifest.get("formats")
    if formats != FORMATS_V3:
        if not isinstance(formats, dict):
            fail("formats is missing")
        diff = {k: (formats.get(k), v) for k, v in FORMATS_V3.items() if formats.get(k) != v}
        fail("formats differ from this build's constants (image, expected): "
             + ", ".join(f"{k}={a!r} vs {b!r}" for k, (a, b) in diff.items()))
    if manifest.get("readout") not in c.READOUTS:
        fail(f"readout must be one of {list(c.READOUTS)}, got {manifest.get('readout')!r}")
    params = manifest.get("parameters")
    wanted = ["rate_bits", "lfsr_seed"] + (["psc_shift"] if manifest["readout"]
                                           == c.READOUT_PSC else [])
    if not isinstance(params, dict) or sorted(params) != sorted(wanted):
        fail(f"parameters must hold exactly {', '.join(wanted)}")
    for name in wanted:
        if not isinstance(params[name], int) or isinstance(params[name], bool):
            fail(f"parameters.{name} must be an integer, got {params[name]!r}")
    records = manifest.get("layers")
    if not isinstance(records, list) or not 1 <= len(records) <= c.LAYERS_MAX:
        fail(f"layers must be a list of 1 .. {c.LAYERS_MAX} layer records")
    for k, r in enumerate(records):
        if not isinstance(r, dict) or sorted(r) != sorted(LAYER_FIELDS):
            fail(f"layers[{k}] must hold exactly {', '.join(LAYER_FIELDS)}")
        for key, kind in LAYER_FIELDS.items():
            v = r[key]
            if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
                fail(f"layers[{k}].{key} must be {kind.__name__}, got {v!r}")
        if r["neurons"] < 1:
            fail(f"layers[{k}].neurons must be positive, got {r['neurons']}")
        if r["model"] not in c.NEURON_MODELS:
            fail(f"layers[{k}].model must be one of {list(c.NEURON_MODELS)}, "
                 f"got {r['model']!r}")
        if not c.W_BITS_MIN <= r["w_bits"] <= c.W_BITS:
            fail(f"layers[{k}].w_bits must lie in {c.W_BITS_MIN} .. {c.W_BITS}")
    return records
