"""Writes the morphology / H&E TIFF fixtures of tests/data_morphology.rs from the real DAPI crop.

Usage: python3 write_tiff_fixtures.py OUT_DIR CROP_TIF

Everything is derived from the crop (2400 x 1800 uint16 at 0.2125 um/px); the only synthetic
parts are planted truths (z-plane scale factors, the H&E affine). Writes into OUT_DIR:

- pyramid.ome.tif: OME-TIFF, tiled 256x256, deflate, 3 levels in SubIFDs (2x2 means),
  PhysicalSizeX/Y 0.2125 um; level1.u16 / level2.u16: the reduced levels as raw little-endian
  uint16 (row-major) for pixel-exact comparison;
- chain_pyramid.tif: plain (non-OME) TIFF, stripped, uncompressed, the same 3 levels as a chain of
  pages of decreasing size (no SubIFDs);
- bundle_old/morphology_focus/morphology_focus_0000.ome.tif (DAPI) and _0001 (DAPI // 2):
  the pre-XOA-4 layout; bundle_new/morphology_focus/ch0000_dapi.ome.tif and
  ch0001_atp1a1_cd45_e-cadherin.ome.tif: the XOA-4 layout; both tiled, deflate, 2 levels;
- bundle_new/morphology_mip.ome.tif (uint8 DAPI >> 4, stripped, uncompressed) and
  bundle_zstack/morphology.ome.tif: z-stack of 3 planes whose max projection is the DAPI crop
  and no single plane equals it (see zstack_planes below);
- sample_he_image.ome.tif (RGB uint8, tiled, deflate, 2 levels) and
  sample_he_imagealignment.csv (3x3, no header): H&E px -> morphology px, the planted affine;
- rgb.tif (3 samples per pixel, for the "gray expected" error), jp2k.tif (a small TIFF whose
  Compression tag says JPEG-2000), truncated.ome.tif (pyramid.ome.tif cut in half).
"""

import math
import os
import sys

import numpy as np
import tifffile

UM_PER_PX = 0.2125


