//! DAPI image, alignment and patches on the real BIDCell Xenium breast crop.
#![cfg(feature = "native-io")]

mod common;


use common::{crop_dapi, crop_nuclei, crop_transcripts, scratch};
use cellsymphony::data::{
    check_alignment, downsample_to_png, extract_patch, extract_patch_scaled,
    EdgePolicy, IntensityScale, XENIUM_CROP_FRAME,
};

/// Patch geometry used below: 48 px at 0.5 µm/px = 24 µm, about two nuclei across.
const SIZE: usize = 48;
const UM_PER_PX: f32 = 0.5;

#[test]
fn tiff_is_2400_wide_1800_high() {
    let img = crop_dapi();
    assert_eq!((img.width, img.height), (2400, 1800));
    // 2400 px * 0.2125 µm = 510 µm wide, matching the transcripts' x extent (1062-1571 µm).
    let p = img.percentiles(&[0.5, 50.0, 99.5]);
    assert!(p[0] < p[1] && p[1] < p[2], "{p:?}");
}

#[test]
fn transcripts_are_registered_with_the_image() {
    let report = check_alignment(crop_transcripts(), crop_dapi(), &XENIUM_CROP_FRAME, 40);
    println!(
        "nucleus {:.1} cytoplasm {:.1} unassigned {:.1} image {:.1} contrast {:.3} best {:?} ({:.3})",
        report.nucleus_mean,
        report.cytoplasm_mean,
        report.unassigned_mean,
        report.image_mean,
        report.contrast,
        report.best_shift_px,
        report.best_contrast
    );
    // Measured: 860 / 334 / 102, image mean 378, contrast 2.624 at shift (0, 0).
    assert!(report.nucleus_mean > 2.0 * report.image_mean);
    assert!(report.nucleus_mean > 2.0 * report.cytoplasm_mean);
    assert!(report.cytoplasm_mean > report.unassigned_mean);
    assert!(report.contrast > 2.4, "{}", report.contrast);
    assert!(
        report.best_shift_px.iter().all(|s| s.abs() <= 1),
        "{:?}",
        report.best_shift_px
    );
    // Transcripts in the 0.5 µm strip left of / above the image (the transcript crop starts
    // at 1062.0 / 212.0 µm, the image at 1062.5 / 212.5 µm).
    assert!(report.n_outside < 500, "{}", report.n_outside);
    // Far off, the contrast collapses.
    let far = report.search.iter().find(|e| e.0 == [40, 40]).unwrap().1;
    assert!(far < 1.3, "{far}");
}

#[test]
fn a_wrong_frame_is_detected_and_corrected() {
    let wrong = XENIUM_CROP_FRAME.shifted([12.0, -7.0]);
    let report = check_alignment(crop_transcripts(), crop_dapi(), &wrong, 40);
    assert_eq!(report.best_shift_px, [-12, 7]);
    assert!(report.contrast < report.best_contrast - 0.3);
    let fixed = wrong.shifted([-12.0, 7.0]);
    assert!((fixed.origin_um[0] - XENIUM_CROP_FRAME.origin_um[0]).abs() < 1e-3);
    assert!((fixed.origin_um[1] - XENIUM_CROP_FRAME.origin_um[1]).abs() < 1e-3);
}

/// Mean intensity of the central 12 × 12 px (6 µm) and of the outer 4 px frame of the patches
/// centred on `centres` that fit in the image, and how many fitted.
fn centre_and_border(centres: &[[f32; 2]]) -> (f64, f64, usize) {
    let img = crop_dapi();
    let scale = IntensityScale::global(img);
    let (mut centre, mut border, mut n) = (0.0f64, 0.0f64, 0usize);
    for &c in centres {
        let Some(p) = extract_patch_scaled(
            img,
            &XENIUM_CROP_FRAME,
            c,
            SIZE,
            UM_PER_PX,
            EdgePolicy::Drop,
            &scale,
        ) else {
            continue;
        };
        assert_eq!(p.pixels.len(), SIZE * SIZE);
        assert!(!p.padded && p.pixels.iter().all(|v| (0.0..=1.0).contains(v)));
        for r in 0..SIZE {
            for col in 0..SIZE {
                let v = f64::from(p.pixels[r * SIZE + col]);
                let ring = r.min(col).min(SIZE - 1 - r).min(SIZE - 1 - col);
                if ring >= SIZE * 3 / 8 {
                    centre += v;
                } else if ring < 4 {
                    border += v;
                }
            }
        }
        n += 1;
    }
    let n_border = SIZE * SIZE - (SIZE - 8) * (SIZE - 8);
    (centre / (n * 144) as f64, border / (n * n_border) as f64, n)
}

