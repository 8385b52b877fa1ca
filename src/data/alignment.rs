//! Checks that transcripts and the DAPI image are registered.
//!
//! Transcripts flagged `overlaps_nucleus` sit on DAPI-bright nuclei, the others do not, so the
//! mean DAPI intensity under nucleus transcripts divided by that under the other transcripts
//! (the *contrast*) is well above 1 when the image frame is right and drops when it is off.

use super::image::{GrayImage16, ImageFrame};
use super::xenium::Transcripts;

/// DAPI intensities sampled under transcripts, and the best frame correction found.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlignmentReport {
    /// Mean intensity under nucleus-overlapping transcripts.
    pub nucleus_mean: f64,
    /// Mean intensity under transcripts assigned to a cell but outside its nucleus.
    pub cytoplasm_mean: f64,
    /// Mean intensity under transcripts assigned to no cell.
    pub unassigned_mean: f64,
    /// Mean intensity of the whole image.
    pub image_mean: f64,
    /// `nucleus_mean` divided by the mean under all non-nucleus transcripts, at the given frame.
    pub contrast: f64,
    /// Integer shift `[cols, rows]` to add to the frame's pixel coordinates that maximises the
    /// contrast (apply it with [`ImageFrame::shifted`]); `[0, 0]` when the frame is right.
    pub best_shift_px: [i32; 2],
    /// Contrast at `best_shift_px`.
    pub best_contrast: f64,
    /// Contrast at each searched shift, `(shift, contrast)`, coarse grid first.
    pub search: Vec<([i32; 2], f64)>,
    /// Transcripts sampled (inside the image) at the given frame.
    pub n_sampled: usize,
    /// Transcripts falling outside the image at the given frame.
    pub n_outside: usize,
}

/// Kind of a transcript for the contrast statistics.
#[derive(Clone, Copy)]
enum Class {
    Nucleus = 0,
    Cytoplasm = 1,
    Unassigned = 2,
}

/// Sums and counts of intensities per [`Class`].
#[derive(Default)]
struct Sums {
    sum: [f64; 3],
    n: [usize; 3],
    outside: usize,
}

impl Sums {
    fn mean(&self, class: Class) -> f64 {
        let i = class as usize;
        if self.n[i] == 0 {
            f64::NAN
        } else {
            self.sum[i] / self.n[i] as f64
        }
    }

    /// Nucleus mean over the mean of all other sampled transcripts (NaN if either is empty).
    fn contrast(&self) -> f64 {
        let n_other = self.n[1] + self.n[2];
        if self.n[0] == 0 || n_other == 0 {
            return f64::NAN;
        }
        let other = (self.sum[1] + self.sum[2]) / n_other as f64;
        self.mean(Class::Nucleus) / other
    }
}

/// Samples `image` (nearest pixel) under every transcript, mapped through `frame`, and
/// searches integer shifts within `±search_radius_px` (at most 4096) for the best contrast:
/// a grid with step `s = max(1, radius / 10)`, then 5 × 5 grids with step `s / 2`, `s / 4`, ...,
/// 1 around the best shift so far.
///
/// Transcripts falling outside the image at a given shift are skipped for that shift.
pub fn check_alignment(
    transcripts: &Transcripts,
    image: &GrayImage16,
    frame: &ImageFrame,
    search_radius_px: u32,
) -> AlignmentReport {
    let samples: Vec<([i32; 2], Class)> = transcripts
        .xy_um
        .iter()
        .zip(&transcripts.overlaps_nucleus)
        .zip(&transcripts.cell_index)
        .map(|((&xy, &nucleus), cell)| {
            let [c, r] = frame.um_to_px(xy);
            let class = match (nucleus, cell) {
                (true, _) => Class::Nucleus,
                (false, Some(_)) => Class::Cytoplasm,
                (false, None) => Class::Unassigned,
            };
            ([c.round() as i32, r.round() as i32], class)
        })
        .collect();
    let at = |shift: [i32; 2]| sample(&samples, image, shift);

    let base = at([0, 0]);
    let radius = search_radius_px.min(4096) as i32;
    let mut step = (radius / 10).max(1);
    let mut search: Vec<([i32; 2], f64)> = Vec::new();
    let evaluate = |shifts: Vec<[i32; 2]>, search: &mut Vec<([i32; 2], f64)>| {
        for s in shifts {
            if !search.iter().any(|e| e.0 == s) {
                search.push((s, at(s).contrast()));
            }
        }
    };
    let offsets = |reach: i32, step: i32| (-reach..=reach).step_by(step as usize);
    let coarse = offsets(radius, step)
        .flat_map(|dy| offsets(radius, step).map(move |dx| [dx, dy]))
        .collect();
    evaluate(coarse, &mut search);
    while step > 1 {
        let centre = best_of(&search).map_or([0, 0], |b| b.0);
        step = (step / 2).max(1);
        let fine = offsets(2 * step, step)
            .flat_map(|dy| offsets(2 * step, step).map(move |dx| [centre[0] + dx, centre[1] + dy]))
            .collect();
        evaluate(fine, &mut search);
    }
    let (best_shift_px, best_contrast) = best_of(&search).unwrap_or(([0, 0], base.contrast()));

    AlignmentReport {
        nucleus_mean: base.mean(Class::Nucleus),
        cytoplasm_mean: base.mean(Class::Cytoplasm),
        unassigned_mean: base.mean(Class::Unassigned),
        image_mean: image.mean(),
        contrast: base.contrast(),
        best_shift_px,
        best_contrast,
        search,
        n_sampled: base.n.iter().sum(),
        n_outside: base.outside,
    }
}