def reduce2(a):
    """2x2 mean (floor), dropping an odd last row/column."""
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    a = a[:h, :w].astype(np.uint32)
    return ((a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) // 4).astype(np.uint16)


def ome_meta(channels, size_z=1):
    return {
        "axes": "ZYX" if size_z > 1 else "YX",
        "PhysicalSizeX": UM_PER_PX,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": UM_PER_PX,
        "PhysicalSizeYUnit": "µm",
        "Channel": {"Name": channels},
    }


def write_pyramid(path, levels, channels, tile=(256, 256), compression="zlib"):
    with tifffile.TiffWriter(path, ome=True) as tif:
        opts = dict(tile=tile, compression=compression, photometric="minisblack")
        tif.write(levels[0], subifds=len(levels) - 1, metadata=ome_meta(channels), **opts)
        for lvl in levels[1:]:
            tif.write(lvl, subfiletype=1, **opts)


def bilinear(img, cols, rows):
    """Bilinear samples of img (float) at continuous (col, row), 0 outside."""
    h, w = img.shape
    c0, r0 = np.floor(cols).astype(np.int64), np.floor(rows).astype(np.int64)
    fx, fy = cols - c0, rows - r0
    out = np.zeros(cols.shape, np.float64)
    for dc, dr, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                        (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        c, r = c0 + dc, r0 + dr
        ok = (c >= 0) & (c < w) & (r >= 0) & (r < h)
        out[ok] += wgt[ok] * img[r[ok], c[ok]]
    return out


# Planted H&E -> morphology affine: rotation 5 degrees, scale 0.8 (one H&E px = 0.8 morphology
# px), translation (-150, 60) morphology px. H&E size chosen to cover the crop.
HE_ANGLE_DEG, HE_SCALE, HE_SHIFT = 5.0, 0.8, (-150.0, 60.0)
HE_SIZE = (2500, 3200)  # rows, cols


def he_matrix():
    a = math.radians(HE_ANGLE_DEG)
    c, s = HE_SCALE * math.cos(a), HE_SCALE * math.sin(a)
    return np.array([[c, -s, HE_SHIFT[0]], [s, c, HE_SHIFT[1]], [0.0, 0.0, 1.0]])


def main():
    out, crop_path = sys.argv[1], sys.argv[2]
    dapi = tifffile.imread(crop_path)
    assert dapi.dtype == np.uint16 and dapi.ndim == 2, (dapi.dtype, dapi.shape)
    l1 = reduce2(dapi)
    l2 = reduce2(l1)
    levels = [dapi, l1, l2]

    # (a) OME-TIFF pyramid in SubIFDs + raw reduced levels.
    write_pyramid(os.path.join(out, "pyramid.ome.tif"), levels, ["DAPI"])
    l1.astype("<u2").tofile(os.path.join(out, "level1.u16"))
    l2.astype("<u2").tofile(os.path.join(out, "level2.u16"))

    # Plain IFD chain of decreasing sizes.
    with tifffile.TiffWriter(os.path.join(out, "chain_pyramid.tif")) as tif:
        for i, lvl in enumerate(levels):
            tif.write(lvl, rowsperstrip=64, photometric="minisblack",
                      subfiletype=1 if i else 0)

    # (b) Xenium morphology_focus layouts (pre-XOA-4 and XOA-4).
    small = [dapi, l1]
    half = [(a // 2).astype(np.uint16) for a in small]
    old = os.path.join(out, "bundle_old", "morphology_focus")
    new = os.path.join(out, "bundle_new", "morphology_focus")
    os.makedirs(old, exist_ok=True)
    os.makedirs(new, exist_ok=True)
    write_pyramid(os.path.join(old, "morphology_focus_0000.ome.tif"), small, ["DAPI"])
    write_pyramid(os.path.join(old, "morphology_focus_0001.ome.tif"), half, ["Boundary"])
    write_pyramid(os.path.join(new, "ch0000_dapi.ome.tif"), small, ["DAPI"])
    write_pyramid(os.path.join(new, "ch0001_atp1a1_cd45_e-cadherin.ome.tif"), half,
                  ["ATP1A1/CD45/E-Cadherin"])
    # morphology_mip.ome.tif as uint8 (stripped, uncompressed) beside the focus folder.
    tifffile.imwrite(os.path.join(out, "bundle_new", "morphology_mip.ome.tif"),
                     (dapi >> 4).clip(0, 255).astype(np.uint8), ome=True,
                     metadata=ome_meta(["DAPI"]), photometric="minisblack")
    (dapi >> 4).clip(0, 255).astype(np.uint8).tofile(os.path.join(out, "mip_u8.raw"))

    # (c) z-stack: plane 0 = DAPI on the left half, DAPI/2 on the right; plane 1 = 3/4 DAPI;
    # plane 2 = DAPI/4 on the left, DAPI on the right. Max projection = DAPI exactly.
    d = dapi.astype(np.uint32)
    left = np.zeros(dapi.shape, bool)
    left[:, : dapi.shape[1] // 2] = True
    p0 = np.where(left, d, d // 2)
    p1 = d * 3 // 4
    p2 = np.where(left, d // 4, d)
    zstack = np.stack([p0, p1, p2]).astype(np.uint16)
    os.makedirs(os.path.join(out, "bundle_zstack"), exist_ok=True)
    tifffile.imwrite(os.path.join(out, "bundle_zstack", "morphology.ome.tif"), zstack,
                     ome=True, metadata=ome_meta(["DAPI"], size_z=3), tile=(256, 256),
                     compression="zlib", photometric="minisblack")

    # (d) H&E: for every H&E pixel, the DAPI intensity at M @ (col, row, 1), stretched to
    # [0, 1] (0.5 / 99.5 percentiles) and rendered as haematoxylin-like purple on white.
    m = he_matrix()
    rows, cols = np.mgrid[0 : HE_SIZE[0], 0 : HE_SIZE[1]].astype(np.float64)
    mc = m[0, 0] * cols + m[0, 1] * rows + m[0, 2]
    mr = m[1, 0] * cols + m[1, 1] * rows + m[1, 2]
    lo, hi = np.percentile(dapi, [0.5, 99.5])
    stretched = np.clip((dapi.astype(np.float64) - lo) / (hi - lo), 0, 1)
    v = bilinear(stretched, mc, mr)
    rgb = np.stack([255 - 150 * v, 255 - 200 * v, 255 - 90 * v], axis=-1)
    rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    he_levels = [rgb, rgb[::2, ::2]]
    with tifffile.TiffWriter(os.path.join(out, "sample_he_image.ome.tif"), ome=True) as tif:
        opts = dict(tile=(256, 256), compression="zlib", photometric="rgb")
        tif.write(rgb, subifds=1, metadata={"axes": "YXS"}, **opts)
        tif.write(he_levels[1], subfiletype=1, **opts)
    np.savetxt(os.path.join(out, "sample_he_imagealignment.csv"), m, delimiter=",", fmt="%.10g")

    # Malformed inputs.
    tifffile.imwrite(os.path.join(out, "rgb.tif"), rgb[:64, :64], photometric="rgb")
    jp2k = os.path.join(out, "jp2k.tif")
    tifffile.imwrite(jp2k, dapi[:64, :64], photometric="minisblack")
    with tifffile.TiffFile(jp2k) as t:
        tag = t.pages[0].tags["Compression"]
        offset, byteorder = tag.valueoffset, t.byteorder
    with open(jp2k, "r+b") as f:
        f.seek(offset)
        f.write((34712).to_bytes(2, "little" if byteorder == "<" else "big"))
    with open(os.path.join(out, "pyramid.ome.tif"), "rb") as f:
        data = f.read()
    with open(os.path.join(out, "truncated.ome.tif"), "wb") as f:
        f.write(data[: len(data) // 2])


if __name__ == "__main__":
    main()