#[test]
fn nucleus_centred_patches_are_bright_in_the_centre() {
    let nuclei = crop_nuclei();
    let (centre, border, n) = centre_and_border(&nuclei);
    println!("{n} nucleus patches: centre {centre:.3}, border {border:.3}");
    // Measured: 962 of 1,086 fit; centre 0.383, border 0.210; grid control 0.167 / 0.167.
    assert!(n > 900, "{n}");
    assert!(centre > 1.5 * border, "centre {centre} border {border}");

    // Control: patches on a regular 10 µm grid show no such contrast.
    let grid: Vec<[f32; 2]> = (0..50)
        .flat_map(|i| (0..37).map(move |j| [1062.5 + 10.0 * i as f32, 212.5 + 10.0 * j as f32]))
        .collect();
    let (g_centre, g_border, g_n) = centre_and_border(&grid);
    println!("{g_n} grid patches: centre {g_centre:.3}, border {g_border:.3}");
    assert!(
        g_centre < 1.15 * g_border,
        "grid centre {g_centre} border {g_border}"
    );
}

#[test]
fn border_cells_pad_or_drop_but_never_shift() {
    let img = crop_dapi();
    let scale = IntensityScale::global(img);
    // A point 2 µm from the left edge: a 24 µm patch reaches 10 µm past it.
    let near_edge = XENIUM_CROP_FRAME.px_to_um([2.0 / 0.2125, 900.0]);
    let drop = extract_patch_scaled(
        img,
        &XENIUM_CROP_FRAME,
        near_edge,
        SIZE,
        UM_PER_PX,
        EdgePolicy::Drop,
        &scale,
    );
    assert!(drop.is_none());
    let pad = extract_patch_scaled(
        img,
        &XENIUM_CROP_FRAME,
        near_edge,
        SIZE,
        UM_PER_PX,
        EdgePolicy::Pad,
        &scale,
    )
    .expect("Pad always yields a patch");
    assert!(pad.padded);
    // Columns left of the image (first 16 px = 8 µm, minus the half-pixel blend) are zero.
    for r in 0..SIZE {
        assert!(
            pad.pixels[r * SIZE..r * SIZE + 15]
                .iter()
                .all(|&v| v == 0.0),
            "row {r}"
        );
    }
    // The in-image part equals an unpadded patch of the same place: nothing was shifted.
    let inner_centre = [near_edge[0] + 6.0, near_edge[1]];
    let inner = extract_patch_scaled(
        img,
        &XENIUM_CROP_FRAME,
        inner_centre,
        SIZE / 2,
        UM_PER_PX,
        EdgePolicy::Drop,
        &scale,
    )
    .expect("fully inside");
    for r in 0..SIZE / 2 {
        for c in 0..SIZE / 2 {
            let a = pad.pixels[(r + SIZE / 4) * SIZE + c + SIZE / 2];
            let b = inner.pixels[r * (SIZE / 2) + c];
            assert!((a - b).abs() < 2e-3, "({r}, {c}): {a} vs {b}");
        }
    }
    // The same patch well inside the image is not padded, and Drop returns it.
    let inside = XENIUM_CROP_FRAME.px_to_um([1200.0, 900.0]);
    let p = extract_patch(
        img,
        &XENIUM_CROP_FRAME,
        inside,
        SIZE,
        UM_PER_PX,
        EdgePolicy::Drop,
    )
    .unwrap();
    assert!(!p.padded);
}

#[test]
fn downsampled_png_for_the_viewer() {
    let img = crop_dapi();
    let dir = scratch("dapi-png");
    let path = dir.join("dapi.png");
    let written = downsample_to_png(img, 4, &path).unwrap();
    assert_eq!(
        (written.width, written.height, written.factor),
        (600, 450, 4)
    );
    let p = img.percentiles(&[0.5, 99.5]);
    assert_eq!((written.stretch.lo, written.stretch.hi), (p[0], p[1]));

    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0u8; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (600, 450));
    assert_eq!(
        (info.color_type, info.bit_depth),
        (png::ColorType::Grayscale, png::BitDepth::Eight)
    );
    let bytes = &buf[..info.buffer_size()];
    // Stretched: uses the whole range, with few saturated pixels.
    assert_eq!(bytes.iter().min(), Some(&0));
    let saturated = bytes.iter().filter(|&&b| b == 255).count();
    assert!(saturated > 0 && saturated < bytes.len() / 50, "{saturated}");
}