/// The entry with the highest (non-NaN) contrast; ties keep the smallest shift.
fn best_of(search: &[([i32; 2], f64)]) -> Option<([i32; 2], f64)> {
    let norm = |s: [i32; 2]| s[0].abs() + s[1].abs();
    search
        .iter()
        .filter(|e| e.1.is_finite())
        .copied()
        .max_by(|a, b| a.1.total_cmp(&b.1).then(norm(b.0).cmp(&norm(a.0))))
}

fn sample(samples: &[([i32; 2], Class)], image: &GrayImage16, shift: [i32; 2]) -> Sums {
    let mut sums = Sums::default();
    for &([c, r], class) in samples {
        match image.get(
            c.saturating_add(shift[0]) as isize,
            r.saturating_add(shift[1]) as isize,
        ) {
            Some(v) => {
                sums.sum[class as usize] += f64::from(v);
                sums.n[class as usize] += 1;
            }
            None => sums.outside += 1,
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic image with bright discs ("nuclei"); transcripts on the discs are flagged
    /// nucleus, others not, and the image is displaced by (3, -2) px.
    #[test]
    fn search_recovers_a_known_shift() {
        let (w, h) = (120usize, 100usize);
        let centres = [[30.0f32, 30.0], [80.0, 40.0], [50.0, 75.0]];
        let shift = [3.0f32, -2.0];
        let mut pixels = vec![100u16; w * h];
        for r in 0..h {
            for c in 0..w {
                let inside = centres.iter().any(|ctr| {
                    let (dx, dy) = (c as f32 - ctr[0] - shift[0], r as f32 - ctr[1] - shift[1]);
                    dx * dx + dy * dy <= 64.0
                });
                if inside {
                    pixels[r * w + c] = 1000;
                }
            }
        }
        let image = GrayImage16::new(w, h, pixels).unwrap();
        let frame = ImageFrame {
            origin_um: [0.0, 0.0],
            um_per_px: 0.5,
        };
        let mut t = Transcripts::default();
        for ctr in centres {
            for k in 0..200 {
                let a = k as f32 * 0.7;
                let rad = (k % 16) as f32;
                let px = [ctr[0] + rad * a.cos(), ctr[1] + rad * a.sin()];
                t.xy_um.push(frame.px_to_um(px));
                t.overlaps_nucleus.push(rad <= 7.0);
                t.cell_index.push(Some(0));
                t.gene_index.push(0);
            }
        }
        let report = check_alignment(&t, &image, &frame, 10);
        assert_eq!(report.best_shift_px, [3, -2]);
        assert!(report.best_contrast > report.contrast);
        assert!(report.best_contrast > 3.0, "{}", report.best_contrast);
        assert_eq!(report.n_outside, 0);
    }
}
