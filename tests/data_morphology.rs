//! Morphology OME-TIFF pyramids, Xenium layouts, H&E alignment and cell crops, on fixtures
//! written by `tests/python/write_tiff_fixtures.py` (tifffile) from the real DAPI crop.
//!
//! Planted truths: the pyramid levels (2×2 means, dumped raw by the script), the z planes
//! (max projection = the crop), the H&E affine (rotation 5°, scale 0.8, shift (-150, 60) px).
#![cfg(feature = "native-io")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{crop_cells, crop_dapi, crop_files, crop_transcripts, fixture_dir, run_python};
use cellsymphony::data::{
    cellsymphony_crops, cellsymphony_he_crops, extents_from_area, extents_from_transcripts,
    extract_he_patch, extract_patch_scaled, find_he_files, find_morphology, nucleus_centres,
    read_he_alignment_csv, read_he_level, spatia_crops, CropSpec, DataError, EdgePolicy, GrayImage16, HeAlignment,
    IntensityScale, MorphologyLayout, Patch, PyramidTiff, SpatiaScale, XENIUM_CROP_FRAME, BytesSource,
};

/// Fixture directory, written once per test binary run (fails when python3/tifffile are
/// missing: `scripts/setup.sh` installs them).
fn fixtures() -> &'static Path {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let dir = fixture_dir("data_morphology_fixtures");
        let morphology = crop_files().morphology;
        run_python(
            "write_tiff_fixtures.py",
            &[dir.as_os_str(), morphology.as_os_str()],
            "needs python3 with numpy + tifffile: run scripts/setup.sh",
        );
        dir
    })
}

fn raw_u16(path: &Path, width: usize, height: usize) -> GrayImage16 {
    let bytes = std::fs::read(path).unwrap();
    let pixels = bytes
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    GrayImage16::new(width, height, pixels).unwrap()
}

#[test]
fn subifd_pyramid_full_resolution_equals_the_crop() {
    let tiff = PyramidTiff::open(&fixtures().join("pyramid.ome.tif")).unwrap();
    let levels = tiff.levels();
    let dims: Vec<_> = levels.iter().map(|l| (l.width, l.height)).collect();
    assert_eq!(dims, vec![(2400, 1800), (1200, 900), (600, 450)]);
    let um: Vec<f32> = levels.iter().map(|l| l.um_per_px.unwrap()).collect();
    assert!(
        (um[0] - 0.2125).abs() < 1e-6 && (um[2] - 0.85).abs() < 1e-6,
        "{um:?}"
    );
    assert_eq!(tiff.n_planes(), 1);
    assert_eq!(tiff.channel_name(0), "DAPI");
    let full = tiff.read_gray(0, 0).unwrap();
    assert_eq!(full.level, 0);
    assert!(
        full.image == *crop_dapi(),
        "level 0 differs from read_tiff_gray16"
    );
}

#[test]
fn level_for_0_85_um_is_level_2_and_only_it_is_decoded() {
    let tiff = PyramidTiff::open(&fixtures().join("pyramid.ome.tif")).unwrap();
    let levels = tiff.levels();
    let read = tiff.read_gray_at(0, 0.85).unwrap();
    assert_eq!(read.level, 2);
    assert_eq!(read.um_per_px, Some(0.85));
    let want = raw_u16(&fixtures().join("level2.u16"), 600, 450);
    assert!(
        read.image == want,
        "level 2 differs from tifffile's level-2 array"
    );
    println!(
        "level 2: read {} file bytes, decoded {} bytes; stored bytes per level {:?}",
        read.stats.file_bytes_read,
        read.stats.decoded_bytes,
        levels.iter().map(|l| l.stored_bytes).collect::<Vec<_>>()
    );
    assert_eq!(read.stats.decoded_bytes, 600 * 450 * 2);
    // Only level 2's tiles (+ directory and buffer slack) came off the disk.
    assert!(read.stats.file_bytes_read < levels[1].stored_bytes / 2);
    // Measured: 474,281 bytes read for a 371,934-byte level 2 (directory, tile tables and
    // 8 KiB read-buffer refills after each tile seek); level 1 stores 1.42 MB, level 0 5.59 MB.
    assert!(read.stats.file_bytes_read < levels[2].stored_bytes * 3 / 2);

    let mid = tiff.read_gray_at(0, 0.5).unwrap();
    assert_eq!(mid.level, 1);
    assert!(mid.image == raw_u16(&fixtures().join("level1.u16"), 1200, 900));
    assert_eq!(tiff.read_gray_at(0, 0.1).unwrap().level, 0);
}

