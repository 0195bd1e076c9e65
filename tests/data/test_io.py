"""Image I/O: PNG/JPEG/DICOM to uint8, masks to bool, and clear errors on every kind of bad file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cxrmap.core.errors import DataError
from cxrmap.data import io, limits
from cxrmap.data.dicom import check_dicom_header, read_dicom

# ------------------------------------------------------------------------------------------- helpers
from tests.helpers.images import png_declaring, write_dicom, write_png


def test_read_png_gray_roundtrip(tmp_path):
    array = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)
    image = io.read_image(write_png(tmp_path / "a (1).png", array))
    assert image.dtype == np.uint8 and image.shape == (32, 32)
    np.testing.assert_array_equal(image, array)
    assert io.check_image(tmp_path / "a (1).png") == io.ImageInfo(32, 32, "PNG")


def test_colour_png_and_jpeg_become_grayscale(tmp_path):
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red: ITU-R 601 luma 0.299 * 255 = 76
    assert np.all(io.read_image(write_png(tmp_path / "red.png", rgb)) == 76)
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(tmp_path / "grey.jpg", quality=95)
    jpeg = io.read_image(tmp_path / "grey.jpg")
    assert jpeg.shape == (16, 16) and np.all(np.abs(jpeg.astype(int) - 200) <= 1)
    assert io.check_image(tmp_path / "grey.jpg").format == "JPEG"
    rgba = np.dstack([rgb, np.full((16, 16), 128, np.uint8)])
    assert np.all(io.read_image(write_png(tmp_path / "rgba.png", rgba)) == 76)


def test_16bit_png_scaled_to_8bit(tmp_path):
    values = np.array([[0, 257, 1000, 32896, 65535]], dtype=np.uint16)
    path = write_png(tmp_path / "deep.png", values)
    assert Image.open(path).mode.startswith("I;16")
    # round(v * 255 / 65535): 0, 1, 3.89 -> 4, 128, 255
    np.testing.assert_array_equal(io.read_image(path), [[0, 1, 4, 128, 255]])


def test_missing_and_non_image_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        io.read_image(tmp_path / "nothere.png")
    with pytest.raises(DataError, match="not a file"):
        io.read_image(tmp_path)
    (tmp_path / "notes.png").write_text("this is not a picture")
    for reader in (io.read_image, io.check_image, io.read_mask):
        with pytest.raises(DataError, match=r"notes\.png is not a PNG, JPEG or DICOM"):
            reader(tmp_path / "notes.png")


def test_truncated_png_is_a_data_error(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    data = write_png(tmp_path / "full.png", noise).read_bytes()
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.png.*(truncated|damaged)"):
        io.read_image(truncated)
    with pytest.raises(DataError, match=r"cut\.png.*(truncated|damaged)"):
        io.check_image(truncated)
    with pytest.raises(DataError, match="truncated or damaged"):
        io.decode_image(data[: len(data) // 2], "upload.png")


def test_decompression_bomb_refused_from_the_header(tmp_path, monkeypatch):
    bomb = png_declaring(tmp_path / "bomb.png", 20_000, 20_000)  # 400 Mpx declared, 100 bytes on disk
    for reader in (io.read_image, io.check_image):
        with pytest.raises(DataError, match=r"bomb\.png declares"):
            reader(bomb)
    big = png_declaring(tmp_path / "big.png", 12_000, 9_000)  # 108 Mpx: above our 100 Mpx default only
    with pytest.raises(DataError, match="more than the limit of 100,000,000"):
        io.check_image(big)
    small = write_png(tmp_path / "small.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(DataError, match="1,024 pixels, more than the limit of 1,000"):
        io.read_image(small, max_pixels=1000)
    monkeypatch.setenv("CXRMAP_MAX_PIXELS", "1000")
    with pytest.raises(DataError, match="CXRMAP_MAX_PIXELS"):
        io.read_image(small)
    monkeypatch.setenv("CXRMAP_MAX_PIXELS", "lots")
    with pytest.raises(DataError, match="not a positive integer"):
        limits.max_pixel_limit()


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_orientation_is_applied(tmp_path, suffix):
    # orientation 6: the stored pixels are shown turned 90 degrees clockwise
    stored = np.zeros((40, 64), dtype=np.uint8)
    stored[:, :16] = 255  # a bright band on the stored image's left edge
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / f"rotated{suffix}"
    Image.fromarray(stored).save(path, exif=exif, **({"quality": 95} if suffix == ".jpg" else {}))
    image = io.read_image(path)
    assert image.shape == (64, 40)
    assert io.check_image(path) == io.ImageInfo(
        width=40, height=64, format=suffix[1:].upper().replace("JPG", "JPEG")
    )
    assert image[:16].mean() > 200 and image[24:].mean() < 30  # the band is now on top
    assert io.decode_image(path.read_bytes()).shape == (64, 40)


def test_read_mask_binarises_and_accepts_zero_one_masks(tmp_path):
    values = np.array([[0, 100, 127, 128, 200, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(io.read_mask(write_png(tmp_path / "m.png", values)), [[0, 0, 0, 1, 1, 1]])
    zero_one = np.array([[0, 1, 1, 0]], dtype=np.uint8)
    mask = io.read_mask(write_png(tmp_path / "m01.png", zero_one))
    assert mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, [[False, True, True, False]])
    assert not io.read_mask(write_png(tmp_path / "empty.png", np.zeros((4, 4), np.uint8))).any()


# ------------------------------------------------------------------------------------------------ DICOM

STORED_12 = np.array([[0, 1, 2048, 4095]], dtype=np.uint16)


def test_dicom_12_bit_monochrome2_and_monochrome1(tmp_path):
    # no VOI: the 12-bit range 0..4095 maps to 0..255, round(v * 255 / 4095)
    path = write_dicom(tmp_path / "m2.dcm", STORED_12)
    np.testing.assert_array_equal(io.read_image(path), [[0, 0, 128, 255]])
    inverted = write_dicom(tmp_path / "m1.dcm", STORED_12, photometric="MONOCHROME1")
    np.testing.assert_array_equal(io.read_image(inverted), [[255, 255, 127, 0]])
    assert io.check_image(path) == io.ImageInfo(width=4, height=1, format="DICOM")
    signed = np.array([[-2048, 0, 2047]], dtype=np.int16)  # signed 12-bit range -2048..2047
    path = write_dicom(tmp_path / "signed.dcm", signed, PixelRepresentation=1)
    np.testing.assert_array_equal(io.read_image(path), [[0, 128, 255]])


def test_dicom_8_bit_is_identity(tmp_path):
    values = np.array([[0, 10, 128, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(
        io.read_image(write_dicom(tmp_path / "8.dcm", values, bits_stored=8)), values
    )


def test_dicom_window_center_width(tmp_path):
    # LINEAR window c=512, w=1025 on 12-bit data: y = ((x - 511.5) / 1024 + 0.5) over the output range,
    # then scaled to 0..255 -> round(((x - 511.5) / 1024 + 0.5) * 255); 3000 lies above the window.
    stored = np.array([[0, 256, 768, 1023, 3000]], dtype=np.uint16)
    path = write_dicom(tmp_path / "w.dcm", stored, WindowCenter=512, WindowWidth=1025)
    np.testing.assert_array_equal(io.read_image(path), [[0, 64, 191, 255, 255]])


def test_dicom_rescale_then_window_then_monochrome1(tmp_path):
    # modality: y = 2x - 1024 (output range -1024..7166); window c=0, w=1001 (LINEAR):
    # y <= -500.5 -> 0, y > 499.5 -> 255, else round(((y + 0.5) / 1000 + 0.5) * 255)
    stored = np.array([[261, 262, 512, 700, 800]], dtype=np.uint16)
    attrs = {"RescaleSlope": 2, "RescaleIntercept": -1024, "WindowCenter": 0, "WindowWidth": 1001}
    expected = np.array([[0, 0, 128, 224, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(io.read_image(write_dicom(tmp_path / "r2.dcm", stored, **attrs)), expected)
    inverted = write_dicom(tmp_path / "r1.dcm", stored, photometric="MONOCHROME1", **attrs)
    np.testing.assert_array_equal(io.read_image(inverted), 255 - expected)


def test_dicom_voi_lut_sequence_preferred_over_window(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.add_new(0x00283002, "US", [4, 100, 10])  # LUT Descriptor: 4 entries, first input 100, 10 bits
    item.add_new(0x00283006, "US", [0, 341, 682, 1023])  # LUT Data
    stored = np.array([[50, 100, 101, 102, 103, 500]], dtype=np.uint16)
    path = write_dicom(
        tmp_path / "lut.dcm", stored, VOILUTSequence=Sequence([item]), WindowCenter=2000, WindowWidth=10
    )
    # inputs below 100 take the first entry, above 103 the last; LUT output 0..1023 scaled to 0..255
    np.testing.assert_array_equal(io.read_image(path), [[0, 0, 85, 170, 255, 255]])


def _voi_lut_dicom(path, stored, descriptor, vr, data, photometric="MONOCHROME2"):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.add_new(0x00283002, "US", descriptor)
    item.add_new(0x00283006, vr, data)
    return write_dicom(path, stored, photometric=photometric, VOILUTSequence=Sequence([item]))


# a 12-bit ramp through a 4096-entry VOI LUT; the LUT is the identity scaled to the entry width
_RAMP = np.arange(4096, dtype=np.uint16).reshape(64, 64)
_LUT_8 = (np.arange(4096) * 255 // 4095).astype(np.uint16)
_LUT_16 = np.arange(4096, dtype=np.uint16) * 16


@pytest.mark.parametrize(
    ("bits", "vr", "data", "expected"),
    [
        (8, "OW", _LUT_8.astype("<u2").tobytes(), _LUT_8[_RAMP]),  # one 8-bit entry per word
        (8, "US", _LUT_8.tolist(), _LUT_8[_RAMP]),
        (8, "OW", _LUT_8.astype(np.uint8).tobytes(), _LUT_8[_RAMP]),  # two entries packed per word
        (16, "OW", _LUT_16.astype("<u2").tobytes(), np.rint(_LUT_16[_RAMP] * (255 / 65535))),
    ],
    ids=["8-bit-per-word-OW", "8-bit-per-word-US", "8-bit-packed", "16-bit"],
)
@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_dicom_voi_lut_entry_widths(tmp_path, bits, vr, data, expected, photometric):
    path = _voi_lut_dicom(tmp_path / "lut.dcm", _RAMP, [4096, 0, bits], vr, data, photometric)
    expected = expected.astype(np.uint8)
    if photometric == "MONOCHROME1":
        expected = 255 - expected
    np.testing.assert_array_equal(io.read_image(path), expected)


def test_dicom_voi_lut_of_the_wrong_length_is_refused(tmp_path):
    path = _voi_lut_dicom(tmp_path / "bad.dcm", _RAMP, [4096, 0, 8], "OW", b"\0" * 1000)
    with pytest.raises(DataError) as caught:
        io.read_image(path)
    assert str(caught.value) == (
        f"{path} has a VOI LUT of 4096 entries of 8 bits but 500 16-bit words of LUT Data; expected 4096 "
        "(one entry per word) or 2048 (two 8-bit entries per word). The header is damaged, export it again"
    )
    path = _voi_lut_dicom(tmp_path / "bits.dcm", _RAMP, [4096, 0, 20], "OW", b"\0" * 8192)
    with pytest.raises(DataError, match="declares 20 bits per VOI LUT entry"):
        io.read_image(path)


def test_dicom_without_extension_and_from_bytes(tmp_path):
    path = write_dicom(tmp_path / "1.2.840.99999.1", STORED_12)
    assert io.is_dicom(path)
    np.testing.assert_array_equal(io.read_image(path), [[0, 0, 128, 255]])
    np.testing.assert_array_equal(io.decode_image(path.read_bytes(), "upload"), [[0, 0, 128, 255]])
    info = check_dicom_header(path.read_bytes())
    assert (info.rows, info.columns, info.photometric, info.bits_stored) == (1, 4, "MONOCHROME2", 12)


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL", "PALETTE COLOR"])
def test_colour_dicom_refused_naming_file_and_interpretation(tmp_path, photometric):
    pixels = np.zeros((4, 4, 3), np.uint8) if photometric != "PALETTE COLOR" else np.zeros((4, 4), np.uint8)
    path = write_dicom(tmp_path / "colour.dcm", pixels, photometric=photometric, bits_stored=8)
    for check in (
        io.read_image,
        io.check_image,
        check_dicom_header,
        lambda p: check_dicom_header(p.read_bytes()),
    ):
        with pytest.raises(DataError, match=f"PhotometricInterpretation '{photometric}'") as error:
            check(path)
        assert "Doe" not in str(error.value)  # no patient data in messages
    with pytest.raises(DataError, match=r"colour\.dcm has PhotometricInterpretation"):
        read_dicom(path)


def test_damaged_dicom_files(tmp_path):
    data = write_dicom(tmp_path / "ok.dcm", np.zeros((64, 64), np.uint16)).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:-4000])
    with pytest.raises(DataError, match=r"cut\.dcm.*(truncated|damaged)"):
        io.read_image(tmp_path / "cut.dcm")
    (tmp_path / "fake.dcm").write_bytes(b"\0" * 300)
    with pytest.raises(DataError, match=r"fake\.dcm is not a DICOM file"):
        io.read_image(tmp_path / "fake.dcm")
    huge = write_dicom(tmp_path / "huge.dcm", np.zeros((64, 64), np.uint16))
    with pytest.raises(DataError, match="more than the limit of 1,000"):
        check_dicom_header(huge, max_pixels=1000)
