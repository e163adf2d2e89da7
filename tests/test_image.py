"""Tests of network images, :mod:`golden.image`: round trip, content hash and validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import MNIST_DIR

from golden import constants as c
from golden import image, model

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


@pytest.mark.parametrize("version", [3, 0, "1", "2", None, True])
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