/// The reader the browser uses (bytes, not a file): the same level, the same bytes read, and
/// a level over the decoded-size limit refused before decoding, naming the level and limit.
#[test]
fn pyramid_from_bytes_equals_the_file_and_the_limit_is_typed() {
    let path = fixtures().join("pyramid.ome.tif");
    let file = PyramidTiff::open(&path).unwrap().read_gray_at(0, 0.85).unwrap();
    let bytes: std::sync::Arc<[u8]> = std::fs::read(&path).unwrap().into();
    let tiff = PyramidTiff::from_source("dropped.ome.tif", BytesSource(bytes)).unwrap();
    let read = tiff.read_gray_at(0, 0.85).unwrap();
    assert_eq!((read.level, read.um_per_px), (2, Some(0.85)));
    assert!(read.image == file.image, "bytes and file readers differ on level 2");
    assert_eq!(read.stats, file.stats);
    let level2 = 600 * 450 * 2;
    let exact = tiff.clone().with_max_decoded_bytes(level2).read_gray(0, 2).unwrap();
    assert!(exact.image == file.image);
    let err = tiff.with_max_decoded_bytes(level2 - 1).read_gray(0, 2).unwrap_err();
    assert!(matches!(err, DataError::LevelTooLarge { level: 2, width: 600, height: 450, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("dropped.ome.tif") && msg.contains(&format!("{}-byte limit", level2 - 1)) && msg.contains("coarser level"), "{msg}");
}

#[test]
fn plain_ifd_chain_pyramid_needs_a_pixel_size() {
    let tiff = PyramidTiff::open(&fixtures().join("chain_pyramid.tif")).unwrap();
    assert_eq!(tiff.levels().len(), 3);
    assert_eq!(tiff.n_planes(), 1);
    let err = tiff.level_for(0.85).unwrap_err();
    assert!(matches!(err, DataError::MissingPixelSize { .. }), "{err}");
    assert!(err.to_string().contains("chain_pyramid.tif"), "{err}");
    let tiff = tiff.with_um_per_px(0.2125);
    let read = tiff.read_gray_at(0, 0.9).unwrap();
    assert_eq!(read.level, 2);
    assert!(read.image == raw_u16(&fixtures().join("level2.u16"), 600, 450));
    assert!(tiff.read_gray(0, 0).unwrap().image == *crop_dapi());
}

#[test]
fn xoa4_focus_layout_has_priority_and_channel_names() {
    let found = find_morphology(&fixtures().join("bundle_new")).unwrap();
    assert_eq!(found.layout, MorphologyLayout::FocusChannels);
    assert_eq!(found.channels, vec!["dapi", "atp1a1_cd45_e-cadherin"]);
    assert!(found.files[0].ends_with("morphology_focus/ch0000_dapi.ome.tif"));
    let dapi = found.read_dapi(None, None).unwrap();
    assert!(dapi.image == *crop_dapi());
    let coarse = found.read_dapi(Some(0.5), None).unwrap();
    assert_eq!((coarse.level, coarse.image.width), (1, 1200));
    let second = PyramidTiff::open(&found.files[1]).unwrap();
    assert_eq!(second.channel_name(0), "ATP1A1/CD45/E-Cadherin");
    let px = second.read_gray(0, 0).unwrap().image.pixels;
    assert!(px
        .iter()
        .zip(&crop_dapi().pixels)
        .all(|(a, b)| *a == b / 2));
}

#[test]
fn legacy_focus_layout_is_found() {
    let found = find_morphology(&fixtures().join("bundle_old")).unwrap();
    assert_eq!(found.layout, MorphologyLayout::FocusLegacy);
    assert_eq!(found.channels, vec!["DAPI", "ATP1A1/CD45/E-Cadherin"]);
    assert!(found.files[0].ends_with("morphology_focus/morphology_focus_0000.ome.tif"));
    assert!(found.read_dapi(None, None).unwrap().image == *crop_dapi());
}

#[test]
fn mip_uint8_and_plain_crop_layouts() {
    // A bundle with only morphology_mip.ome.tif (uint8, stripped, uncompressed).
    let dir = fixtures().join("bundle_mip");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        fixtures().join("bundle_new/morphology_mip.ome.tif"),
        dir.join("morphology_mip.ome.tif"),
    )
    .unwrap();
    let found = find_morphology(&dir).unwrap();
    assert_eq!(found.layout, MorphologyLayout::Mip);
    let mip = found.read_dapi(None, None).unwrap();
    let want = std::fs::read(fixtures().join("mip_u8.raw")).unwrap();
    assert_eq!(mip.stats.decoded_bytes, 2400 * 1800);
    assert!(mip
        .image
        .pixels
        .iter()
        .zip(&want)
        .all(|(a, b)| *a == u16::from(*b)));
    // The BIDCell crop directory: a plain TIFF without OME-XML.
    let crop_dir = crop_files().morphology.parent().unwrap().to_path_buf();
    let found = find_morphology(&crop_dir).unwrap();
    assert_eq!(found.layout, MorphologyLayout::PlainTiff);
    assert!(found.read_dapi(None, None).unwrap().image == *crop_dapi());
    assert!(matches!(
        found.read_dapi(Some(0.5), None),
        Err(DataError::MissingPixelSize { .. })
    ));
    assert_eq!(found.read_dapi(Some(0.5), Some(0.2125)).unwrap().level, 0);
}

#[test]
fn missing_morphology_lists_what_was_found() {
    let dir = fixtures().join("bundle_none");
    std::fs::create_dir_all(dir.join("morphology_focus")).unwrap();
    std::fs::write(dir.join("morphology_focus/notes.txt"), "x").unwrap();
    std::fs::write(dir.join("he_image.tif"), "x").unwrap();
    let err = find_morphology(&dir).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::MorphologyNotFound { .. }), "{msg}");
    assert!(
        msg.contains("he_image.tif") && msg.contains("morphology_focus/notes.txt"),
        "{msg}"
    );
    assert!(msg.contains("ch0000") || msg.contains("chNNNN"), "{msg}");
    assert!(msg.contains("morphology.ome.tif"), "{msg}");
}

