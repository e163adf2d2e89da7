"""Tests of network images, :mod:`golden.image`: round trip, content hash and validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import MNIST_DIR

from golden import constants as c
from golden import image, layers, model
from golden.neurons import NeuronParams

METADATA = {"dataset": "unit-test", "seed": 7, "accuracy": {"test": 0.5}}


def small_net(**params) -> model.Network:
    """A valid 4-neuron, 3-input, 2-class network with values near the format edges."""
    p = dict(leak_shift=4, psc_shift=4, ref_steps=2, rate_bits=4,
             lfsr_seed=c.LFSR_SEED_DEFAULT)
    p.update(params)
    i64 = np.int64
    return model.Network(
        w_in=np.array([[127, -128, 0], [1, -1, 5], [-7, 33, 100], [0, 0, -2]], dtype=i64),
        w_shift=np.array([0, 15, 3, 7], dtype=i64),
        bias=np.array([-(2**19), 2**19 - 1, 0, -3], dtype=i64),
        v_th=np.array([1, 2**15 - 1, 1024, 900], dtype=i64),
        dec=np.array([[1, -128, 127, 0], [-5, 6, -7, 8]], dtype=i64),
        dec_bias=np.array([-(2**30), 12345], dtype=i64),
        **p)


def save_small(path: Path, net: model.Network | None = None) -> dict:
    return image.save(path, net if net is not None else small_net(), 64, c.MODE_CURRENT, 16,
                      METADATA)


def edit_manifest(path: Path, edit) -> None:
    """Apply ``edit`` to the manifest dict in place and write it back."""
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def rewrite_array(path: Path, name: str, edit, dtype=None) -> None:
    """Load ``name``.npy, apply ``edit`` (returns the new array), save it back."""
    a = np.load(path / f"{name}.npy")
    a = edit(a.astype(np.int64))
    np.save(path / f"{name}.npy", a.astype(dtype or np.int64))


def rehash(path: Path) -> None:
    """Recompute the manifest hash from the files, so only the check under test can fail."""
    arrays = {n: np.load(path / f"{n}.npy").astype(np.int64) for n in image.ARRAYS}
    manifest = json.loads((path / "manifest.json").read_text())
    net = model.Network(**arrays, **manifest["parameters"])
    edit_manifest(path, lambda m: m.update(hash=image.content_hash(net)))


def assert_load_error(path: Path, *fragments: str) -> None:
    with pytest.raises(image.NetworkImageError) as info:
        image.load(path)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def assert_same_network(a: model.Network, b: model.Network) -> None:
    for name in image.ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == np.int64 and y.dtype == np.int64, name
        assert np.array_equal(x, y), name
    for name in image.PARAMETERS:
        assert type(getattr(b, name)) is int, name
        assert getattr(a, name) == getattr(b, name), name


# --- round trip --------------------------------------------------------------------------


def test_round_trip(tmp_path):
    net = small_net()
    saved = save_small(tmp_path / "img", net)
    loaded, manifest = image.load(tmp_path / "img")
    assert_same_network(net, loaded)
    assert manifest == saved
    assert manifest["hash"] == image.content_hash(net) == image.content_hash(loaded)
    assert manifest["metadata"] == METADATA
    assert manifest["pixel_max"] == 16
    assert manifest["timesteps"] == 64
    assert manifest["encoder_mode"] == c.MODE_NAMES[c.MODE_CURRENT] == "current"
    assert (manifest["neurons"], manifest["inputs"], manifest["classes"]) == (4, 3, 2)
    assert manifest["formats"] == image.FORMATS
    # Stored in the smallest little-endian integer type that holds the declared width.
    stored = {"w_in": "<i1", "w_shift": "<i1", "bias": "<i4", "v_th": "<u2", "dec": "<i1",
              "dec_bias": "<i4"}
    assert set(stored) == set(image.ARRAYS)
    for name, dtype in stored.items():
        assert np.load(tmp_path / "img" / f"{name}.npy").dtype == np.dtype(dtype), name
    # Saving again gives byte-identical files (reproducible images).
    save_small(tmp_path / "again", net)
    for f in sorted((tmp_path / "img").iterdir()):
        assert f.read_bytes() == (tmp_path / "again" / f.name).read_bytes(), f.name


def test_round_trip_rate_mode_and_other_dtypes(tmp_path):
    # int32 arrays hash and store the same as int64 ones.
    net = small_net(rate_bits=8, psc_shift=12, leak_shift=0, ref_steps=7, lfsr_seed=2**32 - 1)
    net32 = net._replace(**{n: getattr(net, n).astype(np.int32) for n in image.ARRAYS})
    assert image.content_hash(net32) == image.content_hash(net)
    image.save(tmp_path / "img", net32, 10, c.MODE_RATE, 255, {})
    loaded, manifest = image.load(tmp_path / "img")
    assert_same_network(net, loaded)
    assert manifest["encoder_mode"] == "rate"
    assert manifest["pixel_max"] == 255


def test_save_validates_before_writing(tmp_path):
    bad = small_net()._replace(w_in=np.full((4, 3), 200, dtype=np.int64))
    with pytest.raises(image.NetworkImageError, match="w_in"):
        save_small(tmp_path / "img", bad)
    assert not (tmp_path / "img").exists()


# --- content hash ------------------------------------------------------------------------


def test_content_hash_literal():
    # Pinned regression value, taken from the implementation (the canonical form is not
    # specified closely enough to recompute independently): a change of the canonical form
    # would invalidate the hash of every shipped image.
    assert image.content_hash(small_net()) == (
        "sha256:abc72c42628d678d2d90e4b0af54c4f7c339366a61e57f2f82dfdc9647017f91")


def test_content_hash_sees_every_element_and_parameter():
    net = small_net()
    hashes = {image.content_hash(net)}
    variants = 1
    for name in image.ARRAYS:
        a = getattr(net, name)
        for idx in np.ndindex(a.shape):
            for delta in (1, -1):
                b = a.copy()
                b[idx] += delta
                hashes.add(image.content_hash(net._replace(**{name: b})))
                variants += 1
    for name in image.PARAMETERS:
        for delta in (1, -1):
            hashes.add(image.content_hash(net._replace(**{name: getattr(net, name) + delta})))
            variants += 1
    assert len(hashes) == variants  # every single change gives a new, distinct hash


def test_content_hash_sees_shapes():
    # The same numbers in a different shape are a different network.
    net = small_net()
    flat = net.dec_bias.reshape(1, 2)
    assert image.content_hash(net._replace(dec_bias=flat)) != image.content_hash(net)


def test_content_hash_ignores_metadata(tmp_path):
    a = save_small(tmp_path / "a")
    b = image.save(tmp_path / "b", small_net(), 64, c.MODE_CURRENT, 16, {"other": [1, 2]})
    assert a["hash"] == b["hash"]


# --- validation errors -------------------------------------------------------------------


@pytest.fixture
def img(tmp_path) -> Path:
    path = tmp_path / "img"
    save_small(path)
    image.load(path)  # the starting point is valid
    return path


def test_missing_directory(tmp_path):
    assert_load_error(tmp_path / "nope", "no such network image directory")


def test_missing_manifest(img):
    (img / "manifest.json").unlink()
    assert_load_error(img, "manifest.json: missing")


@pytest.mark.parametrize("text", ["{", "", "not json", "\xff\xfe"])
def test_invalid_json(img, text):
    (img / "manifest.json").write_bytes(text.encode("latin-1"))
    assert_load_error(img, "not valid JSON")


def test_manifest_not_an_object(img):
    (img / "manifest.json").write_text("[1, 2]")
    assert_load_error(img, "must hold a JSON object")


def test_wrong_format(img):
    edit_manifest(img, lambda m: m.update(format="something-else"))
    assert_load_error(img, "format is 'something-else'")


@pytest.mark.parametrize("version", [4, 0, "1", "2", None, True])
def test_unsupported_format_version(img, version):
    edit_manifest(img, lambda m: m.update(format_version=version))
    assert_load_error(img, f"format_version {version!r} is not supported", "versions 1, 2")


def test_missing_arrays_section(img):
    edit_manifest(img, lambda m: m.pop("arrays"))
    assert_load_error(img, "'arrays' is missing")
    edit_manifest(img, lambda m: m.update(arrays={}))
    assert_load_error(img, "arrays.w_in is missing")


@pytest.mark.parametrize("name", list(image.ARRAYS))
def test_missing_array_file(img, name):
    (img / f"{name}.npy").unlink()
    assert_load_error(img, f"{name}.npy: missing")


@pytest.mark.parametrize("content", [b"garbage bytes, not an array", b"", b"\x93NUMPY\x01"])
def test_corrupt_npy(img, content):
    (img / "bias.npy").write_bytes(content)
    assert_load_error(img, "bias.npy: not a readable .npy array")


def test_pickled_object_array_rejected(img):
    np.save(img / "dec.npy", np.array([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=object),
            allow_pickle=True)
    assert_load_error(img, "dec.npy: not a readable .npy array")


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.bool_])
def test_non_integer_dtype(img, dtype):
    rewrite_array(img, "w_in", lambda a: a, dtype=dtype)
    assert_load_error(img, "w_in.npy: dtype", "is not an integer type")


def test_wrong_shape(img):
    rewrite_array(img, "w_in", lambda a: a[:, :-1])
    rehash(img)
    assert_load_error(img, "w_in: shape (4, 2) does not match (neurons, inputs) = (4, 3)")


def test_wrong_sizes_in_manifest(img):
    edit_manifest(img, lambda m: m.update(classes=3))
    assert_load_error(img, "dec: shape (2, 4) does not match (classes, neurons) = (3, 4)")


@pytest.mark.parametrize(("key", "value"), [("neurons", 0), ("inputs", -1), ("classes", 1.0),
                                            ("pixel_max", True), ("timesteps", None)])
def test_bad_sizes(img, key, value):
    edit_manifest(img, lambda m: m.update({key: value}))
    assert_load_error(img, key)


def test_pixel_max_beyond_8_bits(img):
    edit_manifest(img, lambda m: m.update(pixel_max=256))
    assert_load_error(img, "pixel_max 256 needs more than 8 bits")


def test_bad_encoder_mode(img):
    edit_manifest(img, lambda m: m.update(encoder_mode="poisson"))
    assert_load_error(img, "encoder_mode must be one of", "'poisson'")


@pytest.mark.parametrize(("name", "index", "value", "fragment"), [
    ("w_in", (0, 1), 200, "w_in: value 200 is outside the 8-bit signed range -128 .. 127"),
    ("w_in", (3, 2), -129, "w_in: value -129 is outside"),
    ("w_shift", (2,), 16, "w_shift: value 16 is outside the 5-bit signed range -16 .. 15"),
    ("w_shift", (0,), -17, "w_shift: value -17 is outside"),
    ("bias", (1,), 2**31, "bias: value 2147483648 is outside the 32-bit signed range"),
    ("bias", (1,), -(2**31) - 1, "bias: value -2147483649 is outside"),
    ("v_th", (0,), 2**15, "v_th: value 32768 is outside the 15-bit unsigned range"),
    ("dec", (1, 3), 128, "dec: value 128 is outside the 8-bit signed range"),
    ("dec_bias", (0,), 2**31, "dec_bias: value 2147483648 is outside the 32-bit signed range"),
    ("dec_bias", (1,), -(2**31) - 1, "dec_bias: value -2147483649 is outside"),
])
def test_value_outside_width(img, name, index, value, fragment):
    def edit(a):
        a[index] = value
        return a

    rewrite_array(img, name, edit)
    rehash(img)
    assert_load_error(img, fragment)


def test_zero_threshold(img):
    rewrite_array(img, "v_th", lambda a: np.where(np.arange(4) == 2, 0, a))
    rehash(img)
    assert_load_error(img, "v_th: a threshold of 0")


@pytest.mark.parametrize(("name", "value"), [
    ("leak_shift", 16), ("leak_shift", -1), ("psc_shift", 16), ("psc_shift", 0),
    ("ref_steps", 8), ("rate_bits", 0), ("rate_bits", 9), ("lfsr_seed", 0),
    ("lfsr_seed", 2**32), ("leak_shift", 4.0), ("ref_steps", True), ("rate_bits", "4"),
])
def test_parameter_out_of_range(img, name, value):
    edit_manifest(img, lambda m: m["parameters"].update({name: value}))
    assert_load_error(img, f"parameters.{name} must be an integer in", repr(value))


def test_missing_parameter(img):
    edit_manifest(img, lambda m: m["parameters"].pop("ref_steps"))
    assert_load_error(img, "parameters.ref_steps")
    edit_manifest(img, lambda m: m.pop("parameters"))
    assert_load_error(img, "parameters is missing")


def test_psc_shift_zero_rejected_at_save(tmp_path):
    # psc_shift = 0 lets a spike set psc to PSC_ONE (13 bits); see tests/test_model.py.
    with pytest.raises(image.NetworkImageError, match="parameters.psc_shift"):
        save_small(tmp_path / "img", small_net(psc_shift=0))


@pytest.mark.parametrize(("name", "value"), [("W_BITS", 9), ("PSC_BITS", 13),
                                             ("LFSR_TAPS", 0x80200005)])
def test_formats_differ(img, name, value):
    edit_manifest(img, lambda m: m["formats"].update({name: value}))
    assert_load_error(img, "formats differ", f"{name}={value!r} vs {image.FORMATS[name]!r}")


def test_formats_missing(img):
    edit_manifest(img, lambda m: m.pop("formats"))
    assert_load_error(img, "formats is missing")


def test_rate_bits_too_small_for_pixel_max(img):
    edit_manifest(img, lambda m: m["parameters"].update(rate_bits=3))
    rehash(img)
    assert_load_error(img, "rate_bits=3 cannot encode pixel_max 16")


def test_rate_bits_exactly_enough_for_pixel_max(img):
    # 2**4 == 16: a spike is worth exactly pixel_max; allowed.
    edit_manifest(img, lambda m: m.update(pixel_max=16))
    image.load(img)
    edit_manifest(img, lambda m: m.update(pixel_max=17))
    assert_load_error(img, "rate_bits=4 cannot encode pixel_max 17")


def test_score_bound(tmp_path):
    room = c.SCORE_MAX - 4 * 128 * (c.PSC_ONE - 1)
    ok = small_net()._replace(dec_bias=np.array([-room, room], dtype=np.int64))
    save_small(tmp_path / "ok", ok)
    image.load(tmp_path / "ok")
    bad = ok._replace(dec_bias=np.array([-room - 1, 0], dtype=np.int64))
    with pytest.raises(image.NetworkImageError, match=f"can reach {c.SCORE_MAX + 1}"):
        save_small(tmp_path / "bad", bad)


@pytest.mark.parametrize(("w_bits", "most"), [(8, 2**16 - 1), (4, 2**20 - 1)])
def test_accumulator_bound(tmp_path, w_bits, most):
    # inputs * 2**(w_bits-1) * 2**rate_bits must stay below 2**31: at rate_bits 8 that allows
    # at most 65535 inputs with 8-bit weights, 2**20 - 1 with 4-bit ones.
    def net(inputs):
        return model.Network(np.zeros((1, inputs), np.int64), np.zeros(1, np.int64),
                             np.zeros(1, np.int64), np.ones(1, np.int64),
                             np.zeros((2, 1), np.int64), np.zeros(2, np.int64), 0, 1, 0, 8, 1,
                             w_bits=w_bits)

    image.save(tmp_path / "ok", net(most), 1, c.MODE_RATE, 255, {})
    with pytest.raises(image.NetworkImageError, match="beyond 31 bits"):
        image.save(tmp_path / "bad", net(most + 1), 1, c.MODE_RATE, 255, {})


def test_hash_mismatch_after_editing_array(img):
    def edit(a):
        a[1, 2] += 1
        return a

    rewrite_array(img, "w_in", edit)
    assert_load_error(img, "content hash mismatch", "an array or parameter was changed")


def test_hash_mismatch_after_editing_parameter(img):
    edit_manifest(img, lambda m: m["parameters"].update(ref_steps=3))
    assert_load_error(img, "content hash mismatch")


@pytest.mark.parametrize("value", [None, "md5:abc", 5])
def test_hash_malformed(img, value):
    edit_manifest(img, lambda m: m.update(hash=value))
    assert_load_error(img, "hash is missing or not of the form")


@pytest.mark.parametrize("file", ["../x.npy", "sub/w_in.npy", "ABSOLUTE"])
def test_array_file_with_path_component(img, file):
    if file == "ABSOLUTE":
        file = str(img.parent / "elsewhere" / "x.npy")
    # The file exists where the name points, so only the name check can reject it.
    target = img / file  # an absolute ``file`` replaces ``img``
    target.parent.mkdir(parents=True, exist_ok=True)
    np.save(target, np.load(img / "w_in.npy"))
    edit_manifest(img, lambda m: m["arrays"]["w_in"].update(file=file))
    assert_load_error(img, "arrays.w_in.file must be a plain name")


def test_array_file_renamed_is_followed(img):
    # A plain name other than the default is allowed and is what gets loaded.
    (img / "w_in.npy").rename(img / "weights.npy")
    edit_manifest(img, lambda m: m["arrays"]["w_in"].update(file="weights.npy"))
    net, _ = image.load(img)
    assert np.array_equal(net.w_in, small_net().w_in)


# --- the shipped image -------------------------------------------------------------------


def test_shipped_digits_image_loads(shipped_dir):
    # Deliberately not skipped when absent: the shipped image is part of the repository.
    net, manifest = image.load(shipped_dir)
    assert manifest["hash"] == image.content_hash(net)
    assert (net.inputs, net.classes) == (64, 10)
    assert manifest["pixel_max"] == 16
    assert manifest["encoder_mode"] in c.MODE_NAMES.values()


# --- checks added after review -----------------------------------------------------------


def test_declared_array_width_must_match(img):
    edit_manifest(img, lambda m: m["arrays"]["w_in"].update(bits=3))
    assert_load_error(img, "arrays.w_in declares", "bits 3")


def test_declared_signedness_must_match(img):
    edit_manifest(img, lambda m: m["arrays"]["w_shift"].update(signed=False))
    assert_load_error(img, "arrays.w_shift declares")


def test_huge_uint64_values_are_refused(img):
    rewrite_array(img, "w_shift", lambda a: a, dtype=np.uint64)
    a = np.load(img / "w_shift.npy")
    a[0] = np.iinfo(np.uint64).max  # would wrap to -1 if converted blindly
    np.save(img / "w_shift.npy", a)
    assert_load_error(img, "w_shift.npy", "beyond any declared width")


def test_manifest_that_is_a_directory(tmp_path):
    (tmp_path / "img" / "manifest.json").mkdir(parents=True)
    assert_load_error(tmp_path / "img", "manifest.json: cannot be read")


@pytest.mark.parametrize(("name", "value"), [("leak_shift", 15), ("psc_shift", 13)])
def test_dead_shift_settings_refused(tmp_path, name, value):
    with pytest.raises(image.NetworkImageError, match=f"parameters.{name}"):
        save_small(tmp_path / "img", small_net(**{name: value}))


# --- weight width and signed shift (format version 2) --------------------------------------


def int4_net() -> model.Network:
    """A valid network with 4-bit weights (both ends of -8 .. 7) and the whole shift range."""
    return small_net()._replace(
        w_in=np.array([[7, -8, 0], [1, -1, 5], [-7, 3, 6], [0, 0, -2]], dtype=np.int64),
        w_shift=np.array([c.W_SHIFT_MIN, c.W_SHIFT_MAX, -1, 0], dtype=np.int64),
        bias=np.array([-(2**31), 2**31 - 1, 0, -3], dtype=np.int64), w_bits=4)


def test_round_trip_four_bit_weights_and_negative_shifts(tmp_path):
    net = int4_net()
    manifest = save_small(tmp_path / "img", net)
    assert manifest["w_bits"] == 4 and manifest["format_version"] == image.FORMAT_VERSION == 2
    assert manifest["arrays"]["w_in"]["bits"] == 4
    assert manifest["arrays"]["w_shift"] == {"file": "w_shift.npy", "shape": [4],
                                             "signed": True, "bits": c.W_SHIFT_BITS}
    loaded, again = image.load(tmp_path / "img")
    assert_same_network(net, loaded)
    assert loaded.w_bits == 4 and type(loaded.w_bits) is int and again == manifest


def test_w_bits_is_not_hashed_and_defaults_to_eight():
    # The integers, not the width that stores them, decide every result.
    net = int4_net()
    assert image.content_hash(net) == image.content_hash(net._replace(w_bits=8))
    assert small_net().w_bits == c.W_BITS == 8


@pytest.mark.parametrize("value", [8, -9])
def test_weight_outside_w_bits(tmp_path, value):
    bad = int4_net()
    bad.w_in[1, 1] = value
    with pytest.raises(image.NetworkImageError,
                       match=f"w_in: value {value} is outside the 4-bit signed range -8 .. 7"):
        save_small(tmp_path / "img", bad)
    # ... and on loading, when the manifest says 4 bits of an 8-bit image.
    save_small(tmp_path / "wide", bad._replace(w_bits=8))
    edit_manifest(tmp_path / "wide", lambda m: (m.update(w_bits=4),
                                                m["arrays"]["w_in"].update(bits=4)))
    assert_load_error(tmp_path / "wide", f"w_in: value {value} is outside the 4-bit")


@pytest.mark.parametrize("value", [1, 9, 0, "4", 4.0, True, None])
def test_bad_w_bits(img, value):
    edit_manifest(img, lambda m: m.update(w_bits=value))
    assert_load_error(img, "w_bits must be an integer in 2 .. 8", repr(value))


def test_w_bits_range_at_save(tmp_path):
    for w_bits in (2, 8):
        save_small(tmp_path / f"ok{w_bits}",
                   small_net(w_bits=w_bits)._replace(w_in=np.ones((4, 3), np.int64)))
    with pytest.raises(image.NetworkImageError, match="w_bits must be"):
        save_small(tmp_path / "bad", small_net(w_bits=9))


def as_version_1(path: Path) -> None:
    """Rewrite a version-2 image in place as version 1 wrote it: no w_bits, formats and array
    declarations of version 1 (unsigned 4-bit w_shift, 20-bit bias), w_shift stored <u1."""
    def edit(m):
        assert m.pop("w_bits") == 8
        m["format_version"] = 1
        m["formats"].update(W_SHIFT_BITS=4, B_BITS=20)
        m["arrays"]["w_shift"].update(signed=False, bits=4)
        m["arrays"]["bias"].update(bits=20)

    edit_manifest(path, edit)
    rewrite_array(path, "w_shift", lambda a: a, dtype="<u1")


def v1_net() -> model.Network:
    return small_net()._replace(bias=np.array([-(2**19), 2**19 - 1, 0, -3], dtype=np.int64))


def test_version_1_images_still_load(tmp_path):
    path = tmp_path / "v1"
    manifest = save_small(path, v1_net())
    as_version_1(path)
    net, loaded = image.load(path)
    assert loaded["format_version"] == 1 and "w_bits" not in loaded
    assert net.w_bits == 8
    assert_same_network(v1_net(), net)
    # The same network hashes the same in both versions.
    assert loaded["hash"] == manifest["hash"] == image.content_hash(net)
    assert loaded["formats"] == image.FORMATS_V1 != image.FORMATS


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("w_shift", -1, "w_shift: value -1 is outside the 4-bit unsigned range 0 .. 15"),
    ("bias", 2**19, "bias: value 524288 is outside the 20-bit signed range"),
])
def test_version_1_keeps_its_own_ranges(tmp_path, name, value, fragment):
    path = tmp_path / "v1"
    save_small(path, v1_net())
    as_version_1(path)

    def edit(a):
        a[1] = value
        return a

    rewrite_array(path, name, edit)
    rehash(path)
    assert_load_error(path, fragment)


def test_version_1_with_version_2_fields_refused(tmp_path):
    path = tmp_path / "v1"
    save_small(path, v1_net())
    as_version_1(path)
    edit_manifest(path, lambda m: m.update(w_bits=8))
    assert_load_error(path, "w_bits is not a field of format version 1")
    edit_manifest(path, lambda m: (m.pop("w_bits"), m["formats"].update(W_SHIFT_BITS=5)))
    assert_load_error(path, "formats differ", "W_SHIFT_BITS=5 vs 4")
    # A version-2 manifest with version 1's formats is refused too.
    save_small(tmp_path / "v2", v1_net())
    edit_manifest(tmp_path / "v2", lambda m: m["formats"].update(B_BITS=20))
    assert_load_error(tmp_path / "v2", "formats differ", "B_BITS=20 vs 32")


@pytest.mark.parametrize("name", ["digits", "digits-small", "mnist"])
def test_every_shipped_image_loads_and_records_its_training(name):
    from firmware import IMAGES_DIR

    net, manifest = image.load(IMAGES_DIR / name)
    meta = manifest["metadata"]
    assert manifest["hash"] == image.content_hash(net)
    assert {"dataset", "split", "seed", "test_accuracy"} <= set(meta)




@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"MNIST IDX files not present at {MNIST_DIR}")
def test_the_mnist_image_classifies_mnist():
    from firmware import MNIST_IMAGE
    from golden import data, model

    net, manifest = image.load(MNIST_IMAGE)
    assert (net.inputs, net.neurons, net.w_bits) == (784, 512, 4)
    split = data.load_split("mnist", MNIST_DIR)
    x, y = split.x_test[:1000], split.y_test[:1000]
    result = model.run(x, net, 32, 0)
    # the manifest's figure is over all 10,000 test images; the first 1,000 are close to it
    assert (result.classes[-1] == y).mean() > 0.96


# --- format version 3: networks of layers (golden.layers) ---------------------------------


def v3_neuron(kind: str, n: int) -> NeuronParams:
    """``n`` neurons of ``kind``, named as golden.layers.neuron_models names it, with values
    near the format edges."""
    v_th = np.resize(np.array([1, 2**15 - 1, 1024, 900, 333], dtype=np.int64), n)
    beta = np.resize(np.array([0, 4095, 3891, 2048], dtype=np.int64), n)
    leaky = dict(v_th=v_th, model=c.NEURON_LEAKY, beta=beta)
    return {
        "lif": NeuronParams(v_th, c.NEURON_LIF, leak_shift=3, ref_steps=2),
        "alif": NeuronParams(v_th, c.NEURON_LIF, leak_shift=1, ref_steps=7, adapt_step=300,
                             adapt_shift=4),
        "leaky-zero": NeuronParams(**leaky, reset=c.RESET_ZERO),
        "leaky-subtract": NeuronParams(**leaky, reset=c.RESET_SUBTRACT),
        "leaky-zero-adaptive": NeuronParams(**leaky, reset=c.RESET_ZERO, adapt_step=1,
                                            adapt_shift=15),
        "leaky-subtract-adaptive": NeuronParams(**leaky, reset=c.RESET_SUBTRACT,
                                                adapt_step=2**15 - 1, adapt_shift=1),
        "li-lif": NeuronParams(None, c.NEURON_LIF, leak_shift=c.V_BITS - 2, spiking=False),
        "li-leaky": NeuronParams(None, c.NEURON_LEAKY, beta=beta, spiking=False),
    }[kind]


def v3_weights(shape: tuple[int, ...], bits: int, seed: int) -> np.ndarray:
    """Fixed signed ``bits``-wide integers, both ends of the range included."""
    lo, hi = c.signed_range(bits)
    a = np.random.default_rng(seed).integers(lo, hi + 1, size=shape, dtype=np.int64)
    a.flat[0], a.flat[-1] = lo, hi
    return a


def v3_layer(kind: str, n: int, fan_in: int, recurrent: bool = False, w_bits: int = c.W_BITS,
             seed: int = 0) -> layers.Layer:
    w_shift = np.resize(np.array([c.W_SHIFT_MIN, c.W_SHIFT_MAX, -3, 0], dtype=np.int64), n)
    bias = np.resize(np.array([-(2**31), 2**31 - 1, 5, -7], dtype=np.int64), n)
    w_rec = v3_weights((n, n), w_bits, seed + 100) if recurrent else None
    return layers.Layer(v3_weights((n, fan_in), w_bits, seed), w_shift, bias, v3_neuron(kind, n),
                        w_rec, w_bits)


def v3_net(readout: str, *specs, inputs: int = 3, classes: int = 2,
           rate_bits: int = 4) -> layers.LayeredNetwork:
    """A layered network from ``(name, neurons[, w_bits])`` specs, the name as
    golden.layers.neuron_models gives it (``+rec``: recurrent); a decoder for ``psc``."""
    built, fan_in = [], inputs
    for k, (name, n, *w_bits) in enumerate(specs):
        built.append(v3_layer(name.removesuffix("+rec"), n, fan_in, name.endswith("+rec"),
                              *w_bits, seed=k))
        fan_in = n
    decoder = None
    if readout == c.READOUT_PSC:
        decoder = layers.Decoder(v3_weights((classes, fan_in), c.D_BITS, 99),
                                 np.resize(np.array([-(2**30), 12345], dtype=np.int64), classes),
                                 5)
    return layers.LayeredNetwork(tuple(built), readout, rate_bits, c.LFSR_SEED_DEFAULT, decoder)


def with_layer(net: layers.LayeredNetwork, k: int, **fields) -> layers.LayeredNetwork:
    """``net`` with fields of layer ``k`` (of Layer, or of its NeuronParams) replaced."""
    layer = net.layers[k]
    neuron = {f: v for f, v in fields.items() if f in NeuronParams._fields}
    rest = {f: v for f, v in fields.items() if f not in neuron}
    layer = layer._replace(neuron=layer.neuron._replace(**neuron), **rest)
    return net._replace(layers=net.layers[:k] + (layer,) + net.layers[k + 1:])


def save_v3(path: Path, net: layers.LayeredNetwork, **run) -> dict:
    defaults = dict(timesteps=16, encoder_mode=c.MODE_CURRENT, pixel_max=16, metadata=METADATA)
    return image.save_layers(path, net, **{**defaults, **run})


def save_v3_unchecked(monkeypatch, path: Path, net: layers.LayeredNetwork) -> dict:
    """Write ``net`` as save_layers would, without its validation (an invalid image)."""
    with monkeypatch.context() as m:
        m.setattr(layers, "validate", lambda net, pixel_max: None)
        return save_v3(path, net)


def v3_from_files(path: Path) -> layers.LayeredNetwork:
    """The network the files of a version-3 image hold, as its manifest describes them,
    without any check."""
    m = json.loads((path / "manifest.json").read_text())
    arrays = {name: np.load(path / decl["file"]).astype(np.int64)
              for name, decl in m["arrays"].items()}
    built = []
    for k, r in enumerate(m["layers"]):
        neuron = NeuronParams(arrays.get(f"layer{k}.v_th"), r["model"], r["leak_shift"],
                              r["ref_steps"], arrays.get(f"layer{k}.beta"), r["reset"],
                              r["adapt_step"], r["adapt_shift"], r["spiking"])
        built.append(layers.Layer(arrays[f"layer{k}.w"], arrays[f"layer{k}.w_shift"],
                                  arrays[f"layer{k}.bias"], neuron,
                                  arrays.get(f"layer{k}.w_rec"), r["w_bits"]))
    p = m["parameters"]
    decoder = (layers.Decoder(arrays["dec"], arrays["dec_bias"], p["psc_shift"])
               if "dec" in arrays else None)
    return layers.LayeredNetwork(tuple(built), m["readout"], p["rate_bits"], p["lfsr_seed"],
                                 decoder)


def rehash_v3(path: Path) -> None:
    """Recompute a version-3 manifest's hash from the files, so only the check under test
    can fail."""
    edit_manifest(path, lambda m: m.update(hash=image.layered_hash(v3_from_files(path))))


def assert_load_layers_error(path: Path, *fragments: str) -> str:
    with pytest.raises(image.NetworkImageError) as info:
        image.load_layers(path)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return str(info.value)


def assert_same_array(a, b, where: str) -> None:
    if a is None:
        assert b is None, where
        return
    assert a.dtype == np.int64 and b.dtype == np.int64, where
    assert np.array_equal(a, b), where


def assert_same_layered(a: layers.LayeredNetwork, b: layers.LayeredNetwork) -> None:
    assert b.readout == a.readout and len(b.layers) == len(a.layers)
    for name in ("rate_bits", "lfsr_seed"):
        assert type(getattr(b, name)) is int and getattr(b, name) == getattr(a, name), name
    for k, (x, y) in enumerate(zip(a.layers, b.layers, strict=True)):
        for name in ("w", "w_shift", "bias", "w_rec"):
            assert_same_array(getattr(x, name), getattr(y, name), f"layer{k}.{name}")
        for name in ("v_th", "beta"):
            assert_same_array(getattr(x.neuron, name), getattr(y.neuron, name), f"layer{k}.{name}")
        assert type(y.w_bits) is int and y.w_bits == x.w_bits, f"layer{k}.w_bits"
        for name, kind in [("leak_shift", int), ("ref_steps", int), ("adapt_step", int),
                           ("adapt_shift", int), ("model", str), ("reset", str),
                           ("spiking", bool)]:
            got = getattr(y.neuron, name)
            assert type(got) is kind and got == getattr(x.neuron, name), f"layer{k}.{name}"
    if a.decoder is None:
        assert b.decoder is None
    else:
        assert_same_array(a.decoder.dec, b.decoder.dec, "dec")
        assert_same_array(a.decoder.dec_bias, b.decoder.dec_bias, "dec_bias")
        assert type(b.decoder.psc_shift) is int and b.decoder.psc_shift == a.decoder.psc_shift


#: (readout, layer specs) of every neuron model and readout, with 1 to 3 layers.
V3_NETWORKS = [
    ("psc", [("lif", 4)]),  # the classic network
    ("psc", [("alif", 4)]),
    ("psc", [("leaky-zero", 4), ("lif", 3)]),
    ("psc", [("lif+rec", 4, 4), ("alif+rec", 3)]),
    ("spikes", [("leaky-subtract", 4), ("leaky-zero-adaptive", 3), ("lif", 2)]),
    ("spikes", [("leaky-subtract-adaptive+rec", 3)]),
    ("li", [("lif", 4), ("li-lif", 3)]),
    ("li", [("alif", 5, 2), ("leaky-zero+rec", 4), ("li-leaky", 2)]),
    ("li", [("li-leaky", 2)]),
    ("li", [("li-lif", 3, 3)]),
]
V3_IDS = [f"{readout}-{'-'.join(name for name, *_ in specs)}" for readout, specs in V3_NETWORKS]
#: Stored dtype of a version-3 array by the last part of its name (w_bits <= 8).
V3_STORED = {"w": "<i1", "w_shift": "<i1", "bias": "<i4", "v_th": "<u2", "beta": "<u2",
             "w_rec": "<i1", "dec": "<i1", "dec_bias": "<i4"}


@pytest.mark.parametrize(("readout", "specs"), V3_NETWORKS, ids=V3_IDS)
def test_v3_round_trip(tmp_path, readout, specs):
    net = v3_net(readout, *specs)
    saved = save_v3(tmp_path / "img", net)
    loaded, manifest = image.load_layers(tmp_path / "img")
    assert_same_layered(net, loaded)
    assert manifest == saved
    assert manifest["format_version"] == image.LAYERED_VERSION == 3
    assert manifest["formats"] == image.FORMATS_V3
    assert manifest["hash"] == image.layered_hash(net) == image.layered_hash(loaded)
    assert manifest["metadata"] == METADATA and manifest["readout"] == readout
    assert (manifest["inputs"], manifest["classes"]) == (3, loaded.classes)
    assert layers.neuron_models(loaded) == [name for name, *_ in specs]
    assert [r["w_bits"] for r in manifest["layers"]] == [layer.w_bits for layer in net.layers]
    # One file per declared array, in the smallest type that holds its width.
    files = {decl["file"]: name for name, decl in manifest["arrays"].items()}
    assert {f.name for f in (tmp_path / "img").iterdir()} == {"manifest.json", *files}
    for file, name in files.items():
        stored = np.load(tmp_path / "img" / file).dtype
        assert stored == np.dtype(V3_STORED[name.split(".")[-1]]), name
    # Saving again gives byte-identical files.
    save_v3(tmp_path / "again", net)
    for f in sorted((tmp_path / "img").iterdir()):
        assert f.read_bytes() == (tmp_path / "again" / f.name).read_bytes(), f.name


def test_v3_round_trip_rate_mode_and_int32_arrays(tmp_path):
    net = v3_net("psc", ("leaky-subtract-adaptive+rec", 4), ("alif", 3), rate_bits=8)
    net32 = net._replace(decoder=net.decoder._replace(dec=net.decoder.dec.astype(np.int32)))
    net32 = with_layer(net32, 0, w=net.layers[0].w.astype(np.int32),
                       beta=net.layers[0].neuron.beta.astype(np.int32))
    assert image.layered_hash(net32) == image.layered_hash(net)
    save_v3(tmp_path / "img", net32, timesteps=10, encoder_mode=c.MODE_RATE, pixel_max=255,
            metadata={})
    loaded, manifest = image.load_layers(tmp_path / "img")
    assert_same_layered(net, loaded)
    assert (manifest["encoder_mode"], manifest["pixel_max"], manifest["timesteps"]) == (
        "rate", 255, 10)


def test_v3_four_layers_is_the_most(tmp_path):
    net = v3_net("spikes", ("lif", 3), ("alif", 3), ("leaky-zero", 3), ("lif", 2))
    assert len(net.layers) == c.LAYERS_MAX
    save_v3(tmp_path / "img", net)
    assert_same_layered(net, image.load_layers(tmp_path / "img")[0])


def test_v3_classic_network(tmp_path):
    # The single-layer LIF network with a PSC readout keeps its hash and loads everywhere.
    classic = small_net()
    net = layers.from_classic(classic)
    assert layers.is_classic(net)
    manifest = save_v3(tmp_path / "v3", net, timesteps=64)
    assert manifest["hash"] == image.layered_hash(net) == image.content_hash(classic)
    loaded, again = image.load(tmp_path / "v3")
    assert isinstance(loaded, model.Network)
    assert_same_network(classic, loaded)
    assert type(loaded.w_bits) is int and loaded.w_bits == classic.w_bits
    assert again == manifest and again["format_version"] == 3
    lnet, _ = image.load_layers(tmp_path / "v3")
    assert_same_layered(net, lnet)
    # A version-2 image of it loads as the same layered network, with the same hash.
    v2 = save_small(tmp_path / "v2", classic)
    lnet, m2 = image.load_layers(tmp_path / "v2")
    assert_same_layered(layers.from_classic(classic), lnet)
    assert m2 == v2 and m2["hash"] == manifest["hash"] == image.layered_hash(lnet)


def test_v3_classic_four_bit_weights(tmp_path):
    classic = int4_net()
    manifest = save_v3(tmp_path / "v3", layers.from_classic(classic))
    assert manifest["layers"][0]["w_bits"] == 4 and manifest["arrays"]["layer0.w"]["bits"] == 4
    assert manifest["hash"] == image.content_hash(classic)
    loaded, _ = image.load(tmp_path / "v3")
    assert_same_network(classic, loaded)
    assert loaded.w_bits == 4


def test_load_layers_reads_version_1(tmp_path):
    path = tmp_path / "v1"
    manifest = save_small(path, v1_net())
    as_version_1(path)
    lnet, loaded = image.load_layers(path)
    assert loaded["format_version"] == 1
    assert_same_layered(layers.from_classic(v1_net()), lnet)
    assert image.layered_hash(lnet) == manifest["hash"]


@pytest.mark.parametrize(("readout", "specs"), V3_NETWORKS[1:], ids=V3_IDS[1:])
def test_load_refuses_a_layered_network(tmp_path, readout, specs):
    net = v3_net(readout, *specs)
    assert not layers.is_classic(net)
    save_v3(tmp_path / "img", net)
    with pytest.raises(image.NetworkImageError) as info:
        image.load(tmp_path / "img")
    message = str(info.value)
    for fragment in (f"layers {net.sizes}", f"a {readout} readout", "golden.layers",
                     *layers.neuron_models(net)):
        assert fragment in message, message


def test_load_of_a_malformed_v3_image_names_the_fault(tmp_path):
    save_v3(tmp_path / "img", v3_net("psc", ("lif", 4)))
    edit_manifest(tmp_path / "img", lambda m: m["layers"][0].update(spiking=1))
    assert_load_error(tmp_path / "img", "layers[0].spiking must be bool, got 1")


def test_a_version_2_manifest_is_not_a_version_3_one(img):
    edit_manifest(img, lambda m: m.update(format_version=3))
    assert_load_error(img, "formats differ", "BETA_FRAC=None vs 12")
    assert_load_layers_error(img, "formats differ", "ADAPT_BITS=None vs 16")


# --- version 3: content hash ---------------------------------------------------------------


def v3_hash_base() -> layers.LayeredNetwork:
    """Every kind of array and record field: a recurrent adaptive leaky layer, an ALIF layer
    and a PSC decoder."""
    return v3_net("psc", ("leaky-subtract-adaptive+rec", 4), ("alif", 3, 4))


def v3_arrays(net: layers.LayeredNetwork):
    """``(k, field, array)`` for every array of ``net``; ``k`` None for the decoder."""
    for k, layer in enumerate(net.layers):
        for name in ("w", "w_shift", "bias", "w_rec"):
            if getattr(layer, name) is not None:
                yield k, name, getattr(layer, name)
        for name in ("v_th", "beta"):
            if getattr(layer.neuron, name) is not None:
                yield k, name, getattr(layer.neuron, name)
    if net.decoder is not None:
        yield None, "dec", net.decoder.dec
        yield None, "dec_bias", net.decoder.dec_bias


def with_array(net: layers.LayeredNetwork, k: int | None, name: str, a: np.ndarray):
    if k is None:
        return net._replace(decoder=net.decoder._replace(**{name: a}))
    return with_layer(net, k, **{name: a})


def test_layered_hash_sees_every_element():
    net = v3_hash_base()
    hashes = {image.layered_hash(net)}
    variants = 1
    for k, name, a in v3_arrays(net):
        for idx in np.ndindex(a.shape):
            for delta in (1, -1):
                b = a.copy()
                b[idx] += delta
                hashes.add(image.layered_hash(with_array(net, k, name, b)))
                variants += 1
    assert variants > 100
    assert len(hashes) == variants  # every single change gives a new, distinct hash


def v3_record_changes(net: layers.LayeredNetwork):
    """``(what, network)`` with one field of one layer's record (or one network parameter)
    changed; the arrays a field brings or drops change with it."""
    for k, layer in enumerate(net.layers):
        p, n = layer.neuron, layer.neurons
        beta = np.full(n, 100, dtype=np.int64)
        if p.model == c.NEURON_LIF:
            yield f"{k}.model", with_layer(net, k, model=c.NEURON_LEAKY, beta=beta)
        else:
            yield f"{k}.model", with_layer(net, k, model=c.NEURON_LIF, beta=None)
        other = c.RESET_ZERO if p.reset == c.RESET_SUBTRACT else c.RESET_SUBTRACT
        yield f"{k}.reset", with_layer(net, k, reset=other)
        for name in ("leak_shift", "ref_steps", "adapt_step", "adapt_shift"):
            yield f"{k}.{name}", with_layer(net, k, **{name: getattr(p, name) + 1})
        yield f"{k}.spiking", with_layer(net, k, spiking=False, v_th=None)
        if layer.w_rec is not None:
            yield f"{k}.recurrent", with_layer(net, k, w_rec=None)
    for name in ("rate_bits", "lfsr_seed"):
        for delta in (1, -1):
            yield f"{name}{delta:+}", net._replace(**{name: getattr(net, name) + delta})
    for delta in (1, -1):
        d = net.decoder
        yield f"psc_shift{delta:+}", net._replace(decoder=d._replace(psc_shift=d.psc_shift
                                                                    + delta))
    yield "readout", net._replace(readout=c.READOUT_SPIKES, decoder=None)
    yield "layers", net._replace(layers=net.layers[:1])


def test_layered_hash_sees_every_record_field_and_parameter():
    net = v3_hash_base()
    changes = dict(v3_record_changes(net))
    assert len(changes) == 2 * 8 - 1 + 4 + 2 + 2  # layer 1 is not recurrent
    hashes = {what: image.layered_hash(changed) for what, changed in changes.items()}
    assert image.layered_hash(net) not in hashes.values()
    assert len(set(hashes.values())) == len(hashes), hashes


@pytest.mark.parametrize("base", [v3_hash_base, lambda: layers.from_classic(small_net())],
                         ids=["layered", "classic"])
def test_layered_hash_ignores_w_bits(base):
    # The integers, not the width that stores them, decide every result.
    net = base()
    for k in range(len(net.layers)):
        for w_bits in (c.W_BITS_MIN, 5, c.W_BITS):
            assert image.layered_hash(with_layer(net, k, w_bits=w_bits)) == image.layered_hash(net)


def test_layered_hash_ignores_run_defaults_and_metadata(tmp_path):
    net = v3_hash_base()
    a = save_v3(tmp_path / "a", net)
    b = save_v3(tmp_path / "b", net, timesteps=3, encoder_mode=c.MODE_RATE, pixel_max=2,
                metadata={"other": [1, 2]})
    assert a["hash"] == b["hash"]


def test_classic_change_of_any_field_changes_the_hash():
    # Making the classic network adaptive, recurrent, leaky or two layers deep leaves the
    # classic hash (content_hash) for the layered one.
    net = layers.from_classic(small_net())
    classic = image.layered_hash(net)
    changed = [
        with_layer(net, 0, adapt_step=1),
        with_layer(net, 0, w_rec=np.zeros((4, 4), dtype=np.int64)),
        with_layer(net, 0, model=c.NEURON_LEAKY, beta=np.zeros(4, dtype=np.int64),
                   leak_shift=0),
        net._replace(layers=net.layers * 2),
        net._replace(readout=c.READOUT_SPIKES, decoder=None),
        with_layer(net, 0, ref_steps=3),
        with_layer(net, 0, leak_shift=5),
    ]
    hashes = {image.layered_hash(n) for n in changed}
    assert classic not in hashes and len(hashes) == len(changed)


# --- version 3: validation errors ------------------------------------------------------------


@pytest.fixture
def img3(tmp_path) -> Path:
    """A valid version-3 image: layer 0 recurrent adaptive leaky (4), layer 1 ALIF with 4-bit
    weights (3), a PSC decoder (2 classes)."""
    path = tmp_path / "img3"
    save_v3(path, v3_hash_base())
    image.load_layers(path)  # the starting point is valid
    return path


@pytest.fixture
def li_img(tmp_path) -> Path:
    """A valid version-3 image with an li readout: LIF (4), then a leaky integrator (2)."""
    path = tmp_path / "li"
    save_v3(path, v3_net("li", ("lif", 4), ("li-leaky", 2)))
    image.load_layers(path)
    return path


def set_element(index, value):
    def edit(a):
        a[index] = value
        return a

    return edit


@pytest.mark.parametrize("edit", [lambda r: r.pop("adapt_shift"), lambda r: r.update(tau=3),
                                  lambda r: r.clear()], ids=["missing", "extra", "empty"])
def test_v3_layer_record_keys(img3, edit):
    edit_manifest(img3, lambda m: edit(m["layers"][1]))
    assert_load_layers_error(img3, "layers[1] must hold exactly neurons, w_bits, model")


def test_v3_layer_record_not_an_object(img3):
    edit_manifest(img3, lambda m: m["layers"].__setitem__(0, [4, 8]))
    assert_load_layers_error(img3, "layers[0] must hold exactly")


@pytest.mark.parametrize(("key", "value", "kind"), [
    ("spiking", 1, "bool"), ("recurrent", 0, "bool"), ("spiking", "true", "bool"),
    ("neurons", True, "int"), ("neurons", 4.0, "int"), ("w_bits", "8", "int"),
    ("leak_shift", None, "int"), ("adapt_step", False, "int"), ("model", 1, "str"),
    ("reset", None, "str"),
])
def test_v3_layer_record_types(img3, key, value, kind):
    edit_manifest(img3, lambda m: m["layers"][0].update({key: value}))
    assert_load_layers_error(img3, f"layers[0].{key} must be {kind}, got {value!r}")


@pytest.mark.parametrize(("k", "key", "value", "fragment"), [
    (0, "model", "izhikevich", "layers[0].model must be one of ['lif', 'leaky'], got 'izhikevich'"),
    (0, "neurons", 0, "layers[0].neurons must be positive, got 0"),
    (1, "w_bits", 9, "layers[1].w_bits must lie in 2 .. 8"),
    (1, "w_bits", 1, "layers[1].w_bits must lie in 2 .. 8"),
    (0, "reset", "none", "layer 0.neuron.reset must be one of ['zero', 'subtract'], got 'none'"),
    (1, "reset", "subtract", "layer 1.neuron: a lif neuron has no beta and resets to zero"),
    (0, "leak_shift", 1, "layer 0.neuron: a leaky neuron has no leak_shift and no ref_steps"),
    (1, "leak_shift", 15, "layer 1.neuron.leak_shift must be an integer in 0 .. 14, got 15"),
    (1, "ref_steps", 8, "layer 1.neuron.ref_steps must be an integer in 0 .. 7, got 8"),
    (1, "adapt_step", 2**15, "layer 1.neuron.adapt_step must be an integer in 0 .. 32767"),
    (1, "adapt_shift", 16, "layer 1.neuron.adapt_shift must be an integer in 0 .. 15"),
    (1, "adapt_step", 0, "layer 1.neuron: adapt_shift without adapt_step"),
])
def test_v3_layer_record_values(img3, k, key, value, fragment):
    edit_manifest(img3, lambda m: m["layers"][k].update({key: value}))
    assert_load_layers_error(img3, fragment)


@pytest.mark.parametrize(("step", "shift"), [(2, 15), (2**14, 2), (2**15 - 1, 2)])
def test_v3_adaptation_beyond_adapt_bits(img3, step, shift):
    edit_manifest(img3, lambda m: m["layers"][1].update(adapt_step=step, adapt_shift=shift))
    rehash_v3(img3)
    assert_load_layers_error(img3, f"layer 1.neuron: adapt_step << adapt_shift = {step << shift}"
                             f" exceeds the {c.ADAPT_BITS}-bit adaptation")


@pytest.mark.parametrize(("step", "shift"), [(2**15 - 1, 1), (1, 15), (2**15 - 1, 0)])
def test_v3_adaptation_within_adapt_bits(img3, step, shift):
    assert step << shift <= (1 << c.ADAPT_BITS) - 1
    edit_manifest(img3, lambda m: m["layers"][1].update(adapt_step=step, adapt_shift=shift))
    rehash_v3(img3)
    net, _ = image.load_layers(img3)
    assert (net.layers[1].neuron.adapt_step, net.layers[1].neuron.adapt_shift) == (step, shift)


@pytest.mark.parametrize("readout", ["softmax", None, 1])
def test_v3_unknown_readout(img3, readout):
    edit_manifest(img3, lambda m: m.update(readout=readout))
    assert_load_layers_error(img3, "readout must be one of ['psc', 'li', 'spikes']",
                             f"got {readout!r}")


@pytest.mark.parametrize("records", [lambda rs: rs * 3, lambda rs: [], lambda rs: rs[0]],
                         ids=["too-many", "none", "not-a-list"])
def test_v3_number_of_layers(img3, records):
    edit_manifest(img3, lambda m: m.update(layers=records(m["layers"])))
    assert_load_layers_error(img3, f"layers must be a list of 1 .. {c.LAYERS_MAX} layer records")


@pytest.mark.parametrize(("name", "value"), [("BETA_FRAC", 11), ("ADAPT_BITS", 17),
                                             ("V_BITS", 17)])
def test_v3_formats_differ(img3, name, value):
    edit_manifest(img3, lambda m: m["formats"].update({name: value}))
    assert_load_layers_error(img3, "formats differ",
                             f"{name}={value!r} vs {image.FORMATS_V3[name]!r}")


def test_v3_formats_missing(img3):
    edit_manifest(img3, lambda m: m.pop("formats"))
    assert_load_layers_error(img3, "formats is missing")
    edit_manifest(img3, lambda m: m.update(formats=dict(image.FORMATS)))
    assert_load_layers_error(img3, "BETA_FRAC=None vs 12", "ADAPT_BITS=None vs 16")


def test_v3_parameters_of_a_psc_readout(img3):
    edit_manifest(img3, lambda m: m["parameters"].pop("psc_shift"))
    assert_load_layers_error(img3, "parameters must hold exactly rate_bits, lfsr_seed, psc_shift")
    edit_manifest(img3, lambda m: m["parameters"].update(psc_shift=5, leak_shift=3))
    assert_load_layers_error(img3, "parameters must hold exactly rate_bits, lfsr_seed, psc_shift")
    edit_manifest(img3, lambda m: m.pop("parameters"))
    assert_load_layers_error(img3, "parameters must hold exactly")


def test_v3_parameters_of_an_li_readout(li_img):
    edit_manifest(li_img, lambda m: m["parameters"].update(psc_shift=5))
    message = assert_load_layers_error(li_img, "parameters must hold exactly rate_bits, lfsr_seed")
    assert "psc_shift" not in message


def test_v3_parameters_of_a_spikes_readout(img3):
    # A psc image relabelled spikes keeps a psc_shift it has no use for.
    edit_manifest(img3, lambda m: m.update(readout="spikes"))
    message = assert_load_layers_error(img3, "parameters must hold exactly rate_bits, lfsr_seed")
    assert "psc_shift" not in message


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("rate_bits", "4", "parameters.rate_bits must be an integer, got '4'"),
    ("lfsr_seed", True, "parameters.lfsr_seed must be an integer, got True"),
    ("psc_shift", 5.0, "parameters.psc_shift must be an integer, got 5.0"),
    ("psc_shift", 0, "decoder.psc_shift must be an integer in 1 .. 12, got 0"),
    ("psc_shift", 13, "decoder.psc_shift must be an integer in 1 .. 12, got 13"),
    ("rate_bits", 9, "rate_bits must be an integer in 1 .. 8, got 9"),
    ("rate_bits", 3, "rate_bits=3 cannot encode pixel_max 16"),
    ("lfsr_seed", 0, "lfsr_seed must be an integer in 1 .. 4294967295, got 0"),
    ("lfsr_seed", 2**32, "lfsr_seed must be an integer in 1 .. 4294967295"),
])
def test_v3_parameter_values(img3, name, value, fragment):
    edit_manifest(img3, lambda m: m["parameters"].update({name: value}))
    assert_load_layers_error(img3, fragment)


@pytest.mark.parametrize(("key", "value", "fragment"), [
    ("inputs", 0, "inputs must be a positive integer, got 0"),
    ("classes", True, "classes must be a positive integer, got True"),
    ("pixel_max", 256, "pixel_max 256 needs more than 8 bits"),
    ("timesteps", None, "timesteps must be a positive integer, got None"),
    ("encoder_mode", "poisson", "encoder_mode must be one of"),
    ("hash", "md5:abc", "hash is missing or not of the form"),
])
def test_v3_run_fields(img3, key, value, fragment):
    edit_manifest(img3, lambda m: m.update({key: value}))
    assert_load_layers_error(img3, fragment)


def test_v3_array_of_no_layer(img3, li_img):
    # An array named after no layer, an array of a layer beyond the last, and a decoder in an
    # li image each belong to no layer.
    np.save(img3 / "extra.npy", np.zeros(4, dtype=np.int8))
    decl = {"file": "extra.npy", "shape": [4], "signed": True, "bits": 8}
    for name in ("layer0.extra", "layer2.w", "layer1.beta"):
        edit_manifest(img3, lambda m, name=name: m["arrays"].update({name: decl}))
        assert_load_layers_error(img3, f"arrays {name} belong to no layer")
        edit_manifest(img3, lambda m, name=name: m["arrays"].pop(name))
    image.load_layers(img3)
    edit_manifest(li_img, lambda m: m["arrays"].update(
        dec={"file": "layer1_w.npy", "shape": [2, 2], "signed": True, "bits": 8}))
    assert_load_layers_error(li_img, "arrays dec belong to no layer")


@pytest.mark.parametrize(("name", "key", "value"), [
    ("layer0.w", "bits", 7), ("layer1.w", "bits", 8), ("layer1.w", "shape", [3, 5]),
    ("layer0.v_th", "signed", True), ("layer0.beta", "bits", 16), ("layer0.w_rec", "shape", [4]),
    ("layer0.bias", "signed", False), ("dec", "shape", [3, 3]), ("dec_bias", "bits", 31),
])
def test_v3_declaration_mismatch(img3, name, key, value):
    edit_manifest(img3, lambda m: m["arrays"][name].update({key: value}))
    assert_load_layers_error(img3, f"arrays.{name} declares", f"{key} {value}"
                             if key != "shape" else f"shape {value}")


#: Every array of the img3 fixture's image.
IMG3_ARRAYS = ["layer0.w", "layer0.w_shift", "layer0.bias", "layer0.v_th", "layer0.beta",
               "layer0.w_rec", "layer1.w", "layer1.w_shift", "layer1.bias", "layer1.v_th", "dec",
               "dec_bias"]


@pytest.mark.parametrize("name", IMG3_ARRAYS)
def test_v3_missing_array(img3, name):
    manifest = json.loads((img3 / "manifest.json").read_text())
    assert sorted(manifest["arrays"]) == sorted(IMG3_ARRAYS)
    file = manifest["arrays"][name]["file"]
    (img3 / file).unlink()
    assert_load_layers_error(img3, f"{file}: missing")
    edit_manifest(img3, lambda m: m["arrays"].pop(name))
    assert_load_layers_error(img3, f"arrays.{name} is missing or has no 'file'")


def test_v3_array_file_must_be_a_plain_name(img3):
    edit_manifest(img3, lambda m: m["arrays"]["layer0.w"].update(file="../layer0_w.npy"))
    assert_load_layers_error(img3, "arrays.layer0.w.file must be a plain name")


@pytest.mark.parametrize(("file", "index", "value", "fragment"), [
    ("layer0_beta", 0, 4096, "layer 0.neuron.beta: value 4096 is outside the 12-bit unsigned "
                             "range 0 .. 4095"),
    ("layer0_beta", 2, -1, "layer 0.neuron.beta: value -1 is outside"),
    ("layer0_v_th", 1, 0, "layer 0.neuron.v_th: a threshold of 0 would fire on every step"),
    ("layer1_v_th", 2, 2**15, "layer 1.neuron.v_th: value 32768 is outside the 15-bit "
                              "unsigned range"),
    ("layer1_w", (0, 0), 8, "layer 1.w: value 8 is outside the 4-bit signed range -8 .. 7"),
    ("layer1_w", (2, 3), -9, "layer 1.w: value -9 is outside the 4-bit signed range"),
    ("layer0_w", (1, 1), 128, "layer 0.w: value 128 is outside the 8-bit signed range"),
    ("layer0_w_rec", (3, 0), -129, "layer 0.w_rec: value -129 is outside the 8-bit signed"),
    ("layer0_w_shift", 0, 16, "layer 0.w_shift: value 16 is outside the 5-bit signed range"),
    ("layer1_bias", 2, 2**31, "layer 1.bias: value 2147483648 is outside the 32-bit signed"),
    ("dec", (1, 2), 128, "decoder.dec: value 128 is outside the 8-bit signed range"),
    ("dec_bias", 0, -(2**31) - 1, "decoder.dec_bias: value -2147483649 is outside"),
])
def test_v3_value_outside_its_width(img3, file, index, value, fragment):
    rewrite_array(img3, file, set_element(index, value))
    rehash_v3(img3)
    assert_load_layers_error(img3, fragment)


def test_v3_non_integer_array(img3):
    rewrite_array(img3, "layer0_beta", lambda a: a, dtype=np.float64)
    assert_load_layers_error(img3, "layer0_beta.npy: dtype float64 is not an integer type")


@pytest.mark.parametrize(("file", "edit", "fragment"), [
    ("layer1_w", lambda a: np.hstack([a, a[:, :1]]),
     "layer1.w: shape (3, 5) does not match the manifest's (3, 4)"),
    ("layer1_w", lambda a: a[:, :-1],
     "layer1.w: shape (3, 3) does not match the manifest's (3, 4)"),
    ("dec", lambda a: a[:, :-1], "dec: shape (2, 2) does not match the manifest's (2, 3)"),
    ("layer0_w_rec", lambda a: a[:-1],
     "layer0.w_rec: shape (3, 4) does not match the manifest's (4, 4)"),
    ("layer1_v_th", lambda a: a[:-1], "layer1.v_th: shape (2,) does not match the manifest's (3,)"),
])
def test_v3_fan_in_and_shapes_between_layers(img3, file, edit, fragment):
    rewrite_array(img3, file, edit)
    rehash_v3(img3)
    assert_load_layers_error(img3, fragment)


def test_v3_neurons_of_a_layer_must_match_its_arrays(img3):
    edit_manifest(img3, lambda m: m["layers"][0].update(neurons=5))
    assert_load_layers_error(img3, "arrays.layer0.w declares shape [4, 3]", "expected [5, 3]")


@pytest.mark.parametrize("what", ["inputs", "neurons"])
def test_v3_array_shapes_must_match_the_manifest(img3, what):
    if what == "inputs":  # layer 0 reads 2 of the 3 inputs the manifest declares
        rewrite_array(img3, "layer0_w", lambda a: a[:, :-1])
    else:  # layer 0 has 3 neurons, not the 4 of its record and declarations
        for file in ("layer0_w", "layer0_w_shift", "layer0_bias", "layer0_v_th", "layer0_beta"):
            rewrite_array(img3, file, lambda a: a[:-1])
        rewrite_array(img3, "layer0_w_rec", lambda a: a[:-1, :-1])
        rewrite_array(img3, "layer1_w", lambda a: a[:, :-1])
    rehash_v3(img3)
    assert_load_layers_error(img3, "shape")


def test_v3_classes_must_match_the_output_layer(img3, li_img):
    edit_manifest(li_img, lambda m: m.update(classes=3))
    assert_load_layers_error(li_img, "classes is 3, the output layer has 2")
    edit_manifest(img3, lambda m: m.update(classes=3))
    assert_load_layers_error(img3, "arrays.dec declares shape [2, 3]", "expected [3, 3]")


def test_v3_hash_mismatch_after_editing_an_array(img3):
    rewrite_array(img3, "layer0_beta", set_element(1, 4094))
    assert_load_layers_error(img3, "content hash mismatch", "an array or parameter was changed")
    rehash_v3(img3)
    assert image.load_layers(img3)[0].layers[0].neuron.beta[1] == 4094


@pytest.mark.parametrize(("k", "key", "value"), [(1, "ref_steps", 3), (0, "adapt_shift", 0),
                                                 (0, "reset", "zero"), (1, "leak_shift", 0)])
def test_v3_hash_mismatch_after_editing_a_record(img3, k, key, value):
    edit_manifest(img3, lambda m: m["layers"][k].update({key: value}))
    assert_load_layers_error(img3, "content hash mismatch")


def test_v3_hash_mismatch_after_editing_a_parameter(img3):
    edit_manifest(img3, lambda m: m["parameters"].update(lfsr_seed=12345))
    assert_load_layers_error(img3, "content hash mismatch")


def test_v3_w_bits_may_change_without_rehashing(img3):
    # layer 1's weights are 4 bits; stored as 8 they are the same network, the same hash.
    saved = json.loads((img3 / "manifest.json").read_text())
    edit_manifest(img3, lambda m: (m["layers"][1].update(w_bits=8),
                                   m["arrays"]["layer1.w"].update(bits=8)))
    net, manifest = image.load_layers(img3)
    assert net.layers[1].w_bits == 8 and manifest["hash"] == saved["hash"]
    # ... but not narrower than the weights.
    edit_manifest(img3, lambda m: (m["layers"][1].update(w_bits=3),
                                   m["arrays"]["layer1.w"].update(bits=3)))
    assert_load_layers_error(img3, "layer 1.w: value", "outside the 3-bit signed range")


@pytest.mark.parametrize("loader", [image.load, image.load_layers], ids=["load", "load_layers"])
def test_v3_format_version_must_be_an_integer(tmp_path, loader):
    save_v3(tmp_path / "img", layers.from_classic(small_net()))
    edit_manifest(tmp_path / "img", lambda m: m.update(format_version=3.0))
    with pytest.raises(image.NetworkImageError):
        loader(tmp_path / "img")


# --- version 3: invalid networks are refused by save_layers and by load_layers ---------------


def v3_invalid_networks():
    """``(id, network, fragment on save, fragment on load)`` of invalid networks; the load
    fragment None when it is the save one, "valid" where the files save_layers would write
    hold a valid network, "unwritable" where save_layers cannot write them at all."""
    psc = v3_net("psc", ("leaky-subtract-adaptive+rec", 4), ("alif", 3, 4))
    li = v3_net("li", ("lif", 4), ("li-leaky", 2))
    spikes = v3_net("spikes", ("lif", 4), ("lif", 2))
    bad_beta = psc.layers[0].neuron.beta.copy()
    bad_beta[0] = 4096
    zero_th = psc.layers[1].neuron.v_th.copy()
    zero_th[1] = 0
    wide = psc.layers[1].w.copy()
    wide[0, 0] = 8
    li_spiking = v3_net("li", ("lif", 4), ("lif", 2))
    hidden_li = v3_net("psc", ("li-lif", 4))
    deep = v3_net("psc", *[("lif", 3)] * (c.LAYERS_MAX + 1))
    one_class = v3_net("spikes", ("lif", 4), ("lif", 1))
    too_wide = v3_net("psc", ("lif", 2), inputs=2**16, rate_bits=8)
    extra_col = np.hstack([psc.layers[1].w, psc.layers[1].w[:, :1]])
    cases = [
        ("beta-4096", with_layer(psc, 0, beta=bad_beta),
         "layer 0.neuron.beta: value 4096 is outside the 12-bit unsigned range", None),
        ("v_th-0", with_layer(psc, 1, v_th=zero_th), "layer 1.neuron.v_th: a threshold of 0",
         None),
        ("w-outside-w_bits", with_layer(psc, 1, w=wide),
         "layer 1.w: value 8 is outside the 4-bit signed range -8 .. 7", None),
        ("adapt-bits", with_layer(psc, 1, adapt_step=2, adapt_shift=15),
         "layer 1.neuron: adapt_step << adapt_shift = 65536 exceeds the 16-bit", None),
        ("fan-in", with_layer(psc, 1, w=extra_col), "layer 1.w: shape (3, 5), expected (3, 4)",
         "layer1.w: shape (3, 5) does not match the manifest's (3, 4)"),
        ("li-output-spiking", li_spiking, "layer 1.neuron: an li readout's output layer must be "
         "non-spiking", None),
        ("hidden-non-spiking", hidden_li,
         "layer 0.neuron: only the output layer of an li readout is non-spiking", None),
        ("li-output-recurrent", with_layer(li, 1, w_rec=np.zeros((2, 2), dtype=np.int64)),
         "layer 1: a non-spiking layer has no recurrent weights", None),
        ("unknown-model", with_layer(spikes, 0, model="izhikevich"),
         "layer 0.neuron.model must be one of ['lif', 'leaky']",
         "layers[0].model must be one of ['lif', 'leaky']"),
        ("unknown-reset", with_layer(psc, 0, reset="none"),
         "layer 0.neuron.reset must be one of", None),
        ("unknown-readout", spikes._replace(readout="softmax"), "readout must be one of", None),
        ("too-many-layers", deep, f"a network has 1 .. {c.LAYERS_MAX} layers",
         f"layers must be a list of 1 .. {c.LAYERS_MAX} layer records"),
        ("psc-without-decoder", psc._replace(decoder=None), "a psc readout needs a decoder",
         "unwritable"),
        ("spikes-with-decoder", spikes._replace(decoder=psc.decoder._replace(
            dec=psc.decoder.dec[:, :2])), "a spikes readout has no decoder",
         "parameters must hold exactly rate_bits, lfsr_seed"),
        ("one-class", one_class, "the output layer needs at least 2 neurons", None),
        ("w_bits-9", with_layer(spikes, 0, w_bits=9), "layer 0.w_bits must be an integer in 2 .. 8",
         "layers[0].w_bits must lie in 2 .. 8"),
        ("lif-with-beta", with_layer(spikes, 0, beta=np.zeros(4, dtype=np.int64)),
         "layer 0.neuron: a lif neuron has no beta", "valid"),
        ("li-with-threshold", with_layer(li, 1, v_th=np.ones(2, dtype=np.int64)),
         "a non-spiking neuron has no threshold and no adaptation", "valid"),
        ("ref_steps-8", with_layer(spikes, 1, ref_steps=8),
         "layer 1.neuron.ref_steps must be an integer in 0 .. 7", None),
        ("accumulator", too_wide, "layer 0: its inputs times weights can reach 2147483648, "
         "beyond 31 bits", None),
        ("rate_bits", spikes._replace(rate_bits=3), "rate_bits=3 cannot encode pixel_max 16",
         None),
    ]
    return [pytest.param(net, on_save, on_load, id=name)
            for name, net, on_save, on_load in cases]


@pytest.mark.parametrize(("net", "on_save", "on_load"), v3_invalid_networks())
def test_save_layers_refuses_an_invalid_network(tmp_path, monkeypatch, net, on_save, on_load):
    path = tmp_path / "img"
    with pytest.raises(image.NetworkImageError) as info:
        save_v3(path, net)
    assert isinstance(info.value, ValueError)
    assert on_save in str(info.value), str(info.value)
    assert not path.exists()  # nothing written
    # Its files, written without the check, are refused on loading (the hash is right, so
    # only the check under test can fail); a few invalid networks write a valid image.
    if on_load == "unwritable":
        return
    save_v3_unchecked(monkeypatch, path, net)
    if on_load == "valid":
        image.load_layers(path)
    else:
        assert_load_layers_error(path, on_load or on_save)


@pytest.mark.parametrize(("run", "fragment"), [
    (dict(timesteps=0), "timesteps must be a positive integer, got 0"),
    (dict(pixel_max=0), "pixel_max must be a positive integer, got 0"),
    (dict(pixel_max=17), "rate_bits=4 cannot encode pixel_max 17"),
])
def test_save_layers_refuses_invalid_run_defaults(tmp_path, run, fragment):
    with pytest.raises(image.NetworkImageError, match=fragment):
        save_v3(tmp_path / "img", v3_hash_base(), **run)
    assert not (tmp_path / "img").exists()


def test_v3_numpy_bool_spiking(tmp_path):
    net = v3_net("psc", ("alif", 4))
    npbool = with_layer(net, 0, spiking=np.True_)
    assert image.layered_hash(npbool) == image.layered_hash(net)
    save_v3(tmp_path / "img", npbool)
    assert_same_layered(net, image.load_layers(tmp_path / "img")[0])


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in __import__(
    "firmware").LAYERED_IMAGES])
def test_every_shipped_layered_image_loads_and_answers_as_its_manifest_says(path):
    """Each layered image loads (its hash checked), records its training, and the golden model
    reproduces its recorded test accuracy exactly (constant current, its steps, the whole test
    split: 599 digits or 10,000 MNIST images)."""
    from golden import data

    net, manifest = image.load_layers(path)
    meta = manifest["metadata"]
    assert {"dataset", "split", "seed", "training", "test_accuracy",
            "validation_accuracy"} <= set(meta)
    recorded = meta["test_accuracy"]["integer_current_accuracy"]
    if meta["dataset"] == "digits":
        split = data.load_split("digits")
        x, y = split.x_test, split.y_test
    else:
        if not MNIST_DIR.is_dir():
            pytest.skip(f"MNIST IDX files not present at {MNIST_DIR}")
        split = data.load_split(meta["dataset"], MNIST_DIR)
        x, y = split.x_test, split.y_test
    got = (layers.run(x, net, manifest["timesteps"], c.MODE_CURRENT).classes[-1] == y).mean()
    assert len(y) in (599, 10_000)
    assert got == pytest.approx(recorded, abs=1e-4)  # the manifest rounds to 4 places