#[test]
fn zstack_max_projection_is_the_crop() {
    let found = find_morphology(&fixtures().join("bundle_zstack")).unwrap();
    assert_eq!(found.layout, MorphologyLayout::ZStack);
    let tiff = PyramidTiff::open(&found.files[0]).unwrap();
    assert_eq!(tiff.n_planes(), 3);
    assert_eq!(tiff.ome().unwrap().size_czt, [1, 3, 1]);
    for plane in 0..3 {
        assert!(tiff.read_gray(0, 0).is_ok());
        let p = tiff.read_gray(plane, 0).unwrap().image;
        assert!(
            p != *crop_dapi(),
            "plane {plane} alone equals the projection"
        );
    }
    let proj = found.read_dapi(None, None).unwrap();
    assert!(proj.image == *crop_dapi());
    assert_eq!(proj.stats.decoded_bytes, 3 * 2400 * 1800 * 2);
}

/// The planted H&E → morphology matrix of the fixture script.
fn planted() -> [[f64; 3]; 3] {
    let a = 5f64.to_radians();
    [
        [0.8 * a.cos(), -0.8 * a.sin(), -150.0],
        [0.8 * a.sin(), 0.8 * a.cos(), 60.0],
        [0.0, 0.0, 1.0],
    ]
}

fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let ma = a.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let mb = b.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x) - ma, f64::from(y) - mb);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    sab / (saa * sbb).sqrt().max(1e-12)
}

/// Per-cell Pearson r between the DAPI patch and the inverted gray H&E patch.
fn he_dapi_correlations(alignment: &HeAlignment, spec: &CropSpec) -> (Vec<f64>, usize) {
    let files = find_he_files(fixtures()).unwrap();
    let tiff = PyramidTiff::open(&files.image).unwrap();
    let (he, level_alignment) = read_he_level(&tiff, alignment, 0.2125, spec.um_per_px).unwrap();
    assert_eq!(he.level, 1, "0.34 µm/px H&E level for 0.5 µm/px output");
    let centres = nucleus_centres(crop_cells());
    let scale = IntensityScale::global(crop_dapi());
    let dapi = cellsymphony_crops(crop_dapi(), &XENIUM_CROP_FRAME, &centres, spec, &scale);
    let hes = cellsymphony_he_crops(
        &he.image,
        &level_alignment,
        &XENIUM_CROP_FRAME,
        &centres,
        spec,
    );
    let mut rs = Vec::new();
    for (d, h) in dapi.iter().zip(&hes) {
        if let (Some(d), Some(h)) = (d, h) {
            let inv: Vec<f32> = h.to_gray().pixels.iter().map(|v| 1.0 - v).collect();
            rs.push(pearson(&d.pixels, &inv));
        }
    }
    let n_he = hes.iter().flatten().count();
    (rs, n_he)
}

#[test]
fn he_alignment_is_the_planted_affine() {
    let files = find_he_files(fixtures()).unwrap();
    assert!(files.image.ends_with("sample_he_image.ome.tif"));
    let al = read_he_alignment_csv(&files.alignment).unwrap();
    let want = planted();
    for (r, row) in al.he_to_morphology.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            assert!((v - want[r][c]).abs() < 1e-8, "{:?}", al.he_to_morphology);
        }
    }
    assert!((al.he_um_per_px(0.2125) - 0.17).abs() < 1e-6);
    let tiff = PyramidTiff::open(&files.image).unwrap();
    assert_eq!(tiff.samples_per_pixel(), 3);
    let dims: Vec<_> = tiff.levels().iter().map(|l| (l.width, l.height)).collect();
    assert_eq!(dims, vec![(3200, 2500), (1600, 1250)]);
    // A gray read of the RGB image is a typed error naming the field.
    let err = tiff.read_gray(0, 0).unwrap_err();
    assert!(err.to_string().contains("SamplesPerPixel"), "{err}");
}

#[test]
fn he_patches_at_real_cells_match_dapi_patches() {
    let spec = CropSpec {
        size_px: 48,
        um_per_px: 0.5,
        edge: EdgePolicy::Drop,
    };
    let al = read_he_alignment_csv(&find_he_files(fixtures()).unwrap().alignment).unwrap();
    let (mut rs, n_he) = he_dapi_correlations(&al, &spec);
    rs.sort_by(f64::total_cmp);
    let median = rs[rs.len() / 2];
    let p5 = rs[rs.len() / 20];
    println!(
        "{} cells compared ({} H&E patches); r median {median:.4}, 5th pct {p5:.4}, min {:.4}",
        rs.len(),
        n_he,
        rs[0]
    );
    assert!(rs.len() > 800, "{}", rs.len());
    // Threshold (measured: min 0.995, median 0.998): every compared cell r > 0.98, median
    // > 0.99.
    assert!(rs[0] > 0.98, "min r {}", rs[0]);
    assert!(median > 0.99, "median r {median}");

    // Negative control: the uninverted matrix (identity) puts the patches elsewhere.
    let wrong =
        HeAlignment::from_matrix([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]).unwrap();
    let (mut bad, _) = he_dapi_correlations(&wrong, &spec);
    bad.sort_by(f64::total_cmp);
    let bad_median = bad[bad.len() / 2];
    println!("identity alignment: r median {bad_median:.4}");
    assert!(bad_median < 0.3, "{bad_median}");
}

#[test]
fn default_cellsymphony_crops_are_224_at_half_micron() {
    let spec = CropSpec::default();
    assert_eq!(
        (spec.size_px, spec.um_per_px, spec.edge),
        (224, 0.5, EdgePolicy::Pad)
    );
    let centres: Vec<[f32; 2]> = nucleus_centres(crop_cells()).into_iter().take(40).collect();
    let scale = IntensityScale::global(crop_dapi());
    let dapi = cellsymphony_crops(crop_dapi(), &XENIUM_CROP_FRAME, &centres, &spec, &scale);
    assert!(dapi
        .iter()
        .all(|p| p.as_ref().is_some_and(|p| p.pixels.len() == 224 * 224)));
    // 112 µm crops in a 510 × 382 µm image: some reach past the border and say so.
    let n_padded = dapi.iter().flatten().filter(|p| p.padded).count();
    let drop = CropSpec {
        edge: EdgePolicy::Drop,
        ..spec
    };
    let dropped = cellsymphony_crops(crop_dapi(), &XENIUM_CROP_FRAME, &centres, &drop, &scale);
    assert_eq!(dropped.iter().filter(|p| p.is_none()).count(), n_padded);
    let al = read_he_alignment_csv(&find_he_files(fixtures()).unwrap().alignment).unwrap();
    let tiff = PyramidTiff::open(&find_he_files(fixtures()).unwrap().image).unwrap();
    let (he, level_al) = read_he_level(&tiff, &al, 0.2125, 0.5).unwrap();
    let he_crops = cellsymphony_he_crops(
        &he.image,
        &level_al,
        &XENIUM_CROP_FRAME,
        &centres[..5],
        &spec,
    );
    assert!(he_crops
        .iter()
        .all(|p| p.as_ref().is_some_and(|p| p.pixels.len() == 224 * 224 * 3)));
    let _ = extract_he_patch; // exported for single patches
}

#[test]
fn spatia_crops_share_one_scale_and_a_fixed_size() {
    let extents = extents_from_transcripts(crop_transcripts());
    assert_eq!(extents.len(), crop_cells().n_cells());
    let size = 64;
    let scale = SpatiaScale::fit(&extents, size, 95.0).unwrap();
    println!(
        "SPATIA: 95th pct cell side {:.2} µm -> {:.4} µm/px",
        scale.reference_side_um, scale.um_per_px
    );
    let intensity = IntensityScale::global(crop_dapi());
    let padded = spatia_crops(
        crop_dapi(),
        &XENIUM_CROP_FRAME,
        &extents,
        &scale,
        EdgePolicy::Pad,
        &intensity,
    );
    let dropped = spatia_crops(
        crop_dapi(),
        &XENIUM_CROP_FRAME,
        &extents,
        &scale,
        EdgePolicy::Drop,
        &intensity,
    );
    let n = extents.iter().flatten().count();
    assert_eq!(padded.iter().flatten().count(), n, "Pad keeps every cell");
    let mut n_clipped = 0;
    for ((e, p), d) in extents.iter().zip(&padded).zip(&dropped) {
        let (Some(e), Some(p)) = (e, p) else { continue };
        assert_eq!(p.patch.size, size);
        assert_eq!(p.patch.pixels.len(), size * size);
        // One global scale: the cell square's pixel side is its µm side / the shared µm/px.
        let want = ((e.side_um / scale.um_per_px).round() as usize).clamp(1, size);
        assert_eq!(p.cell_side_px, want);
        n_clipped += usize::from(p.clipped);
        // The canvas outside the cell square is zero.
        let off = (size - p.cell_side_px) / 2;
        for r in 0..size {
            for c in 0..size {
                let inside = (off..off + p.cell_side_px).contains(&r)
                    && (off..off + p.cell_side_px).contains(&c);
                if !inside {
                    assert_eq!(p.patch.pixels[r * size + c], 0.0);
                }
            }
        }
        // Drop returns None exactly for the cells whose square reaches past the border.
        assert_eq!(d.is_none(), p.patch.padded);
        if let Some(d) = d {
            assert_eq!(d, p);
        }
    }
    let frac = n_clipped as f64 / n as f64;
    println!(
        "{n} cells, {n_clipped} clipped ({frac:.3}), {} dropped at the border",
        dropped.iter().filter(|d| d.is_none()).count()
    );
    assert!((0.02..0.08).contains(&frac), "{frac}");
    assert!(
        padded.iter().flatten().any(|p| p.patch.padded),
        "some cells touch the border"
    );

    // No silent shift: a border cell's content equals the unshifted patch at its centre.
    let (i, p) = padded
        .iter()
        .enumerate()
        .find_map(|(i, p)| p.as_ref().filter(|p| p.patch.padded).map(|p| (i, p)))
        .unwrap();
    let e = extents[i].unwrap();
    let inner: Patch = extract_patch_scaled(
        crop_dapi(),
        &XENIUM_CROP_FRAME,
        e.centre_um,
        p.cell_side_px,
        scale.um_per_px,
        EdgePolicy::Pad,
        &intensity,
    )
    .unwrap();
    let off = (size - p.cell_side_px) / 2;
    for r in 0..p.cell_side_px {
        let got = &p.patch.pixels[(off + r) * size + off..(off + r) * size + off + p.cell_side_px];
        assert_eq!(
            got,
            &inner.pixels[r * p.cell_side_px..(r + 1) * p.cell_side_px]
        );
    }

    // Percentile 100: nothing clipped. Area-based extents: side 2·sqrt(A/π).
    let all = SpatiaScale::fit(&extents, size, 100.0).unwrap();
    let crops = spatia_crops(
        crop_dapi(),
        &XENIUM_CROP_FRAME,
        &extents,
        &all,
        EdgePolicy::Pad,
        &intensity,
    );
    assert!(crops.iter().flatten().all(|c| !c.clipped));
    let by_area = extents_from_area(
        &[[1200.0, 300.0], [f32::NAN, 0.0]],
        &[Some(std::f32::consts::PI * 25.0), Some(10.0)],
    );
    assert!((by_area[0].unwrap().side_um - 10.0).abs() < 1e-4);
    assert!(by_area[1].is_none());
}

#[test]
fn malformed_tiffs_and_alignment_files_are_typed_errors() {
    let fx = fixtures();
    // Truncated pyramid: the directory walk or the decoder reports it, naming the file.
    let truncated = fx.join("truncated.ome.tif");
    let err = PyramidTiff::open(&truncated)
        .and_then(|t| t.read_gray(0, 0))
        .unwrap_err();
    let msg = err.to_string();
    println!("truncated: {msg}");
    assert!(msg.contains("truncated.ome.tif"), "{msg}");
    assert!(
        matches!(
            err,
            DataError::TiffStructure { .. } | DataError::Tiff { .. }
        ),
        "{msg}"
    );
    // Half a header.
    let stub = fx.join("stub.tif");
    std::fs::write(&stub, b"II*\0\x08").unwrap();
    let msg = PyramidTiff::open(&stub).unwrap_err().to_string();
    assert!(
        msg.contains("stub.tif") && msg.contains("first IFD offset"),
        "{msg}"
    );
    // Not a TIFF at all.
    let err = PyramidTiff::open(&crop_files().transcripts).unwrap_err();
    assert!(err.to_string().contains("not a TIFF"), "{err}");
    // RGB where gray is expected.
    let err = PyramidTiff::open(&fx.join("rgb.tif"))
        .unwrap()
        .read_gray(0, 0)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::TiffField { .. }), "{msg}");
    assert!(
        msg.contains("rgb.tif") && msg.contains("SamplesPerPixel") && msg.contains('3'),
        "{msg}"
    );
    // Gray where RGB is expected.
    let err = PyramidTiff::open(&fx.join("pyramid.ome.tif"))
        .unwrap()
        .read_rgb(0)
        .unwrap_err();
    assert!(err.to_string().contains("SamplesPerPixel"), "{err}");
    // JPEG 2000.
    let err = PyramidTiff::open(&fx.join("jp2k.tif"))
        .unwrap()
        .read_gray(0, 0)
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, DataError::UnsupportedCompression { code: 34712, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("JPEG 2000") && msg.contains("tifffile") && msg.contains("bfconvert"),
        "{msg}"
    );
    // Alignment CSVs.
    let eight = fx.join("eight_he_imagealignment.csv");
    std::fs::write(&eight, "0.8,0,1\n0,0.8,2\n0,1\n").unwrap();
    let msg = read_he_alignment_csv(&eight).unwrap_err().to_string();
    assert!(
        msg.contains("eight_he_imagealignment.csv")
            && msg.contains("line 3")
            && msg.contains("8 numbers"),
        "{msg}"
    );
    let text = fx.join("text_he_imagealignment.csv");
    std::fs::write(&text, "0.8,0,1\n0,zero,2\n0,0,1\n").unwrap();
    let msg = read_he_alignment_csv(&text).unwrap_err().to_string();
    assert!(
        msg.contains("text_he_imagealignment.csv")
            && msg.contains("line 2")
            && msg.contains("`zero`"),
        "{msg}"
    );
    let header = fx.join("header_he_imagealignment.csv");
    std::fs::write(&header, "c0,c1,c2\n0.8,0,1\n0,0.8,2\n0,0,1\n").unwrap();
    assert!(read_he_alignment_csv(&header).is_ok());
}

/// Whole-slide detection without the whole level: windows decode only the tiles they touch and
/// equal the decoded level's pixels; streaming detection (tile by tile from the file) gives the
/// same nuclei as detection on the decoded level.
#[test]
fn tiff_windows_and_streaming_nucleus_detection_equal_the_decoded_level() {
    use cellsymphony::analysis::nuclei::{detect_nuclei, detect_nuclei_in, NucleusOptions, TiffLevelImage};
    let tiff = PyramidTiff::open(&fixtures().join("pyramid.ome.tif")).unwrap();
    let level = tiff.read_gray(0, 1).unwrap();
    let (img, um) = (&level.image, level.um_per_px.unwrap());
    for window in [[0, 0, 1200, 900], [37, 411, 300, 129], [1199, 899, 1, 1]] {
        let (got, stats) = tiff.read_gray_window(0, 1, window).unwrap();
        let [x0, y0, w, h] = window;
        let want: Vec<u16> = (y0..y0 + h).flat_map(|r| img.pixels[r * img.width + x0..][..w].to_vec()).collect();
        assert!(got.pixels == want, "window {window:?} differs from the decoded level");
        if w < 400 {
            assert!(stats.file_bytes_read < level.stats.file_bytes_read / 2, "window {window:?} read {} bytes", stats.file_bytes_read);
        }
    }
    let e = tiff.read_gray_window(0, 1, [1100, 0, 101, 10]).unwrap_err().to_string();
    assert!(e.contains("window") && e.contains("1200"), "{e}");
    let opts = NucleusOptions { tile_px: 256, ..Default::default() };
    let whole = detect_nuclei(img, um, &opts).unwrap();
    let streamed = detect_nuclei_in(&TiffLevelImage::new(&tiff, 0, 1).unwrap(), um, &opts).unwrap();
    assert!(whole.nuclei.len() > 100, "{} nuclei", whole.nuclei.len());
    assert_eq!(streamed, whole);
    let e = TiffLevelImage::new(&tiff, 0, 3).err().unwrap().to_string();
    assert!(e.contains("level") && e.contains("3"), "{e}");
}

/// Whole-slide patches without the whole level: the streamed histogram gives the decoded
/// level's stretch, and patches cut window by window (any tile size; centres at the border,
/// off the image, non-finite, in any order) equal `model_patches` on the decoded level
/// bit for bit.
#[test]
fn streamed_patches_equal_the_decoded_levels() {
    use cellsymphony::analysis::nuclei::{detect_nuclei, level_scale, model_patches_in, NucleusOptions, TiffLevelImage};
    use cellsymphony::data::{model_patches, ImageFrame, IntensityScale};
    let tiff = PyramidTiff::open(&fixtures().join("pyramid.ome.tif")).unwrap();
    let level = tiff.read_gray(0, 1).unwrap();
    let (img, um) = (&level.image, level.um_per_px.unwrap());
    let frame = cellsymphony::data::morphology::level_frame(&ImageFrame::from_corner([0.0, 0.0], tiff.um_per_px().unwrap()), level.downsample);
    let streamed_level = TiffLevelImage::new(&tiff, 0, 1).unwrap();
    let scale = level_scale(&streamed_level, 128).unwrap();
    assert_eq!(scale, IntensityScale::global(img));
    let det = detect_nuclei(img, um, &NucleusOptions::default()).unwrap();
    let mut centres: Vec<[f32; 2]> = det.nuclei.iter().rev().map(|n| frame.px_to_um(n.px)).collect();
    let far = frame.px_to_um([img.width as f32 + 500.0, -400.0]);
    centres.extend([frame.px_to_um([0.0, 0.0]), frame.px_to_um([img.width as f32 - 0.5, img.height as f32 - 1.0]), far, [f32::NAN, 1.0]]);
    assert!(centres.len() > 100, "{} centres", centres.len());
    let (size, patch_um) = (24, 0.5);
    let want = model_patches(img, &frame, &centres, size, patch_um);
    for tile in [64, 200, 512] {
        let got = model_patches_in(&streamed_level, &frame, &centres, size, patch_um, &scale, tile).unwrap();
        assert!(got == want, "tile {tile}: streamed patches differ from the decoded level's");
    }
    let last = &want[want.len() - 2 * size * size..];
    assert!(last.iter().all(|&v| v == 0.0), "an off-image or non-finite centre gives a zero patch");
    let e = model_patches_in(&streamed_level, &frame, &centres, 0, patch_um, &scale, 512).unwrap_err().to_string();
    assert!(e.contains("patch_size"), "{e}");
    let e = model_patches_in(&streamed_level, &frame, &centres, size, patch_um, &scale, 8).unwrap_err().to_string();
    assert!(e.contains("tile_px"), "{e}");
}
